//! The system figures (issue 6, second part), each side running its whole design against a
//! private redis-server: ours (`inventario-service`, `inventario-worker`, `monitor-service`) and
//! the seed's (the Flask + Flask-SQLAlchemy app under gunicorn, the Celery prefork worker, the
//! seed-style monitor loop `monitor.py`), both with pings every 250 ms and a 750 ms timeout.
//!
//! In order: resident memory idle; `GET /inventario` from 32 keep-alive connections (requests/s,
//! latency, and the service's memory under that load); a backlog of `obtener_estado` tasks
//! drained by the worker (memory of the worker and the monitor under load, and the monitor's
//! false alarms meanwhile); failure detection: the worker SIGKILLed at random instants, the time
//! until the monitor prints its CAIDO alert, then restarted until the monitor recovers.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::MultiProgress;
use rand::Rng;
use shared::worker::BUSINESS_PRIORITY;
use shared::{Client, Redis, SendOptions};
use testkit::{free_port, RedisServer};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::procs::{self, KillOnDrop, Line};
use crate::queue::{wait_online, worker_events};
use crate::report::{bar, latency_figures, phase, Figure};
use crate::{http, Args, Impl, QUEUE};

const START_LIMIT: Duration = Duration::from_secs(60);
/// How long the stack idles before its memory is read.
const IDLE: Duration = Duration::from_secs(2);
/// Resident memory is sampled this often while a load runs; the figure is the peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How each side's programs are started.
struct Programs {
    which: Impl,
    url: String,
    db: PathBuf,
    /// Ours: the three binaries. The seed's: its Python.
    service: PathBuf,
    worker: PathBuf,
    monitor: PathBuf,
}

impl Programs {
    fn new(which: Impl, url: &str, dir: &std::path::Path) -> anyhow::Result<Self> {
        let (service, worker, monitor) = match which {
            Impl::Rust => (
                procs::binary("inventario-service")?,
                procs::binary("inventario-worker")?,
                procs::binary("monitor-service")?,
            ),
            Impl::Celery => {
                let py = procs::python()?;
                (py.clone(), py.clone(), py)
            }
        };
        Ok(Programs {
            which,
            url: url.into(),
            db: dir.join("inventario.db"),
            service,
            worker,
            monitor,
        })
    }

    fn ours(&self, binary: &PathBuf, name: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(binary);
        cmd.env("REDIS_URL", &self.url)
            .env("QUEUE", QUEUE)
            .env("DATABASE_URL", format!("sqlite://{}", self.db.display()))
            .env("RUST_LOG", "warn")
            .env("WORKER_HOSTNAME", format!("bench-{name}@localhost"));
        cmd
    }

    fn service(&self, port: u16) -> anyhow::Result<KillOnDrop> {
        match self.which {
            Impl::Rust => {
                let mut cmd = self.ours(&self.service, "service");
                cmd.env("HTTP_ADDR", format!("127.0.0.1:{port}"));
                KillOnDrop::spawn(cmd, "inventario-service")
            }
            Impl::Celery => procs::flask(&self.service, &self.db, port),
        }
    }

    fn worker(&self) -> anyhow::Result<KillOnDrop> {
        match self.which {
            Impl::Rust => KillOnDrop::spawn(self.ours(&self.worker, "worker"), "inventario-worker"),
            Impl::Celery => procs::celery_worker(&self.worker, &self.url),
        }
    }

    fn monitor(&self) -> anyhow::Result<(KillOnDrop, UnboundedReceiver<Line>)> {
        match self.which {
            Impl::Rust => {
                let mut cmd = self.ours(&self.monitor, "monitor");
                cmd.env("HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
                    .env("RUST_LOG", "info")
                    .env("PING_INTERVAL_MS", "250")
                    .env("PING_TIMEOUT_MS", "750");
                KillOnDrop::spawn_watched(cmd, "monitor-service")
            }
            Impl::Celery => procs::python_monitor(&self.monitor, &self.url),
        }
    }
}

/// Both monitors print `[ALERTA] ... CAIDO` when they declare the target down and
/// `[RECUPERADO] ...` when it answers again (ours also `[OK] ...` for every good ping).
fn is_down(line: &str) -> bool {
    line.contains("[ALERTA]") && line.contains("CAIDO")
}

fn is_up(line: &str) -> bool {
    line.contains("[OK]") || line.contains("[RECUPERADO]")
}

/// The next line `matches` accepts, with the instant it was read.
async fn next_line(
    lines: &mut UnboundedReceiver<Line>,
    matches: impl Fn(&str) -> bool,
    what: &str,
) -> anyhow::Result<Instant> {
    tokio::time::timeout(START_LIMIT, async {
        while let Some((at, line)) = lines.recv().await {
            if matches(&line) {
                return Ok(at);
            }
        }
        bail!("the monitor's output ended")
    })
    .await
    .with_context(|| format!("no {what} line within {START_LIMIT:?}"))?
}

/// Reads the lines printed so far: whether the monitor's last word was that the target is down
/// (`down` if it said nothing), and how many alerts it printed.
fn read_pending(lines: &mut UnboundedReceiver<Line>, mut down: bool) -> (bool, usize) {
    let mut alerts = 0;
    while let Ok((_, line)) = lines.try_recv() {
        if line.contains("[ALERTA]") {
            alerts += 1;
        }
        if is_down(&line) {
            down = true;
        } else if line.contains("[RECUPERADO]") {
            down = false;
        }
    }
    (down, alerts)
}

/// Awaits `fut` while reading the resident memory of `procs` every `SAMPLE_EVERY`; returns its
/// output and each one's peak (MiB).
async fn peak_while<F: Future>(procs: &[&KillOnDrop], fut: F) -> (F::Output, Vec<f64>) {
    tokio::pin!(fut);
    let mut peaks: Vec<f64> = procs.iter().map(|p| p.rss_mib()).collect();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            out = &mut fut => return (out, peaks),
            _ = tick.tick() => {
                for (p, peak) in procs.iter().zip(&mut peaks) {
                    *peak = peak.max(p.rss_mib());
                }
            }
        }
    }
}

/// Polls `GET path` until it answers 200 (the program gives no other sign of being ready).
pub async fn http_ready(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    while !http::get_ok(addr, path).await {
        anyhow::ensure!(Instant::now() < deadline, "{addr}{path} not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub async fn measure(which: Impl, args: &Args, mp: &MultiProgress) -> anyhow::Result<Vec<Figure>> {
    let name = which.name();
    let server = RedisServer::start_tcp();
    let url = server.url();
    let redis = Redis::from_url(&url)?;
    let client = Client::new(redis.clone(), QUEUE);
    let dir = tempfile::tempdir()?;
    let programs = Programs::new(which, &url, dir.path())?;
    let mut f = Vec::new();

    let pb = phase(mp, format!("{name}: starting the stack"));
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let service = programs.service(port)?;
    http_ready(addr, "/inventario")
        .await
        .with_context(|| format!("service (log: {})", service.log.display()))?;
    let mut events = worker_events(&redis).await?;
    let mut worker = programs.worker()?;
    wait_online(&mut events)
        .await
        .with_context(|| format!("worker (log: {})", worker.log.display()))?;
    let (monitor, mut lines) = programs.monitor()?;
    next_line(&mut lines, is_up, "first good ping")
        .await
        .with_context(|| format!("monitor (log: {})", monitor.log.display()))?;
    pb.set_message(format!("{name}: idle"));
    tokio::time::sleep(IDLE).await; // a measurement of the idle state, not a synchronisation
    pb.finish();
    let idle = [&service, &worker, &monitor].map(|p| p.rss_mib());

    // GET /inventario from `connections` keep-alive clients (the service's memory sampled), then
    // GET /health the same way: the HTTP stack's own ceiling on this machine, for comparison.
    let mut service_peak = 0.0;
    for path in ["/inventario", "/health"] {
        let pb = phase(
            mp,
            format!("{name}: GET {path}, {} connections", args.connections),
        );
        http::load(addr, path, args.connections, args.http_secs / 10).await?; // warm-up
        let (load, peak) = peak_while(
            &[&service],
            http::load(addr, path, args.connections, args.http_secs),
        )
        .await;
        let load = load?;
        pb.finish();
        if path == "/inventario" {
            service_peak = peak[0];
        }
        let label = format!("GET {path}, {} conns", args.connections);
        f.push(Figure::higher(
            format!("{label} (req/s)"),
            load.per_second,
            0,
        ));
        latency_figures(&mut f, &label, load.latencies);
        f.push(Figure::info(
            format!("{label}, failed requests"),
            load.errors as f64,
            0,
        ));
    }

    // A backlog of health tasks for the worker (ours below the health lane, as our producers
    // send business work; the seed's at Celery's default priority, as it sends everything).
    let opts = SendOptions {
        priority: (which == Impl::Rust).then_some(BUSINESS_PRIORITY),
        ..SendOptions::default()
    };
    // In one round trip, so the backlog is whole when the worker starts on it.
    let pb = bar(mp, args.backlog, format!("{name}: backlog fill"));
    client
        .send_many("obtener_estado", (0..args.backlog).map(|_| vec![]), opts)
        .await?;
    pb.set_position(args.backlog as u64);
    pb.finish();
    read_pending(&mut lines, false);
    let pb = phase(mp, format!("{name}: worker drains {} tasks", args.backlog));
    let drained = async {
        while client.broker().queue_len(QUEUE).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    };
    let (drained, peaks) = peak_while(
        &[&worker, &monitor],
        tokio::time::timeout(Duration::from_secs(600), drained),
    )
    .await;
    drained.context("the backlog did not drain in 10 min")??;
    pb.finish();
    let (mut down, false_alarms) = read_pending(&mut lines, false);
    f.push(Figure::lower(
        format!("monitor alarms while {} tasks drain", args.backlog),
        false_alarms as f64,
        0,
    ));

    // Failure detection: SIGKILL at a random instant, then restart and await the recovery.
    let pb = bar(mp, args.kills, format!("{name}: SIGKILL the worker"));
    let mut detections = Vec::new();
    let mut rng = rand::rng();
    for _ in 0..args.kills {
        // A random instant while the monitor says the target is up.
        loop {
            if down {
                next_line(&mut lines, |l| l.contains("[RECUPERADO]"), "recovery").await?;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1300))).await;
            down = read_pending(&mut lines, false).0;
            if !down {
                break;
            }
        }
        let killed = worker.sigkill();
        let seen = next_line(&mut lines, is_down, "CAIDO alert").await?;
        detections.push(seen.saturating_duration_since(killed).as_secs_f64());
        worker = programs.worker()?;
        next_line(&mut lines, |l| l.contains("[RECUPERADO]"), "recovery").await?;
        pb.inc(1);
    }
    pb.finish();
    let mean = detections.iter().sum::<f64>() / detections.len().max(1) as f64;
    let max = detections.iter().copied().fold(f64::NAN, f64::max);
    f.push(Figure::lower(
        "failure detection after SIGKILL, mean (s)",
        mean,
        3,
    ));
    f.push(Figure::lower(
        "failure detection after SIGKILL, max (s)",
        max,
        3,
    ));
    f.push(Figure::info("SIGKILLs", detections.len() as f64, 0));

    let under_load = [service_peak, peaks[0], peaks[1]];
    for (when, values) in [("idle", idle), ("peak under load", under_load)] {
        for (what, mib) in ["inventory service", "worker", "monitor"]
            .iter()
            .zip(values)
        {
            f.push(Figure::lower(
                format!("memory {when}, {what} (MiB)"),
                mib,
                1,
            ));
        }
    }
    drop((service, worker, monitor, server));
    Ok(f)
}
