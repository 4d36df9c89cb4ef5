//! One service instance against three behind a balancer (issue 23, point 4), on PostgreSQL, in
//! one run: the listing under load and stock movements end to end, (1) on one instance
//! directly, (2) on one instance through HAProxy, so that the proxy's own cost shows, and (3) on
//! three instances through the same HAProxy (`balance roundrobin`, health checks on
//! `GET /health`). One worker applies the movements throughout: only the HTTP tier changes.
//!
//! HAProxy is Debian's `haproxy` (`$HAPROXY`, else `/usr/sbin/haproxy`, else `PATH`), its
//! configuration written to a temporary directory; without it the part says so and is skipped.
//! How many requests each instance served is read off HAProxy's stats socket, to show that the
//! balancing happened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use indicatif::MultiProgress;
use shared::Redis;
use testkit::{free_port, PostgresServer, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procs::KillOnDrop;
use crate::report;
use crate::stack::{self, Binaries, Stack};
use crate::system::http_ready;
use crate::Args;

/// Service instances behind the balancer in the third configuration.
const INSTANCES: usize = 3;

/// The haproxy binary, if installed.
fn haproxy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HAPROXY") {
        return Some(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/sbin/haproxy");
    if debian.exists() {
        return Some(debian);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("haproxy"))
            .find(|p| p.exists())
    })
}

/// HAProxy's configuration: one frontend on `port`, the `backends` in round robin, each checked
/// with `GET /health` every second; keep-alive on both sides, as a production balancer runs.
fn config(port: u16, backends: &[u16], socket: &Path) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server s{} 127.0.0.1:{p} check inter 1s\n", i + 1))
        .collect();
    format!(
        "global\n    maxconn 4096\n    stats socket {}\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    timeout connect 2s\n    \
         timeout client 30s\n    timeout server 30s\n\n\
         frontend inventario\n    bind 127.0.0.1:{port}\n    default_backend servicios\n\n\
         backend servicios\n    balance roundrobin\n    option httpchk GET /health\n    \
         http-check expect status 200\n{servers}",
        socket.display()
    )
}

/// A running HAProxy and its stats socket.
struct Balancer {
    _proc: KillOnDrop,
    addr: SocketAddr,
    socket: PathBuf,
}

impl Balancer {
    async fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        backends: &[u16],
    ) -> anyhow::Result<Self> {
        let port = free_port();
        let socket = dir.join(format!("{name}.sock"));
        let cfg = dir.join(format!("{name}.cfg"));
        std::fs::write(&cfg, config(port, backends, &socket))?;
        let mut cmd = Command::new(binary);
        // -db: in the foreground, not as a daemon, so that dropping it ends it.
        cmd.arg("-db").arg("-f").arg(&cfg);
        let proc = KillOnDrop::spawn(cmd, name)?;
        let addr = ([127, 0, 0, 1], port).into();
        http_ready(addr, "/health")
            .await
            .with_context(|| format!("haproxy (log: {})", proc.log.display()))?;
        let balancer = Balancer {
            _proc: proc,
            addr,
            socket,
        };
        // Every backend checked and up before any load: otherwise the first second's requests
        // would all go to the instances found up first.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while balancer.served().await?.len() < backends.len() || !balancer.all_up().await? {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "haproxy's backends not all up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(balancer)
    }

    async fn show_stat(&self) -> anyhow::Result<String> {
        let mut s = tokio::net::UnixStream::connect(&self.socket).await?;
        s.write_all(b"show stat\n").await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    /// The backend's server rows of `show stat`, each as (requests served, status), the
    /// columns found by the CSV header's names.
    async fn servers(&self) -> anyhow::Result<Vec<(u64, String)>> {
        let stat = self.show_stat().await?;
        let mut lines = stat.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .context("show stat: no header")?
            .split(',')
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .with_context(|| format!("show stat: no {name} column"))
        };
        let (req_tot, status) = (col("req_tot")?, col("status")?);
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > req_tot.max(status) && f[0] == "servicios" && f[1] != "BACKEND")
            .map(|f| (f[req_tot].parse().unwrap_or(0), f[status].to_owned()))
            .collect())
    }

    /// Requests each server has served so far.
    async fn served(&self) -> anyhow::Result<Vec<u64>> {
        Ok(self.servers().await?.into_iter().map(|(n, _)| n).collect())
    }

    async fn all_up(&self) -> anyhow::Result<bool> {
        Ok(self
            .servers()
            .await?
            .iter()
            .all(|(_, status)| status == "UP"))
    }
}

pub async fn measure(args: &Args, mp: &MultiProgress) -> anyhow::Result<()> {
    let Some(binary) = haproxy() else {
        println!(
            "\nbalancer: skipped, haproxy is not installed (apt-get install haproxy, or $HAPROXY)"
        );
        return Ok(());
    };
    let Some(postgres) = PostgresServer::start_or_skip() else {
        println!("\nbalancer: skipped, PostgreSQL's initdb and pg_ctl were not found (PG_BIN)");
        return Ok(());
    };
    let bins = Binaries::build()?;
    let dir = tempfile::tempdir()?;
    let server = RedisServer::start_tcp();
    let redis = Redis::from_url(&server.url())?;
    let stack = Stack {
        bins: &bins,
        redis_url: server.url(),
        database_url: postgres.create_database(),
        service_env: Vec::new(),
    };
    let mut ports = Vec::new();
    let mut instances = Vec::new();
    for i in 1..=INSTANCES {
        let port = free_port();
        instances.push(
            stack
                .service(port, &format!("inventario-service-{i}"))
                .await?,
        );
        ports.push(port);
    }
    let worker = stack.worker(&redis).await?;
    let token = stack.token()?;

    let one_proxy = Balancer::start(&binary, dir.path(), "haproxy-1", &ports[..1]).await?;
    let three_proxy = Balancer::start(&binary, dir.path(), "haproxy-3", &ports).await?;
    let direct: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let mut columns = Vec::new();
    let mut shares = Vec::new();
    for (name, addr, proxy) in [
        ("1 instance, direct", direct, None),
        ("1 instance, HAProxy", one_proxy.addr, Some(&one_proxy)),
        ("3 instances, HAProxy", three_proxy.addr, Some(&three_proxy)),
    ] {
        let before = match proxy {
            Some(p) => p.served().await?,
            None => Vec::new(),
        };
        let mut f = stack::listing(addr, args, mp, name).await?;
        f.extend(stack::movements(addr, &redis, &token, args, mp, name).await?);
        if let Some(p) = proxy {
            let after = p.served().await?;
            let served: Vec<String> = after
                .iter()
                .zip(before.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b).to_string())
                .collect();
            // A count per instance does not fit a number column: said under the table.
            shares.push(format!("{name}: {}", served.join(" / ")));
        }
        columns.push((name.to_owned(), f));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "\nbalancer: PostgreSQL (fsync off), one worker; http={:?} x {} connections, {} \
         movements; {cores} cores shared by the load generator, HAProxy, the instances, the \
         worker, PostgreSQL and Redis: with few cores three instances contend rather than scale",
        args.http_secs, args.connections, args.movements
    );
    report::print_columns(&columns);
    println!(
        "\nrequests per instance (HAProxy's req_tot): {}",
        shares.join("; ")
    );
    drop((one_proxy, three_proxy, worker, instances, server, postgres));
    Ok(())
}
