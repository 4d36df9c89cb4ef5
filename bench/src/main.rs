//! Queue benchmarks, ours and Python Celery 5.5's side by side, each against a private
//! redis-server started here (issue 6, first part): ping-echo round trip idle and during a
//! backlog, one worker process's drain rate with every result stored, and the client's enqueue
//! rate. Both workers are driven by the same Rust client (`shared::Client`), except for the
//! Celery enqueue figure, which is Celery's own client (`app.send_task`).
//!
//! `cargo run --release -p bench -- [--n 20000] [--pings 2000] [--only rust|celery] [--quick]`

mod procs;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use futures_util::{Stream, StreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Map};
use shared::protocol::{TaskState, WorkerEvent};
use shared::testing::RedisServer;
use shared::worker::BUSINESS_PRIORITY;
use shared::{keys, Client, Redis, SendOptions};

pub const QUEUE: &str = "inventario";
/// Where enqueue figures that must not feed the worker are sent (deleted afterwards).
const SCRATCH_QUEUE: &str = "bench-enqueue";
/// Sends in flight for the concurrent enqueue and the backlog fill.
const IN_FLIGHT: usize = 64;
/// Pings during the backlog are sent open-loop, one per tick.
const BACKLOG_PING_EVERY: Duration = Duration::from_millis(1);
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Parser)]
#[command(about = "Queue benchmarks: ours vs Python Celery 5.5, on a private redis-server")]
struct Args {
    /// Tasks enqueued and then drained by one worker process.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Idle ping-echo samples (and the most pings sent during the backlog).
    #[arg(long, default_value_t = 2_000)]
    pings: usize,
    /// Tasks queued ahead of the pings for the "during a backlog" figure.
    #[arg(long, default_value_t = 10_000)]
    backlog: usize,
    /// Measure only one implementation.
    #[arg(long, value_enum)]
    only: Option<Impl>,
    /// Tiny numbers for a CI smoke (n=200, pings=50, backlog=300).
    #[arg(long)]
    quick: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Impl {
    Rust,
    Celery,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Rust => "ours",
            Impl::Celery => "Celery 5.5",
        }
    }
}

#[derive(Default, Clone)]
struct Figures {
    enqueue_one: f64,
    enqueue_many: Option<f64>,
    drain: f64,
    idle: Vec<f64>,
    backlog: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn bar(mp: &MultiProgress, len: usize, msg: String) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(len as u64));
    pb.set_style(
        ProgressStyle::with_template("{msg:48} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

async fn worker_events(redis: &Redis) -> anyhow::Result<impl Stream<Item = redis::Msg> + Unpin> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.psubscribe(keys::worker_events_pattern(0)).await?;
    Ok(pubsub.into_on_message())
}

async fn wait_online(events: &mut (impl Stream<Item = redis::Msg> + Unpin)) -> anyhow::Result<()> {
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

/// Sends `n` noop tasks, `in_flight` at a time; returns tasks/s.
async fn enqueue(
    client: &Client,
    n: usize,
    in_flight: usize,
    opts: &SendOptions,
    pb: &ProgressBar,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut sends = futures_util::stream::iter(0..n)
        .map(|i| client.send_task("noop", vec![json!(i)], Map::new(), opts.clone()))
        .buffer_unordered(in_flight);
    while let Some(r) = sends.next().await {
        r?;
        pb.inc(1);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn drop_queue(redis: &Redis, queue: &str) -> anyhow::Result<()> {
    let lists = keys::queue_lists(queue);
    redis
        .run(|mut c| {
            let lists = lists.clone();
            async move { redis::cmd("DEL").arg(lists).query_async::<()>(&mut c).await }
        })
        .await?;
    Ok(())
}

/// One ping-echo as the monitor does it: send `obtener_estado` at priority 0, await the result.
async fn ping(client: &Client) -> anyhow::Result<f64> {
    let start = Instant::now();
    let r = client
        .apply("obtener_estado", vec![], Map::new(), SendOptions::default())
        .await?;
    let meta = r.wait(LIMIT).await?;
    anyhow::ensure!(meta.status == TaskState::Success, "ping: {:?}", meta.status);
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

async fn measure(which: Impl, args: &Args, mp: &MultiProgress) -> anyhow::Result<Figures> {
    let name = which.name();
    let python = match which {
        Impl::Celery => Some(procs::python()?),
        Impl::Rust => None,
    };
    let demo = match which {
        Impl::Rust => Some(procs::demo_worker()?),
        Impl::Celery => None,
    };
    let server = RedisServer::start_tcp();
    let url = server.url();
    let redis = Redis::from_url(&url)?;
    let client = Client::new(redis.clone(), QUEUE);
    // Our producers send business work below the health lane; Celery's at its default.
    let opts = match which {
        Impl::Rust => SendOptions {
            priority: Some(BUSINESS_PRIORITY),
            ..SendOptions::default()
        },
        Impl::Celery => SendOptions::default(),
    };
    let mut f = Figures::default();

    // (c) enqueue, then the prefill of (b).
    match which {
        Impl::Rust => {
            let pb = bar(mp, args.n, format!("{name}: enqueue, 1 producer"));
            f.enqueue_one = enqueue(&client, args.n, 1, &opts, &pb).await?;
            pb.finish();
            let pb = bar(
                mp,
                args.n,
                format!("{name}: enqueue, {IN_FLIGHT} in flight"),
            );
            let scratch = SendOptions {
                queue: Some(SCRATCH_QUEUE.into()),
                ..opts.clone()
            };
            f.enqueue_many = Some(enqueue(&client, args.n, IN_FLIGHT, &scratch, &pb).await?);
            pb.finish();
            drop_queue(&redis, SCRATCH_QUEUE).await?;
        }
        Impl::Celery => {
            let py = python.as_deref().expect("python");
            let pb = bar(mp, args.n, format!("{name}: enqueue, app.send_task loop"));
            let secs = procs::celery_enqueue(py, &url, args.n, SCRATCH_QUEUE)?;
            pb.set_position(args.n as u64);
            pb.finish();
            f.enqueue_one = args.n as f64 / secs;
            drop_queue(&redis, SCRATCH_QUEUE).await?;
            let pb = bar(mp, args.n, format!("{name}: prefill (our client)"));
            enqueue(&client, args.n, IN_FLIGHT, &opts, &pb).await?;
            pb.finish();
        }
    }
    let queued = client.broker().queue_len(QUEUE).await?;
    anyhow::ensure!(queued == args.n as u64, "prefill: {queued} queued");

    // (b) drain: start the worker on the prefilled queue; count stored results as they are
    // published, from the first to the last.
    let mut results = redis.pubsub().await?;
    results
        .psubscribe(format!("{}*", keys::RESULT_KEY_PREFIX))
        .await?;
    let mut results = results.into_on_message();
    let mut events = worker_events(&redis).await?;
    let worker = match which {
        Impl::Rust => procs::rust_worker(demo.as_deref().expect("demo-worker"), &url)?,
        Impl::Celery => procs::celery_worker(python.as_deref().expect("python"), &url)?,
    };
    let log = worker.log.display().to_string();
    wait_online(&mut events)
        .await
        .with_context(|| format!("{name} worker (log: {log})"))?;
    let pb = bar(mp, args.n, format!("{name}: drain, 1 worker process"));
    let mut first = None;
    let mut done = 0;
    while done < args.n {
        let msg = tokio::time::timeout(LIMIT, results.next())
            .await
            .with_context(|| format!("drain stalled at {done} (log: {log})"))?
            .context("result stream ended")?;
        let meta: serde_json::Value = serde_json::from_slice(msg.get_payload_bytes())?;
        if meta["status"] == "SUCCESS" {
            first.get_or_insert_with(Instant::now);
            done += 1;
            pb.inc(1);
        }
    }
    let elapsed = first.expect("a result").elapsed().as_secs_f64();
    f.drain = (args.n - 1) as f64 / elapsed;
    pb.finish();
    drop(results);

    // (a) ping-echo, idle: back to back.
    let pb = bar(mp, args.pings, format!("{name}: ping-echo, idle"));
    for _ in 0..args.pings.min(20) {
        ping(&client).await?; // warm-up
    }
    for _ in 0..args.pings {
        f.idle.push(ping(&client).await?);
        pb.inc(1);
    }
    pb.finish();

    // (a) ping-echo while the worker drains a backlog: fill it, then send a ping every tick
    // until the queue is empty, each awaited on its own.
    let pb = bar(mp, args.backlog, format!("{name}: backlog fill"));
    enqueue(&client, args.backlog, IN_FLIGHT, &opts, &pb).await?;
    pb.finish();
    let pb = bar(
        mp,
        args.pings,
        format!("{name}: ping-echo during the backlog"),
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
    while let Some(r) = pings.join_next().await {
        f.backlog.push(r??);
        pb.inc(1);
    }
    pb.finish();

    for v in [&mut f.idle, &mut f.backlog] {
        v.sort_by(f64::total_cmp);
    }
    drop(worker);
    drop(server);
    Ok(f)
}

fn print_table(ours: Option<&Figures>, celery: Option<&Figures>) {
    let fmt = |v: Option<f64>, digits: usize| match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "—".into(),
    };
    // (label, ours, celery, higher is better, digits)
    type Pick = fn(&Figures) -> Option<f64>;
    let rows: Vec<(String, Pick, bool, usize)> = vec![
        (
            "enqueue, 1 producer (tasks/s)".into(),
            |f| Some(f.enqueue_one),
            true,
            0,
        ),
        (
            format!("enqueue, {IN_FLIGHT} in flight (tasks/s)"),
            |f| f.enqueue_many,
            true,
            0,
        ),
        (
            "drain, 1 worker process (tasks/s)".into(),
            |f| Some(f.drain),
            true,
            0,
        ),
        (
            "ping idle p50 (ms)".into(),
            |f| Some(percentile(&f.idle, 50.0)),
            false,
            3,
        ),
        (
            "ping idle p95 (ms)".into(),
            |f| Some(percentile(&f.idle, 95.0)),
            false,
            3,
        ),
        (
            "ping idle p99 (ms)".into(),
            |f| Some(percentile(&f.idle, 99.0)),
            false,
            3,
        ),
        (
            "ping in backlog p50 (ms)".into(),
            |f| Some(percentile(&f.backlog, 50.0)),
            false,
            3,
        ),
        (
            "ping in backlog p95 (ms)".into(),
            |f| Some(percentile(&f.backlog, 95.0)),
            false,
            3,
        ),
        (
            "ping in backlog p99 (ms)".into(),
            |f| Some(percentile(&f.backlog, 99.0)),
            false,
            3,
        ),
        (
            "ping in backlog, samples".into(),
            |f| Some(f.backlog.len() as f64),
            true,
            0,
        ),
    ];
    println!();
    println!("| figure | ours | Celery 5.5 | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for (label, pick, higher, digits) in rows {
        let o = ours.and_then(pick);
        let c = celery.and_then(pick);
        let ratio = match (o, c) {
            (Some(o), Some(c)) if label.ends_with("samples") => {
                let _ = (o, c);
                "—".into()
            }
            (Some(o), Some(c)) if o > 0.0 && c > 0.0 && o.is_finite() && c.is_finite() => {
                format!("{:.1}×", if higher { o / c } else { c / o })
            }
            _ => "—".into(),
        };
        println!(
            "| {label} | {} | {} | {ratio} |",
            fmt(o, digits),
            fmt(c, digits)
        );
    }
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.n = args.n.min(200);
        args.pings = args.pings.min(50);
        args.backlog = args.backlog.min(300);
    }
    anyhow::ensure!(args.n >= 2, "--n must be at least 2");
    let mp = MultiProgress::new();
    let mut ours = None;
    let mut celery = None;
    if args.only != Some(Impl::Celery) {
        ours = Some(measure(Impl::Rust, &args, &mp).await?);
    }
    if args.only != Some(Impl::Rust) {
        celery = Some(measure(Impl::Celery, &args, &mp).await?);
    }
    println!(
        "\nn={} pings={} backlog={} (ratio: how many times better ours is)",
        args.n, args.pings, args.backlog
    );
    print_table(ours.as_ref(), celery.as_ref());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On Ctrl-C the measurement is dropped, and with it the workers and redis-servers.
    tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}
