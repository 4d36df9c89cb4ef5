//! Our programs deployed on a given database, for the parts that compare deployments of our own
//! system rather than the two designs (issue 23): service instances, the inventory worker and
//! the monitor, each started from its binary with a production-like environment; and the
//! figures those parts take the same way on every deployment: the listing under load, stock
//! movements end to end, the monitor's ping round trip.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::MultiProgress;
use serde_json::{json, Value};
use shared::{keys, Redis};
use testkit::free_port;

use crate::http::{self, Request, Until};
use crate::procs::{self, KillOnDrop};
use crate::queue::{wait_online, worker_events, LIMIT};
use crate::report::{latency_figures, phase, Figure};
use crate::system::http_ready;
use crate::{Args, QUEUE};

/// The bench's own signing secret for the writes' tokens (32 bytes, so the service does not
/// warn that it is weak).
const JWT_SECRET: &str = "bench-only-secret-0123456789abcdef";
/// The monitor pings this often while its round trip is sampled (production pings every
/// 250 ms; faster here so that a few hundred samples take seconds).
const MONITOR_PING_EVERY_MS: u64 = 10;
/// The most monitor pings sampled (its history keeps 1 000).
const MONITOR_SAMPLES: usize = 500;

/// Our three programs' binaries, built once for a part.
pub struct Binaries {
    service: PathBuf,
    worker: PathBuf,
    monitor: PathBuf,
}

impl Binaries {
    pub fn build() -> anyhow::Result<Self> {
        Ok(Binaries {
            service: procs::binary("inventario-service")?,
            worker: procs::binary("inventario-worker")?,
            monitor: procs::binary("monitor-service")?,
        })
    }
}

/// One deployment: our programs on one Redis and one database.
pub struct Stack<'a> {
    pub bins: &'a Binaries,
    pub redis_url: String,
    pub database_url: String,
    /// Settings of the service instances beyond those every program gets.
    pub service_env: Vec<(String, String)>,
}

impl Stack<'_> {
    fn command(&self, binary: &PathBuf, name: &str) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env("REDIS_URL", &self.redis_url)
            .env("QUEUE", QUEUE)
            .env("DATABASE_URL", &self.database_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "warn")
            .env("WORKER_HOSTNAME", format!("bench-{name}@localhost"));
        cmd
    }

    /// A service instance on `port`, once it answers `GET /inventario` (the first one started
    /// seeds the database: start them one after the other).
    pub async fn service(&self, port: u16, name: &str) -> anyhow::Result<KillOnDrop> {
        let mut cmd = self.command(&self.bins.service, name);
        cmd.env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .envs(self.service_env.iter().map(|(k, v)| (k, v)));
        let service = KillOnDrop::spawn(cmd, name)?;
        http_ready(([127, 0, 0, 1], port).into(), "/inventario")
            .await
            .with_context(|| format!("{name} (log: {})", service.log.display()))?;
        Ok(service)
    }

    /// The inventory worker, once it has said it is online.
    pub async fn worker(&self, redis: &Redis) -> anyhow::Result<KillOnDrop> {
        let mut events = worker_events(redis).await?;
        let worker = KillOnDrop::spawn(
            self.command(&self.bins.worker, "worker"),
            "inventario-worker",
        )?;
        wait_online(&mut events)
            .await
            .with_context(|| format!("worker (log: {})", worker.log.display()))?;
        Ok(worker)
    }

    /// A bearer token for the writes, as an operator gets one (`inventario-service token`).
    pub fn token(&self) -> anyhow::Result<String> {
        let out = self
            .command(&self.bins.service, "token")
            .args(["token", "--sub", "bench", "--ttl", "1h"])
            .output()
            .context("inventario-service token")?;
        anyhow::ensure!(
            out.status.success(),
            "inventario-service token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// The monitor's own ping round trip (`latencia_ms` of its history, its clock): the monitor
    /// started with pings every few milliseconds, its newest samples read once it has enough.
    pub async fn monitor_pings(
        &self,
        args: &Args,
        mp: &MultiProgress,
        what: &str,
    ) -> anyhow::Result<Vec<Figure>> {
        let samples = args.pings.clamp(10, MONITOR_SAMPLES);
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = self.command(&self.bins.monitor, "monitor");
        cmd.env("HTTP_ADDR", addr.to_string())
            .env("PING_INTERVAL_MS", MONITOR_PING_EVERY_MS.to_string())
            .env("PING_TIMEOUT_MS", "750");
        let monitor = KillOnDrop::spawn(cmd, "monitor-service")?;
        let pb = phase(mp, format!("{what}: {samples} monitor pings"));
        let path = format!("/monitor/historial?limite={}", samples + 20);
        let deadline = Instant::now() + LIMIT;
        // The first pings go out while the monitor starts: left out, like a warm-up.
        let pings = loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the monitor took no {samples} pings (log: {})",
                monitor.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok((200, body)) = http::fetch(addr, &path).await else {
                continue;
            };
            let v: Value = serde_json::from_slice(&body).context("monitor history")?;
            let pings = v["pings"].as_array().cloned().unwrap_or_default();
            if pings.len() >= samples + 20 {
                break pings;
            }
        };
        pb.finish();
        drop(monitor);
        let newest = &pings[..samples];
        let failed = newest.iter().filter(|p| p["resultado"] != "ok").count();
        let latencies = newest
            .iter()
            .filter(|p| p["resultado"] == "ok")
            .filter_map(|p| p["latencia_ms"].as_f64())
            .collect();
        let mut f = Vec::new();
        latency_figures(&mut f, "monitor ping round trip", latencies);
        f.push(Figure::info("monitor pings sampled", samples as f64, 0));
        f.push(Figure::lower("monitor pings failed", failed as f64, 0));
        Ok(f)
    }
}

/// `GET /inventario` (the full listing, as clients read it) from `args.connections` keep-alive
/// connections for `args.http_secs`, after a warm-up.
pub async fn listing(
    addr: SocketAddr,
    args: &Args,
    mp: &MultiProgress,
    what: &str,
) -> anyhow::Result<Vec<Figure>> {
    let pb = phase(
        mp,
        format!("{what}: GET /inventario, {} conns", args.connections),
    );
    http::load(addr, "/inventario", args.connections, args.http_secs / 10).await?;
    let load = http::load(addr, "/inventario", args.connections, args.http_secs).await?;
    pb.finish();
    let label = format!("GET /inventario, {} conns", args.connections);
    let mut f = vec![Figure::higher(
        format!("{label} (req/s)"),
        load.per_second,
        0,
    )];
    latency_figures(&mut f, &label, load.latencies);
    f.push(Figure::lower(
        format!("{label}, failed requests"),
        load.errors as f64,
        0,
    ));
    Ok(f)
}

/// The sum of every producto's stock, read from the database (a page of the listing, not the
/// full listing's cached copy), and the productos' ids.
async fn stock(addr: SocketAddr) -> anyhow::Result<(i64, Vec<i64>)> {
    let (status, body) = http::fetch(addr, "/inventario?limit=100000").await?;
    anyhow::ensure!(status == 200, "GET /inventario?limit answered {status}");
    let productos: Vec<Value> = serde_json::from_slice(&body).context("the listing")?;
    let sum = productos
        .iter()
        .filter_map(|p| p["cantidad"].as_i64())
        .sum();
    let ids = productos.iter().filter_map(|p| p["id"].as_i64()).collect();
    Ok((sum, ids))
}

/// Stock movements end to end: `args.movements` entries of one unit, spread over every
/// producto, `POST`ed with a bearer token from `args.connections` connections (each answered
/// 202: queued), then applied by the worker. Counted from the first POST to the last stored
/// result; the stock is then checked to hold every one of them.
pub async fn movements(
    addr: SocketAddr,
    redis: &Redis,
    token: &str,
    args: &Args,
    mp: &MultiProgress,
    what: &str,
) -> anyhow::Result<Vec<Figure>> {
    let (before, ids) = stock(addr).await?;
    anyhow::ensure!(!ids.is_empty(), "no producto to move");
    let body = json!({"tipo": "entrada", "cantidad": 1});
    let requests = ids
        .iter()
        .map(|id| {
            Request::post_json(
                addr,
                &format!("/inventario/{id}/movimientos"),
                token,
                &body,
                202,
            )
        })
        .collect();

    // Every stored result is published on its key's channel: counted as they come.
    let mut pubsub = redis.pubsub().await?;
    pubsub
        .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
        .await?;
    let mut results = pubsub.into_on_message();
    let applied = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(None::<Instant>));
    let counter = {
        let (applied, failed, last) = (applied.clone(), failed.clone(), last.clone());
        tokio::spawn(async move {
            while let Some(msg) = results.next().await {
                let Ok(meta) = serde_json::from_slice::<Value>(msg.get_payload_bytes()) else {
                    continue;
                };
                match meta["status"].as_str() {
                    Some("SUCCESS") => applied.fetch_add(1, Ordering::Relaxed),
                    Some("FAILURE") => failed.fetch_add(1, Ordering::Relaxed),
                    _ => continue,
                };
                *last.lock().expect("lock") = Some(Instant::now());
            }
        })
    };

    let pb = phase(mp, format!("{what}: {} movements", args.movements));
    let start = Instant::now();
    let load = http::load_with(
        addr,
        requests,
        args.connections,
        Until::Sent(args.movements),
    )
    .await?;
    let accepted = load.latencies.len();
    let deadline = Instant::now() + LIMIT;
    while applied.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < accepted {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: {} of {accepted} movements applied after {LIMIT:?}",
            applied.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = last.lock().expect("lock").unwrap_or_else(Instant::now);
    counter.abort();
    pb.finish();
    let applied = applied.load(Ordering::Relaxed);
    // The results say the worker committed them; the stock must say so too.
    let expected = before + applied as i64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, _) = stock(addr).await?;
        if now == expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: stock {now} after {applied} movements, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut f = vec![
        Figure::higher(
            "movements applied end to end (movements/s)",
            applied as f64 / end.duration_since(start).as_secs_f64(),
            0,
        ),
        Figure::higher("movements accepted, POST 202 (req/s)", load.per_second, 0),
    ];
    latency_figures(&mut f, "movement POST", load.latencies);
    f.push(Figure::lower(
        "movements refused or failed",
        (load.errors + failed.load(Ordering::Relaxed)) as f64,
        0,
    ));
    Ok(f)
}
