//! What waiting for a replica costs (`REDIS_WAIT_REPLICAS`, issue 23): a master with one replica
//! (private redis-servers, `REPLICAOF`), and each send followed by nothing (`WAIT` off) or by
//! `WAIT 1` (the send succeeds once the replica holds the task), side by side in one run:
//!
//! - the library client's send, one at a time (latency of each, and tasks/s);
//! - stock movements end to end through the service (which sends them) on SQLite: the POST's
//!   latency includes the wait.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::MultiProgress;
use serde_json::{json, Map};
use shared::connection::RedisConfig;
use shared::{Client, Redis, SendOptions};
use testkit::{free_port, RedisServer};

use crate::queue::drop_queue;
use crate::report::{self, bar, latency_figures, Figure};
use crate::stack::{self, Binaries, Stack};
use crate::Args;

/// Where the client's sends go (no worker reads it; deleted afterwards).
const SCRATCH_QUEUE: &str = "bench-replicas";

/// A master and its replica, the replica in sync.
fn master_with_replica() -> anyhow::Result<(RedisServer, RedisServer)> {
    let master = RedisServer::start_tcp();
    let replica = RedisServer::start_tcp();
    let port = master.port().context("the master's port")?.to_string();
    replica.cli(&["REPLICAOF", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        anyhow::ensure!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((master, replica))
}

pub async fn measure(args: &Args, mp: &MultiProgress) -> anyhow::Result<()> {
    let bins = Binaries::build()?;
    let (master, _replica) = master_with_replica()?;
    let url = master.url();
    let plain = Redis::from_url(&url)?;
    let mut columns = Vec::new();
    for wait in [0usize, 1] {
        let name = format!("REDIS_WAIT_REPLICAS={wait}");
        let redis = Redis::open(RedisConfig {
            wait_replicas: wait,
            ..RedisConfig::new(&url)
        })?;
        let client = Client::new(redis, SCRATCH_QUEUE);
        let pb = bar(mp, args.n, format!("{name}: sends, one at a time"));
        let mut latencies = Vec::with_capacity(args.n);
        let start = Instant::now();
        for i in 0..args.n {
            let t = Instant::now();
            client
                .send_task("noop", vec![json!(i)], Map::new(), SendOptions::default())
                .await?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            pb.inc(1);
        }
        let rate = args.n as f64 / start.elapsed().as_secs_f64();
        pb.finish();
        drop_queue(&plain, SCRATCH_QUEUE).await?;
        let mut f = vec![Figure::higher("send, 1 producer (tasks/s)", rate, 0)];
        latency_figures(&mut f, "send", latencies);

        let dir = tempfile::tempdir()?;
        let stack = Stack {
            bins: &bins,
            redis_url: url.clone(),
            database_url: format!("sqlite://{}", dir.path().join("inventario.db").display()),
            service_env: vec![("REDIS_WAIT_REPLICAS".into(), wait.to_string())],
        };
        let port = free_port();
        let service = stack.service(port, "inventario-service").await?;
        let worker = stack.worker(&plain).await?;
        let token = stack.token()?;
        let addr = ([127, 0, 0, 1], port).into();
        f.extend(stack::movements(addr, &plain, &token, args, mp, &name).await?);
        drop((service, worker));
        columns.push((name, f));
    }
    println!(
        "\nreplicas: a master with one replica on this machine (loopback); {} sends, {} \
         movements through the service on SQLite, {} connections",
        args.n, args.movements, args.connections
    );
    report::print_columns(&columns);
    Ok(())
}
