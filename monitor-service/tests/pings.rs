//! What the monitor's pings leave in Redis, and what they rely on, against a private Redis and
//! real workers: results are deleted once read (the loop's and `GET /monitor`'s), a ping that
//! timed out is taken back off its queue or, if a worker had it, its late result is deleted;
//! and a worker whose clock runs ahead of the monitor's still answers.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{answering, oneshot_json, start_in_process};
use monitor_service::Monitor;
use serde_json::json;
use shared::shutdown::CancellationToken;
use shared::{Redis, Registry, Task, TaskResult, Worker, WorkerConfig};
use testkit::demo::spawn_demo_worker;
use testkit::queue::{announced_successes, wait_announced};
use testkit::{eventually, Process, RedisServer};

/// At most this many results may exist at any moment: those stored and not yet read.
const FEW: usize = 5;

fn demo_worker(server: &RedisServer, logs: &tempfile::TempDir, env: &[(&str, &str)]) -> Process {
    let mut all = vec![
        ("CONCURRENCY", "4"),
        ("LEASE_TTL_SECS", "2"),
        ("RUST_LOG", "info"),
    ];
    all.extend_from_slice(env);
    spawn_demo_worker(&server.url(), "pings@test", &all, logs.path())
}

/// Result keys in Redis now (SCAN, as an operator would count them).
fn result_keys(server: &RedisServer) -> usize {
    server
        .cli(&["--scan", "--pattern", "celery-task-meta-*"])
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Messages waiting on the default queue's plain list (where pings go).
fn queued(server: &RedisServer) -> usize {
    server.cli(&["LLEN", "inventario"]).parse().unwrap()
}

fn answered(monitor: &Monitor) -> u64 {
    monitor.summaries()[0].pings["ok"].as_u64().unwrap()
}

fn timeouts(monitor: &Monitor) -> u64 {
    monitor.summaries()[0].pings["timeouts"].as_u64().unwrap()
}

/// `GET /monitor` over and over until `stop`, as a dashboard or a load balancer would: its
/// live pings must leave nothing either. Returns how many were answered.
fn poll_monitor(monitor: &Monitor, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    let monitor = monitor.clone();
    tokio::spawn(async move {
        let mut ok = 0;
        while !stop.is_cancelled() {
            if oneshot_json(&monitor, "/monitor").await.0 == StatusCode::OK {
                ok += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ok
    })
}

/// Samples `check` every 50 ms for `span`, failing on the first sample that breaks it.
async fn holds_for(span: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        if let Err(e) = check() {
            panic!("{e}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hundreds of pings from the loop and from `GET /monitor`, through a SIGKILL of the worker
/// (pings time out while it is gone) and its restart: the result keys never pile up, and while
/// the worker is gone its queue holds only the pings still within their timeout.
#[tokio::test(flavor = "multi_thread")]
async fn results_and_pings_stay_bounded_through_an_outage() {
    let server = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let mut worker = demo_worker(&server, &logs, &[]);
    let (interval_ms, timeout_ms) = (50, 300);
    let (monitor, token) = start_in_process(
        &server,
        &[
            "--ping-interval-ms",
            &interval_ms.to_string(),
            "--ping-timeout-ms",
            &timeout_ms.to_string(),
        ],
    );
    assert!(answering(&monitor, Duration::from_secs(20)).await);
    let stop_polling = CancellationToken::new();
    let polling = poll_monitor(&monitor, stop_polling.clone());
    let bounded = || {
        let keys = result_keys(&server);
        (keys <= FEW)
            .then_some(())
            .ok_or(format!("{keys} result keys in Redis"))
    };

    // Answering: every result read is deleted.
    let first = answered(&monitor);
    holds_for(Duration::from_secs(3), bounded).await;
    assert!(answered(&monitor) >= first + 30, "the loop kept pinging");

    // Gone: pings time out, and each is taken back off the queue.
    worker.sigkill();
    let lost = timeouts(&monitor);
    // Pings sent within the last timeout may wait, and one or two more on their way out.
    let within = (timeout_ms / interval_ms) as usize + 3;
    holds_for(Duration::from_secs(3), || {
        bounded()?;
        let waiting = queued(&server);
        (waiting <= within)
            .then_some(())
            .ok_or(format!("{waiting} stale pings queued (at most {within})"))
    })
    .await;
    assert!(timeouts(&monitor) >= lost + 30, "the pings timed out");

    // Back: whatever the killed worker held comes back and runs; its result is deleted too.
    worker = demo_worker(&server, &logs, &[]);
    assert!(answering(&monitor, Duration::from_secs(20)).await);
    holds_for(Duration::from_secs(2), bounded).await;
    stop_polling.cancel();
    let polled = polling.await.unwrap();
    assert!(polled >= 20, "GET /monitor answered {polled} times");
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { queued(&server) == 0 }
        )
        .await,
        "stale pings left queued: {}",
        queued(&server)
    );
    println!(
        "{} pings answered, {} timed out, {polled} GET /monitor; result keys at the end: {}",
        answered(&monitor),
        timeouts(&monitor),
        result_keys(&server)
    );
    token.cancel();
    monitor.stopped().await;
    drop(worker);
}

async fn slow_estado(_task: Task) -> TaskResult {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(json!({"estado": "OK", "mensaje": "lento"}))
}

/// A worker slower than the timeout takes every ping and answers each too late: the monitor
/// counts timeouts, and deletes every late result when it comes.
#[tokio::test(flavor = "multi_thread")]
async fn late_results_of_taken_pings_are_deleted() {
    let server = RedisServer::start();
    let redis = Redis::from_url(&server.url()).unwrap();
    let mut late = announced_successes(&redis).await;
    let mut registry = Registry::new();
    registry.register("obtener_estado", slow_estado);
    let config = WorkerConfig {
        hostname: "slow@test".into(),
        queues: vec!["inventario".into()],
        concurrency: 16,
        heartbeat_interval: Duration::from_millis(500),
        idle_block: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let stop = CancellationToken::new();
    let _worker = tokio::spawn(Worker::new(redis.clone(), registry, config).run(stop.clone()));
    let (monitor, token) = start_in_process(
        &server,
        &["--ping-interval-ms", "100", "--ping-timeout-ms", "150"],
    );
    assert!(
        wait_announced(&mut late, 30, Duration::from_secs(20)).await,
        "the worker answered 30 pings, late"
    );
    holds_for(Duration::from_secs(2), || {
        let keys = result_keys(&server);
        (keys <= FEW)
            .then_some(())
            .ok_or(format!("{keys} late results left in Redis"))
    })
    .await;
    assert!(timeouts(&monitor) >= 30, "every ping timed out");
    assert_eq!(answered(&monitor), 0, "none in time");
    token.cancel();
    monitor.stopped().await;
    stop.cancel();
}

/// libfaketime, to run a program with its wall clock moved (`LIBFAKETIME` overrides the path).
fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIBFAKETIME") {
        return Some(path.into());
    }
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists())
}

/// A worker whose clock runs 30 s ahead of the monitor's (libfaketime, monotonic time left
/// alone) answers every ping: the monitor judges staleness on its own clock, not by an
/// `expires` the worker reads on its.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_clock_runs_ahead_still_answers() {
    let Some(lib) = libfaketime() else {
        let message = "needs libfaketime (Debian: apt-get install faketime)";
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!("SKIPPED: {message}; set CI=1 to make this a failure");
        return;
    };
    let server = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let lib = lib.to_str().expect("a UTF-8 path").to_owned();
    let worker = demo_worker(
        &server,
        &logs,
        &[
            ("LD_PRELOAD", &lib),
            ("FAKETIME", "+30s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("FAKETIME_NO_CACHE", "1"),
        ],
    );
    let (monitor, token) = start_in_process(&server, &[]);
    let ok = answering(&monitor, Duration::from_secs(20)).await;
    // The skew took: the worker's log is stamped 30 s into our future.
    let ahead = worker
        .json_log()
        .iter()
        .filter_map(|l| l["timestamp"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.signed_duration_since(chrono::Utc::now()).num_seconds())
        .max();
    assert!(
        ahead.is_some_and(|s| s >= 20),
        "the worker's clock is not ahead: {ahead:?} s; {}",
        worker.log_tail(5)
    );
    assert!(
        ok,
        "the skewed worker never answered: {:#}",
        serde_json::to_value(monitor.summaries()).unwrap()
    );
    let (status, body) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["estado"], "OK");
    assert_eq!(
        monitor.summaries()[0].pings["fallidos"],
        0,
        "no ping was discarded as expired"
    );
    token.cancel();
    monitor.stopped().await;
}
