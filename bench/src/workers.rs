//! Drains with several worker processes (issue 23, point 5): for each count N asked for, N
//! `demo-worker` processes on the same queue of the same private redis-server drain a backlog
//! of `noop` tasks sent as a Python Celery client sends them by default (no priority: `LPUSH`
//! onto the plain list), every result stored. Per N: tasks/s, the workers' and redis-server's
//! CPU per task, and redis-server's share of one core during the drain, which says how near
//! Redis (one core for commands) is to saturating, and the ceiling its CPU per task implies.
//!
//! The backlog is sent first, onto the queue's own list, and the list is then set aside under
//! another name (`RENAME`) while the N workers start; once all are online it is renamed back, so
//! that all N take part from the first task and the clock starts at that instant. (Sending the
//! backlog while the workers ran would not do: they drain it as it arrives, and the results pile
//! up unread behind the send.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use indicatif::MultiProgress;
use serde_json::json;
use shared::protocol::WorkerEvent;
use shared::{keys, Client, Redis, SendOptions};
use testkit::RedisServer;

use crate::procs;
use crate::queue::{drop_queue, worker_events, LIMIT};
use crate::report::{self, bar, Figure};
use crate::{Args, QUEUE};

/// Where the backlog waits while the workers start.
const STAGING: &str = "bench-staging";

async fn rename(redis: &Redis, from: &str, to: &str) -> anyhow::Result<()> {
    let (from, to) = (from.to_owned(), to.to_owned());
    redis
        .run(|mut c| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                redis::cmd("RENAME")
                    .arg(from)
                    .arg(to)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await?;
    Ok(())
}

pub async fn measure(args: &Args, mp: &MultiProgress) -> anyhow::Result<()> {
    let demo = procs::binary("demo-worker")?;
    let server = RedisServer::start_tcp();
    let url = server.url();
    let redis = Redis::from_url(&url)?;
    let client = Client::new(redis.clone(), QUEUE);
    let redis_pid = server.pid().context("redis-server's pid")?;
    let mut columns = Vec::new();
    for &n in &args.workers {
        let pb = bar(mp, args.n, format!("drain, {n} worker processes"));
        client
            .send_many(
                "noop",
                (0..args.n).map(|i| vec![json!(i)]),
                SendOptions::default(),
            )
            .await?;
        rename(&redis, QUEUE, STAGING).await?;
        let mut events = worker_events(&redis).await?;
        let workers = (1..=n)
            .map(|i| {
                let mut settings = args.worker_env.clone();
                settings.push((
                    "WORKER_HOSTNAME".into(),
                    format!("bench-rust-{i}@localhost"),
                ));
                procs::rust_worker(&demo, &url, &settings)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut online = HashSet::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while online.len() < n {
                let msg = events.next().await.context("the event stream ended")?;
                if let Ok(e) = WorkerEvent::decode(msg.get_payload_bytes()) {
                    if e.kind == "worker-online" {
                        online.insert(e.hostname);
                    }
                }
            }
            anyhow::Ok(())
        })
        .await
        .with_context(|| format!("{} of {n} workers online within 60 s", online.len()))??;

        let mut results = redis.pubsub().await?;
        results
            .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
            .await?;
        let mut results = results.into_on_message();
        let usage = || {
            let w = workers.iter().map(|w| w.usage().cpu_secs).sum::<f64>();
            (w, procs::process_usage(redis_pid).cpu_secs)
        };
        let before = usage();
        let start = Instant::now();
        rename(&redis, STAGING, QUEUE).await?;
        let mut done = 0;
        while done < args.n {
            let msg = tokio::time::timeout(LIMIT, results.next())
                .await
                .with_context(|| format!("drain with {n} workers stalled at {done}"))?
                .context("result stream ended")?;
            if msg
                .get_payload_bytes()
                .windows(9)
                .any(|w| w == b"\"SUCCESS\"")
            {
                done += 1;
                pb.inc(1);
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let after = usage();
        pb.finish();
        drop(workers);
        drop_queue(&redis, QUEUE).await?;
        if elapsed <= 0.0 {
            bail!("the drain took no time: raise --n");
        }
        let tasks = args.n as f64;
        let redis_cpu = (after.1 - before.1) * 1e6 / tasks;
        let mut f = vec![
            Figure::higher("drain, default priority (tasks/s)", tasks / elapsed, 0),
            Figure::lower(
                "workers' CPU per task, summed (µs)",
                (after.0 - before.0) * 1e6 / tasks,
                1,
            ),
            Figure::lower("redis-server CPU per task (µs)", redis_cpu, 1),
            Figure::info(
                "redis-server CPU, share of one core (%)",
                (after.1 - before.1) / elapsed * 100.0,
                0,
            ),
            Figure::info("workers' CPU, in cores", (after.0 - before.0) / elapsed, 2),
        ];
        if redis_cpu > 0.0 {
            f.push(Figure::info(
                "Redis ceiling at this CPU per task (tasks/s)",
                1e6 / redis_cpu,
                0,
            ));
        }
        columns.push((format!("{n} worker{}", if n == 1 { "" } else { "s" }), f));
    }
    drop(server);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "\nworkers: n={} default-priority noop tasks per drain, every result stored, one \
         redis-server; this machine has {cores} cores: figures for more than {} worker \
         process{} measure contention for the cores (with redis-server and each other), not \
         scaling",
        args.n,
        cores.saturating_sub(1).max(1),
        if cores.saturating_sub(1).max(1) == 1 {
            ""
        } else {
            "es"
        }
    );
    report::print_columns(&columns);
    Ok(())
}
