//! The queue figures (issue 6, first part; issue 19): the client's enqueue rate, one worker
//! process's drain rate with every result stored, and the ping-echo round trip idle and while
//! the worker drains a backlog. Drains and backlog pings are measured twice, side by side: with
//! the backlog sent as a Python Celery client sends by default (no priority: `LPUSH` onto the
//! plain list) and at our business priority 6. Pings are sent as the monitor sends them (next in
//! line: `RPUSH` onto the plain list). Both workers (our `demo-worker`, Celery's prefork worker)
//! are driven by the same Rust client (`shared::Client`), except the Celery enqueue figure,
//! which is Celery's own client.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{Stream, StreamExt};
use indicatif::{MultiProgress, ProgressBar};
use serde_json::{json, Map, Value};
use shared::protocol::{TaskState, WorkerEvent};
use shared::worker::BUSINESS_PRIORITY;
use shared::{keys, Client, Redis, SendOptions};
use testkit::RedisServer;

use crate::report::{bar, latency_figures, Figure};
use crate::{procs, Args, Impl, QUEUE};

/// Where enqueue figures that must not feed the worker are sent (deleted afterwards).
const SCRATCH_QUEUE: &str = "bench-enqueue";
/// Sends in flight for the concurrent enqueue and the prefill.
pub const IN_FLIGHT: usize = 64;
/// Pings during the backlog are sent open-loop, one per tick.
const BACKLOG_PING_EVERY: Duration = Duration::from_millis(1);
pub const LIMIT: Duration = Duration::from_secs(120);
const ENQUEUE_ONE: &str = "enqueue, 1 producer (tasks/s)";

pub async fn worker_events(
    redis: &Redis,
) -> anyhow::Result<impl Stream<Item = redis::Msg> + Unpin> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.psubscribe(keys::worker_events_pattern(0)).await?;
    Ok(pubsub.into_on_message())
}

pub async fn wait_online(
    events: &mut (impl Stream<Item = redis::Msg> + Unpin),
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(msg) = events.next().await {
            if WorkerEvent::decode(msg.get_payload_bytes()).is_ok_and(|e| e.kind == "worker-online")
            {
                return Ok(());
            }
        }
        bail!("the event stream ended")
    })
    .await
    .context("no worker-online within 60 s")?
}

/// Sends `n` tasks `task(args(i))`, `in_flight` at a time; returns tasks/s.
pub async fn enqueue(
    client: &Client,
    task: &str,
    args: fn(usize) -> Vec<Value>,
    n: usize,
    in_flight: usize,
    opts: &SendOptions,
    pb: &ProgressBar,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut sends = futures_util::stream::iter(0..n)
        .map(|i| client.send_task(task, args(i), Map::new(), opts.clone()))
        .buffer_unordered(in_flight);
    while let Some(r) = sends.next().await {
        r?;
        pb.inc(1);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

#[derive(serde::Deserialize)]
struct Status<'a> {
    #[serde(borrow)]
    status: std::borrow::Cow<'a, str>,
}

/// `noop(i)`: the queue figures' task.
fn noop(i: usize) -> Vec<Value> {
    vec![json!(i)]
}

pub async fn drop_queue(redis: &Redis, queue: &str) -> anyhow::Result<()> {
    let lists = keys::queue_lists(queue);
    redis
        .run(|mut c| {
            let lists = lists.clone();
            async move { redis::cmd("DEL").arg(lists).query_async::<()>(&mut c).await }
        })
        .await?;
    Ok(())
}

/// One ping-echo as the monitor does it: send `obtener_estado` next in line (the consuming end
/// of the plain list), await the result.
pub async fn ping(client: &Client) -> anyhow::Result<f64> {
    let start = Instant::now();
    let opts = SendOptions {
        next_in_line: true,
        ..SendOptions::default()
    };
    let r = client
        .apply("obtener_estado", vec![], Map::new(), opts)
        .await?;
    let meta = r.wait(LIMIT).await?;
    anyhow::ensure!(meta.status == TaskState::Success, "ping: {:?}", meta.status);
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// How a backlog is sent.
#[derive(Clone, Copy)]
enum Backlog {
    /// As a Python Celery client sends by default: no priority, `LPUSH` onto the plain list.
    CeleryDefault,
    /// At our producers' business priority (6).
    Business,
}

impl Backlog {
    fn label(self) -> &'static str {
        match self {
            Backlog::CeleryDefault => "default priority",
            Backlog::Business => "priority 6",
        }
    }

    fn options(self) -> SendOptions {
        match self {
            Backlog::CeleryDefault => SendOptions::default(),
            Backlog::Business => SendOptions {
                priority: Some(BUSINESS_PRIORITY),
                ..SendOptions::default()
            },
        }
    }
}

pub async fn measure(which: Impl, args: &Args, mp: &MultiProgress) -> anyhow::Result<Vec<Figure>> {
    let name = which.name();
    let python = match which {
        Impl::Celery => Some(procs::python()?),
        Impl::Rust => None,
    };
    let demo = match which {
        Impl::Rust => Some(procs::binary("demo-worker")?),
        Impl::Celery => None,
    };
    let server = RedisServer::start_tcp();
    let url = server.url();
    let redis = Redis::from_url(&url)?;
    let client = Client::new(redis.clone(), QUEUE);
    let mut f = Vec::new();

    // (c) enqueue, onto a queue no worker reads (ours as our producers send, at priority 6).
    match which {
        Impl::Rust => {
            let opts = SendOptions {
                queue: Some(SCRATCH_QUEUE.into()),
                ..Backlog::Business.options()
            };
            let pb = bar(mp, args.n, format!("{name}: enqueue, 1 producer"));
            let rate = enqueue(&client, "noop", noop, args.n, 1, &opts, &pb).await?;
            f.push(Figure::higher(ENQUEUE_ONE, rate, 0));
            pb.finish();
            drop_queue(&redis, SCRATCH_QUEUE).await?;
            let pb = bar(
                mp,
                args.n,
                format!("{name}: enqueue, {IN_FLIGHT} in flight"),
            );
            let rate = enqueue(&client, "noop", noop, args.n, IN_FLIGHT, &opts, &pb).await?;
            f.push(Figure::higher(
                format!("enqueue, {IN_FLIGHT} in flight (tasks/s)"),
                rate,
                0,
            ));
            pb.finish();
            drop_queue(&redis, SCRATCH_QUEUE).await?;
        }
        Impl::Celery => {
            let py = python.as_deref().expect("python");
            let pb = bar(mp, args.n, format!("{name}: enqueue, app.send_task loop"));
            let secs = procs::celery_enqueue(py, &url, args.n, SCRATCH_QUEUE)?;
            pb.set_position(args.n as u64);
            pb.finish();
            f.push(Figure::higher(ENQUEUE_ONE, args.n as f64 / secs, 0));
            drop_queue(&redis, SCRATCH_QUEUE).await?;
        }
    }

    let mut idle = None;
    for (i, backlog) in [Backlog::CeleryDefault, Backlog::Business]
        .into_iter()
        .enumerate()
    {
        let what = backlog.label();
        // (b) drain: prefill, start a worker on it; count stored results as they are
        // published, from the first to the last.
        let pb = bar(mp, args.n, format!("{name}: prefill, {what}"));
        client
            .send_many("noop", (0..args.n).map(noop), backlog.options())
            .await?;
        pb.set_position(args.n as u64);
        pb.finish();
        let queued = client.broker().queue_len(QUEUE).await?;
        anyhow::ensure!(queued == args.n as u64, "prefill: {queued} queued");

        let mut results = redis.pubsub().await?;
        results
            .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
            .await?;
        let mut results = results.into_on_message();
        let mut events = worker_events(&redis).await?;
        let worker = match which {
            Impl::Rust => procs::rust_worker(
                demo.as_deref().expect("demo-worker"),
                &url,
                &args.worker_env,
            )?,
            Impl::Celery => procs::celery_worker(python.as_deref().expect("python"), &url)?,
        };
        let log = worker.log.display().to_string();
        wait_online(&mut events)
            .await
            .with_context(|| format!("{name} worker (log: {log})"))?;
        let pb = bar(mp, args.n, format!("{name}: drain, {what}"));
        let redis_pid = server.pid().context("redis-server's pid")?;
        server.cli(&["CONFIG", "RESETSTAT"]);
        let mut first = None;
        let mut cpu_before = (procs::Usage::default(), procs::Usage::default());
        let mut done = 0;
        while done < args.n {
            let msg = tokio::time::timeout(LIMIT, results.next())
                .await
                .with_context(|| format!("drain stalled at {done} (log: {log})"))?
                .context("result stream ended")?;
            // Only the status is read (borrowed, nothing else kept): the bench shares the CPU
            // with what it measures.
            let meta: Status = serde_json::from_slice(msg.get_payload_bytes())?;
            if meta.status == "SUCCESS" {
                first.get_or_insert_with(|| {
                    cpu_before = (worker.usage(), procs::process_usage(redis_pid));
                    Instant::now()
                });
                done += 1;
                pb.inc(1);
            }
        }
        let elapsed = first.expect("a result").elapsed().as_secs_f64();
        if args.redis_stats {
            // Printed whether or not the progress bars are drawn (they are not without a
            // terminal).
            eprintln!(
                "{name}: redis-server during the drain, {what}:\n{}",
                server.cli(&["INFO", "commandstats"])
            );
        }
        // Where the drain's time goes: CPU per task in the worker and in redis-server.
        let (w, r) = (worker.usage(), procs::process_usage(redis_pid));
        let per_task = |after: f64, before: f64| (after - before) * 1e6 / (args.n - 1) as f64;
        f.push(Figure::higher(
            format!("drain, {what}, 1 worker process (tasks/s)"),
            (args.n - 1) as f64 / elapsed,
            0,
        ));
        f.push(Figure::lower(
            format!("drain, {what}, worker CPU per task (µs)"),
            per_task(w.cpu_secs, cpu_before.0.cpu_secs),
            1,
        ));
        f.push(Figure::lower(
            format!("drain, {what}, redis-server CPU per task (µs)"),
            per_task(r.cpu_secs, cpu_before.1.cpu_secs),
            1,
        ));
        pb.finish();
        drop(results);

        // (a) ping-echo, idle: back to back (once, with the first worker).
        if i == 0 {
            let mut samples = Vec::new();
            let pb = bar(mp, args.pings, format!("{name}: ping-echo, idle"));
            for _ in 0..args.pings.min(20) {
                ping(&client).await?; // warm-up
            }
            for _ in 0..args.pings {
                samples.push(ping(&client).await?);
                pb.inc(1);
            }
            pb.finish();
            idle = Some(samples);
        }

        // (a) ping-echo while the worker drains a backlog: fill it, then send a ping every
        // tick until the queue is empty, each awaited on its own.
        // In one round trip: sent one by one, a fast worker would drain most of it meanwhile.
        let pb = bar(mp, args.backlog, format!("{name}: backlog fill, {what}"));
        client
            .send_many("noop", (0..args.backlog).map(noop), backlog.options())
            .await?;
        pb.set_position(args.backlog as u64);
        pb.finish();
        let pb = bar(
            mp,
            args.pings,
            format!("{name}: ping-echo during the backlog, {what}"),
        );
        let mut pings = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(BACKLOG_PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while pings.len() < args.pings {
            tick.tick().await;
            if client.broker().queue_len(QUEUE).await? == 0 && !pings.is_empty() {
                break;
            }
            let client = client.clone();
            pings.spawn(async move { ping(&client).await });
        }
        pb.set_length(pings.len() as u64);
        let mut samples = Vec::new();
        while let Some(r) = pings.join_next().await {
            samples.push(r??);
            pb.inc(1);
        }
        pb.finish();
        drop(worker);
        // Whatever the pings left behind (a result, nothing queued) does not matter to the
        // next drain, which counts only its own results; the queue must be empty, though.
        drop_queue(&redis, QUEUE).await?;
        let n = samples.len() as f64;
        if i == 0 {
            latency_figures(&mut f, "ping idle", idle.take().unwrap_or_default());
        }
        latency_figures(&mut f, &format!("ping in backlog, {what},"), samples);
        f.push(Figure::info(
            format!("ping in backlog, {what}, samples"),
            n,
            0,
        ));
    }
    drop(server);
    Ok(f)
}
