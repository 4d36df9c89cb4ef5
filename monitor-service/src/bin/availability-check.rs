//! availability-check: requests a URL (by default the monitor's `GET /monitor`) many times and
//! says whether its availability meets the ASR. Exit status 0 when it holds, 1 when it does
//! not, 2 on bad usage (or when a requested output file cannot be written).
//!
//! Two ways to send (see `monitor_service::availability::plan`): `-c` clients × `-n` requests
//! one after another, as before, or for `--duration`, either with `-c` clients or at a fixed
//! `--rate` whatever the answers take, so a run can span a worker kill. While it runs, a
//! progress line; after it, the run second by second, the summary with failures by kind, and
//! on request every sample as CSV (`--csv`) and the run drawn as SVG (`--svg`).
//!
//! This file only sends, times and writes; every number and every view is computed in the
//! library's `availability` module.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use monitor_service::availability::live::Progress;
use monitor_service::availability::plan::Plan;
use monitor_service::availability::timeline::{timeline, Table};
use monitor_service::availability::{self, millis, summarize, Outcome, Sample};
use reqwest::Url;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

#[derive(Parser)]
#[command(
    version,
    about = "Measures the availability of an HTTP endpoint against an ASR",
    long_about = "Measures the availability of an HTTP endpoint against an ASR.\n\n\
        Closed loop (the default): -c clients, each sending its next request when the previous \
        one has been answered, -n requests each, or for --duration. A slow answer slows the \
        sending, so an outage shows as fewer requests.\n\n\
        Open loop: --duration with --rate: requests are due at a fixed rate whatever the \
        answers take (as users arrive; this avoids coordinated omission), so every second of \
        an outage gets its share. -c and -n do not apply; at most --max-in-flight requests \
        wait for an answer at once. Latency counts from when a request was due.\n\n\
        Ctrl-C stops the sending, waits for the requests in flight, and reports and records \
        what was sent; a second Ctrl-C quits at once.\n\n\
        Exit status: 0 when the ASR holds, 1 when it does not, 2 on bad usage."
)]
struct Args {
    /// The URL to request (GET). A 2xx answer is a success; anything else, or no answer within
    /// the timeout, a failure.
    #[arg(
        long,
        env = "CHECK_URL",
        default_value = "http://localhost:3002/monitor"
    )]
    url: Url,
    /// Concurrent clients (closed loop), each sending its next request when the previous one is
    /// answered. Not used with --rate.
    #[arg(short = 'c', long, env = "CHECK_CLIENTS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Requests per client, one after another. Not used with --duration.
    #[arg(short = 'n', long, env = "CHECK_REQUESTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// Run for this long instead of -n requests per client (e.g. 30s, 2m): with -c clients, or
    /// at --rate.
    #[arg(long, env = "CHECK_DURATION")]
    duration: Option<humantime::Duration>,
    /// Open loop: requests per second on a fixed schedule, whatever the answers take, for
    /// --duration (required). A fraction is fine (0.5 is one every two seconds).
    #[arg(long, env = "CHECK_RATE", requires = "duration")]
    rate: Option<f64>,
    /// With --rate: at most this many requests waiting for an answer at once. When reached,
    /// the next sends wait (a warning says so) and the wait counts in their latency.
    #[arg(long, env = "CHECK_MAX_IN_FLIGHT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// The ASR: minimum availability, percent.
    #[arg(long, env = "CHECK_ASR", default_value_t = 99.0)]
    asr: f64,
    /// Per-request timeout, milliseconds.
    #[arg(long, env = "CHECK_TIMEOUT_MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// Write every sample to this CSV file (offset, wall-clock time, latency, outcome, status).
    #[arg(long, env = "CHECK_CSV")]
    csv: Option<PathBuf>,
    /// Draw the run into this SVG file (latency over time, failures by kind, the 2 s ASR line).
    #[arg(long, env = "CHECK_SVG")]
    svg: Option<PathBuf>,
}

/// The output files, created before the run so a bad path costs no run.
struct Outputs {
    csv: Option<(PathBuf, File)>,
    svg: Option<(PathBuf, File)>,
}

fn create(path: Option<&PathBuf>, flag: &str) -> Result<Option<(PathBuf, File)>, clap::Error> {
    let Some(path) = path else { return Ok(None) };
    File::create(path)
        .map(|f| Some((path.clone(), f)))
        .map_err(|e| {
            usage_error(
                clap::error::ErrorKind::Io,
                format!("no se puede escribir {flag} {}: {e}", path.display()),
            )
        })
}

fn usage_error(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    Args::command().error(kind, message)
}

/// The arguments and what they ask for, or a usage error (exit status 2).
fn parse() -> Result<(Args, Plan, Outputs), clap::Error> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches)?;
    // A flag given on the command line that the chosen mode ignores is a mistake; the same
    // setting from the environment is only a background default.
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let conflict = clap::error::ErrorKind::ArgumentConflict;
    if args.rate.is_some() && given("clients") {
        return Err(usage_error(
            conflict,
            "-c/--clients es del bucle cerrado; con --rate las solicitudes salen a ritmo fijo \
             (acote las que esperan respuesta con --max-in-flight)",
        ));
    }
    if args.duration.is_some() && given("requests") {
        return Err(usage_error(
            conflict,
            "-n/--requests y --duration se excluyen: elija un número de solicitudes por \
             cliente o una duración",
        ));
    }
    let invalid = clap::error::ErrorKind::ValueValidation;
    let plan = match (args.duration, args.rate) {
        (None, _) => Plan::Rounds {
            clients: args.clients as usize,
            requests: args.requests as usize,
        },
        (Some(d), None) => Plan::closed_for(args.clients as usize, d.into())
            .map_err(|e| usage_error(invalid, e))?,
        (Some(d), Some(rate)) => Plan::open(rate, d.into()).map_err(|e| usage_error(invalid, e))?,
    };
    let outputs = Outputs {
        csv: create(args.csv.as_ref(), "--csv")?,
        svg: create(args.svg.as_ref(), "--svg")?,
    };
    Ok((args, plan, outputs))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (args, plan, outputs) = match parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match run(args, plan, outputs).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args, plan: Plan, outputs: Outputs) -> anyhow::Result<ExitCode> {
    let concurrency = match plan {
        Plan::Open { .. } => args.max_in_flight as usize,
        _ => args.clients as usize,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let started = chrono::Utc::now();
    let run = Run::go(http, args.url.clone(), plan, args.max_in_flight as usize).await;
    let mut samples = run.samples;
    samples.sort_by_key(|s| s.offset);
    // The views span the planned length (a quiet end is part of the run), or what the run
    // lasted when Ctrl-C cut it short.
    let span = run.interrupted.or(plan.duration()).unwrap_or_default();

    let report = summarize(&samples, args.asr);
    println!("URL: {} ({plan})", args.url);
    if let Some(at) = run.interrupted {
        println!(
            "Interrumpida con Ctrl-C a los {:.1} s: todo cubre lo enviado hasta entonces.",
            at.as_secs_f64()
        );
    }
    println!("{}", Table(&timeline(&samples, span)));
    println!("{report}");
    if run.delayed > 0 {
        println!(
            "Envíos retrasados por --max-in-flight {}: {} (hasta {:.1} ms; cuentan en su latencia)",
            args.max_in_flight,
            run.delayed,
            millis(run.max_delay)
        );
    }

    if let Some((path, file)) = outputs.csv {
        let mut out = BufWriter::new(file);
        availability::csv::write(&mut out, started, &samples)
            .and_then(|()| out.flush().map_err(Into::into))
            .with_context(|| format!("escribir {}", path.display()))?;
        println!("CSV: {}", path.display());
    }
    if let Some((path, file)) = outputs.svg {
        let chart = availability::svg::Chart {
            url: args.url.as_str(),
            plan: &plan,
            span,
            report: &report,
            samples: &samples,
        };
        write_all(file, availability::svg::render(&chart).as_bytes(), &path)?;
        println!("SVG: {}", path.display());
    }
    Ok(if report.holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_all(file: File, bytes: &[u8], path: &Path) -> anyhow::Result<()> {
    let mut out = BufWriter::new(file);
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("escribir {}", path.display()))
}

/// A finished run: its samples in the order they completed, how often the in-flight bound held
/// a send back, and when Ctrl-C stopped it, if it did.
struct Run {
    samples: Vec<Sample>,
    delayed: usize,
    max_delay: Duration,
    interrupted: Option<Duration>,
}

/// What every sending task shares: the client, the target, the start, the count of requests
/// sent (for the progress line), where samples go, and the Ctrl-C signal.
#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    url: Url,
    start: Instant,
    sent: Arc<AtomicUsize>,
    done: mpsc::UnboundedSender<Sample>,
    stop: watch::Receiver<bool>,
}

impl Run {
    /// Sends as `plan` says, shows progress, and returns when every request sent has an
    /// outcome. The first Ctrl-C stops the sending and lets the requests in flight finish (within
    /// the timeout), so the run is reported and recorded up to there; a second one quits.
    async fn go(http: reqwest::Client, url: Url, plan: Plan, max_in_flight: usize) -> Run {
        let start = Instant::now();
        let (stop_tx, stop) = watch::channel(false);
        let interrupted = Arc::new(std::sync::OnceLock::new());
        let ctrl_c = tokio::spawn({
            let interrupted = interrupted.clone();
            async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    if interrupted.set(start.elapsed()).is_err() {
                        std::process::exit(130);
                    }
                    eprintln!(
                        "\nInterrumpida: se esperan las solicitudes en curso (Ctrl-C otra vez \
                         para salir sin resumen)"
                    );
                    let _ = stop_tx.send(true);
                }
            }
        });
        let (done, done_rx) = mpsc::unbounded_channel();
        let sent = Arc::new(AtomicUsize::new(0));
        let collector = tokio::spawn(collect(done_rx, start, sent.clone(), plan.total()));
        let sender = Sender {
            http,
            url,
            start,
            sent,
            done,
            stop,
        };
        let (delayed, max_delay) = match plan {
            Plan::Open { .. } => sender.open(&plan, max_in_flight).await,
            Plan::Rounds { clients, requests } => {
                sender.closed(clients, Stop::After(requests)).await;
                (0, Duration::ZERO)
            }
            Plan::ClosedFor { clients, duration } => {
                sender.closed(clients, Stop::At(start + duration)).await;
                (0, Duration::ZERO)
            }
        };
        let samples = collector.await.unwrap_or_default();
        ctrl_c.abort();
        Run {
            samples,
            delayed,
            max_delay,
            interrupted: interrupted.get().copied(),
        }
    }
}

/// When a closed-loop client stops.
#[derive(Clone, Copy)]
enum Stop {
    After(usize),
    At(Instant),
}

impl Sender {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// `clients` tasks, each sending one request after another until `stop` (or Ctrl-C).
    async fn closed(self, clients: usize, stop: Stop) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let sender = self.clone();
            tasks.spawn(async move {
                let mut n = 0;
                loop {
                    let now = Instant::now();
                    let finished = match stop {
                        Stop::After(requests) => n >= requests,
                        Stop::At(end) => now >= end,
                    };
                    if finished || sender.stopped() {
                        break;
                    }
                    n += 1;
                    sender.sent.fetch_add(1, Ordering::Relaxed);
                    let sample = request(&sender.http, &sender.url, now, sender.start).await;
                    let _ = sender.done.send(sample);
                }
            });
        }
        drop(self);
        while tasks.join_next().await.is_some() {}
    }

    /// Sends request `i` when the plan says it is due, each in a task of its own, at most
    /// `max_in_flight` waiting for answers. Returns how many sends the bound held back, and the
    /// longest such wait.
    async fn open(self, plan: &Plan, max_in_flight: usize) -> (usize, Duration) {
        let total = plan.total().unwrap_or(0);
        let slots = Arc::new(Semaphore::new(max_in_flight));
        let mut tasks = tokio::task::JoinSet::new();
        let (mut delayed, mut max_delay) = (0, Duration::ZERO);
        let mut stop = self.stop.clone();
        for i in 0..total {
            let due = self.start + plan.due(i);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                Ok(_) = stop.wait_for(|&stopped| stopped) => break,
            }
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if delayed == 0 {
                        eprintln!(
                            "aviso: {max_in_flight} solicitudes esperan respuesta \
                             (--max-in-flight): los envíos siguientes esperan un hueco, y esa \
                             espera cuenta en su latencia"
                        );
                    }
                    delayed += 1;
                    let slot = tokio::select! {
                        slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                        Ok(_) = stop.wait_for(|&stopped| stopped) => break,
                    };
                    max_delay = max_delay.max(due.elapsed());
                    slot
                }
            };
            self.sent.fetch_add(1, Ordering::Relaxed);
            let sender = self.clone();
            tasks.spawn(async move {
                // Timed from when it was due, not when it left: a late send is a wait the user
                // of an open system would have had too.
                let sample = request(&sender.http, &sender.url, due, sender.start).await;
                drop(slot);
                let _ = sender.done.send(sample);
            });
            // Reap finished tasks as we go so a long run holds only the ones in flight.
            while tasks.try_join_next().is_some() {}
        }
        drop(self);
        while tasks.join_next().await.is_some() {}
        (delayed, max_delay)
    }
}

/// One GET, timed from `from`, its outcome classified.
async fn request(http: &reqwest::Client, url: &Url, from: Instant, start: Instant) -> Sample {
    let outcome = match http.get(url.clone()).send().await {
        Ok(response) => {
            let status = response.status();
            // Read the whole body: a request counts once its answer has arrived.
            let body = response.bytes().await;
            match (status.is_success(), body) {
                (false, _) => Outcome::Status(status.as_u16()),
                (true, Ok(_)) => Outcome::Ok,
                (true, Err(e)) => classify(&e),
            }
        }
        Err(e) => classify(&e),
    };
    Sample {
        offset: from - start,
        latency: from.elapsed(),
        outcome,
    }
}

/// What kind of failure a transport error is: the client's timeout, a refused connection
/// (found as an `io::Error` somewhere down the error's chain of causes), or anything else.
fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        return Outcome::Timeout;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Outcome::Refused;
            }
        }
        cause = c.source();
    }
    Outcome::Connection
}

/// Receives every sample as it completes and keeps the progress line: rewritten in place on a
/// terminal, a plain line each second otherwise (a log, a CI job).
async fn collect(
    mut done: mpsc::UnboundedReceiver<Sample>,
    start: Instant,
    sent: Arc<AtomicUsize>,
    total: Option<usize>,
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(total.unwrap_or(1024));
    let mut progress = Progress::default();
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        bar
    });
    let mut tick = tokio::time::interval(if terminal {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(1)
    });
    tick.tick().await;
    loop {
        tokio::select! {
            sample = done.recv() => match sample {
                Some(sample) => {
                    progress.record(start.elapsed(), &sample);
                    samples.push(sample);
                }
                None => break,
            },
            _ = tick.tick() => {
                let line = progress.line(start.elapsed(), sent.load(Ordering::Relaxed));
                match &bar {
                    Some(bar) => bar.set_message(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    samples
}
