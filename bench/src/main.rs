//! Benchmarks of this project against the seed's Python design (Celery 5.5 worker, Flask +
//! Flask-SQLAlchemy service, a Celery-client monitor loop), side by side in one run, each side
//! against its own private redis-server started here (issue 6):
//!
//! - `queue`: the client's enqueue rate, one worker process's drain rate with every result
//!   stored, ping-echo round trips idle and while a 10 000-task backlog drains;
//! - `system`: the whole stack of each side: `GET /inventario` at 32 connections, the monitor's
//!   false alarms during a backlog, failure detection after SIGKILL of the worker, resident
//!   memory of each program idle and under load.
//!
//! Three more parts measure deployments of our own system, ours only, and run only when asked
//! (they need PostgreSQL and HAProxy, and take minutes; issue 23):
//!
//! - `workers`: drains with several worker processes on one queue (`--workers 1,2,4`);
//! - `system-pg`: the listing, stock movements end to end and the monitor's ping round trip,
//!   on SQLite and on PostgreSQL;
//! - `balancer`: the same through HAProxy in front of three service instances, against one
//!   instance directly and through the same HAProxy;
//! - `replicas`: what `REDIS_WAIT_REPLICAS=1` costs sends and movements, against a master with
//!   one replica.
//!
//! `cargo run --release -p bench -- [--part queue|system|workers|system-pg|balancer|replicas,...]
//! [--only rust|celery] [--quick]`

mod balancer;
mod http;
mod procs;
mod queue;
mod replicas;
mod report;
mod stack;
mod stores;
mod system;
mod workers;

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use indicatif::MultiProgress;

/// mimalloc rather than glibc's malloc: allocation is a large part of the queue's CPU cost
/// (the measurement is in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const QUEUE: &str = "inventario";

#[derive(Parser)]
#[command(about = "Queue benchmarks: ours vs Python Celery 5.5, on a private redis-server")]
struct Args {
    /// Tasks enqueued and then drained by one worker process (in the workers part, by each
    /// count of processes; in the replicas part, tasks sent one at a time).
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Idle ping-echo samples (and the most pings sent during the backlog).
    #[arg(long, default_value_t = 2_000)]
    pings: usize,
    /// Tasks queued ahead of the pings for the "during a backlog" figure.
    #[arg(long, default_value_t = 10_000)]
    backlog: usize,
    /// HTTP load duration, seconds (after a warm-up of a tenth of it).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    http_secs: Duration,
    /// Concurrent keep-alive connections of the HTTP load.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// How many times the worker is SIGKILLed for the detection figure.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Measure only one implementation.
    #[arg(long, value_enum)]
    only: Option<Impl>,
    /// The parts to measure (repeatable, or a list). Without it: queue and system, ours and
    /// the seed's side by side; workers, system-pg, balancer and replicas run only when named.
    #[arg(long, value_enum, value_delimiter = ',')]
    part: Vec<Part>,
    /// Worker process counts of the workers part's drains, each draining --n tasks.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    workers: Vec<usize>,
    /// Stock movements sent (and applied) per configuration in the system-pg, balancer and
    /// replicas parts.
    #[arg(long, default_value_t = 5_000)]
    movements: usize,
    /// Print redis-server's per-command statistics of each drain (`INFO commandstats`).
    #[arg(long)]
    redis_stats: bool,
    /// A setting for our queue figures' worker, as its environment variable (repeatable), to
    /// try tunings: `--worker-env PREFETCH_MULTIPLIER=1`. Without it the worker's defaults.
    #[arg(long = "worker-env", value_parser = parse_env)]
    worker_env: Vec<(String, String)>,
    /// Tiny numbers for a CI smoke (n=200, pings=50, backlog=300, 1 s of HTTP, 1 kill,
    /// 50 movements).
    #[arg(long)]
    quick: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=value"))
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Queue,
    System,
    Workers,
    SystemPg,
    Balancer,
    Replicas,
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
            Impl::Celery => "seed (Python)",
        }
    }
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.n = args.n.min(200);
        args.pings = args.pings.min(50);
        args.backlog = args.backlog.min(300);
        args.http_secs = args.http_secs.min(Duration::from_secs(1));
        args.kills = args.kills.min(1);
        args.movements = args.movements.min(50);
    }
    anyhow::ensure!(args.n >= 2, "--n must be at least 2");
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(args.movements >= 1, "--movements must be at least 1");
    anyhow::ensure!(
        !args.workers.is_empty() && !args.workers.contains(&0),
        "--workers takes counts of at least 1"
    );
    let parts = if args.part.is_empty() {
        vec![Part::Queue, Part::System]
    } else {
        args.part.clone()
    };
    let mp = MultiProgress::new();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for which in [Impl::Rust, Impl::Celery] {
        if args.only.is_some_and(|o| o != which) {
            continue;
        }
        let out = if which == Impl::Rust {
            &mut ours
        } else {
            &mut theirs
        };
        if parts.contains(&Part::Queue) {
            out.extend(queue::measure(which, &args, &mp).await?);
        }
        if parts.contains(&Part::System) {
            out.extend(system::measure(which, &args, &mp).await?);
        }
    }
    if !ours.is_empty() || !theirs.is_empty() {
        println!(
            "\nn={} pings={} backlog={} http={:?} x {} connections, kills={} \
             (ratio: how many times better ours is)",
            args.n, args.pings, args.backlog, args.http_secs, args.connections, args.kills
        );
        report::print_table(&ours, &theirs, "Celery 5.5 / Flask");
    }
    let ours_only = [
        Part::Workers,
        Part::SystemPg,
        Part::Balancer,
        Part::Replicas,
    ];
    if args.only == Some(Impl::Celery) && parts.iter().any(|p| ours_only.contains(p)) {
        println!(
            "\nworkers, system-pg, balancer and replicas measure ours only: skipped with \
             --only celery"
        );
        return Ok(());
    }
    if parts.contains(&Part::Workers) {
        workers::measure(&args, &mp).await?;
    }
    if parts.contains(&Part::SystemPg) {
        stores::measure(&args, &mp).await?;
    }
    if parts.contains(&Part::Balancer) {
        balancer::measure(&args, &mp).await?;
    }
    if parts.contains(&Part::Replicas) {
        replicas::measure(&args, &mp).await?;
    }
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
