//! The control-ping loop against a private Redis and real workers: each worker, ours and a
//! Python Celery one, answers `inspect ping` with its own answer and latency; a worker killed
//! stops answering; and a worker whose only slot is held by a long task, while messages wait,
//! answers control and heartbeats but does not consume, and the monitor says so (in
//! `GET /monitor`, `/metrics`, the dashboard's stream and its log, once).

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use common::{oneshot_get, oneshot_json, start_in_process};
use monitor_service::Monitor;
use serde_json::{json, Value};
use shared::WorkerConfig;
use testkit::celery::{repository, wait_for_control, PyWorker};
use testkit::demo::spawn_demo_worker;
use testkit::queue::{config, send_many, Stack};
use testkit::{eventually, RedisServer};

const NO_CONSUMEN: &str = "los workers responden al control pero no consumen la cola";
const NINGUNO: &str = "ningún worker responde";

/// `GET uri` through the in-process monitor's router: status and text body.
async fn text(monitor: &Monitor, uri: &str) -> (StatusCode, String) {
    let (status, body) = oneshot_get(monitor, uri).await;
    (status, String::from_utf8(body).unwrap())
}

/// Polls with `fetch` (a status and a JSON body) until `cond` holds, for at most `limit`;
/// whether it held, and the last body (for the failure message and further checks).
async fn poll<F, Fut>(
    limit: Duration,
    mut fetch: F,
    cond: impl Fn(u16, &Value) -> bool,
) -> (bool, Value)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    let last = RefCell::new(Value::Null);
    let held = eventually(limit, Duration::from_millis(100), || {
        let get = fetch();
        let (last, cond) = (&last, &cond);
        async move {
            let (status, body) = get.await;
            let ok = cond(status, &body);
            *last.borrow_mut() = body;
            ok
        }
    })
    .await;
    (held, last.into_inner())
}

/// The row of `hostname` in a `workers` array (Null if absent).
fn row<'a>(body: &'a Value, hostname: &str) -> &'a Value {
    body["workers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|w| w["hostname"] == hostname))
        .unwrap_or(&Value::Null)
}

/// Answered the last control ping, with `{"ok": "pong"}` and a latency.
fn answers(w: &Value) -> bool {
    w["responde_control"] == true
        && w["latencia_control_ms"].as_f64().is_some_and(|ms| ms > 0.0)
        && w["respuesta_control"] == json!({"ok": "pong"})
}

/// Both kinds of worker answer, each with its own latency; one killed stops answering while
/// the other goes on; with both gone, the failing target's diagnosis is that no worker answers.
#[tokio::test(flavor = "multi_thread")]
async fn each_worker_answers_control_pings_and_a_killed_one_stops() {
    const RUST: &str = "rust@control";
    const PY: &str = "py@control";
    // TCP: the Python worker cannot use the Unix socket URL.
    let stack = Stack::on(RedisServer::start_tcp());
    let logs = tempfile::tempdir().unwrap();
    let mut rust = spawn_demo_worker(&stack.server.url(), RUST, &[], logs.path());
    let py = PyWorker::start(
        &stack,
        &repository().join("tests/python"),
        "celery_app",
        &["-c", "2", "-n", PY],
        &[],
    )
    .await;
    let (monitor, token) = start_in_process(&stack.server, &["--control-ping-interval-ms", "300"]);
    let fetch = || async {
        let (status, body) = oneshot_json(&monitor, "/monitor").await;
        (status.as_u16(), body)
    };

    let (both, last) = poll(Duration::from_secs(30), fetch, |_, body| {
        answers(row(body, RUST))
            && answers(row(body, PY))
            && row(body, RUST)["consume"] == true
            && row(body, PY)["consume"] == true
    })
    .await;
    assert!(both, "both workers answer control pings: {last:#}");
    let (status, body) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    assert_eq!(body["estado"], "OK");
    assert!(body["diagnostico"].is_null(), "nothing fails: {body:#}");
    for (hostname, sw) in [(RUST, "rcelery"), (PY, "py-celery")] {
        let w = row(&body, hostname);
        // Each one's own answer: the row is the heartbeat's, and its control fields are its.
        assert_eq!(w["sw_ident"], sw, "{w:#}");
        assert_eq!(w["alive"], true);
        assert_eq!(
            w["colas"],
            json!(["inventario"]),
            "its active_queues: {w:#}"
        );
        assert!(w["ultimo_control"].as_str().is_some(), "{w:#}");
        assert!(w["ultima_respuesta_control"].as_str().is_some(), "{w:#}");
    }
    let (_, metrics) = text(&monitor, "/metrics").await;
    for hostname in [RUST, PY] {
        for needle in [
            format!("monitor_worker_control_answered{{hostname=\"{hostname}\"}} 1"),
            format!("monitor_worker_control_ping_seconds{{hostname=\"{hostname}\"}} "),
            format!("monitor_worker_consuming{{hostname=\"{hostname}\"}} 1"),
        ] {
            assert!(metrics.contains(&needle), "{needle} not in:\n{metrics}");
        }
    }

    // Killed: no goodbye. It is asked while its heartbeats last, and does not answer.
    rust.sigkill();
    let (stopped, last) = poll(Duration::from_secs(10), fetch, |_, body| {
        let w = row(body, RUST);
        w["responde_control"] == false && w["latencia_control_ms"].is_null()
    })
    .await;
    assert!(stopped, "the killed worker stops answering: {last:#}");
    assert!(answers(row(&last, PY)), "the other still answers: {last:#}");
    let (_, metrics) = text(&monitor, "/metrics").await;
    let rust_answered = format!("monitor_worker_control_answered{{hostname=\"{RUST}\"}} 0");
    assert!(metrics.contains(&rust_answered), "{metrics}");
    let rust_latency = format!("monitor_worker_control_ping_seconds{{hostname=\"{RUST}\"}}");
    assert!(!metrics.contains(&rust_latency), "{metrics}");
    let py_answered = format!("monitor_worker_control_answered{{hostname=\"{PY}\"}} 1");
    assert!(metrics.contains(&py_answered), "{metrics}");

    // Both gone: the task pings fail and no worker answers control either.
    drop(py);
    let (diagnosed, last) = poll(Duration::from_secs(15), fetch, |_, body| {
        body["estado"] == "CAIDO" && body["diagnostico"] == NINGUNO
    })
    .await;
    assert!(diagnosed, "no worker answers: {last:#}");
    assert_eq!(last["objetivos"][0]["diagnostico"], NINGUNO);
    assert_eq!(row(&last, PY)["responde_control"], false, "{last:#}");
    token.cancel();
    monitor.stopped().await;
}

/// An `text/event-stream` read until an event of the dashboard's stream satisfies `wanted`.
async fn stream_until(
    url: &str,
    limit: Duration,
    mut wanted: impl FnMut(&str, &Value) -> bool,
) -> Option<Value> {
    let mut response = reqwest::get(url).await.ok()?;
    let mut buffer = String::new();
    tokio::time::timeout(limit, async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = "";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Ok(value) = serde_json::from_str::<Value>(&data) {
                    if wanted(event, &value) {
                        return Some(value);
                    }
                }
            }
            match response.chunk().await {
                Ok(Some(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// A worker with one slot and no health slot, running a 30 s task while more wait: its
/// heartbeats and control answers go on, but it consumes nothing. The monitor (the real
/// binary) reports it as answering control but not consuming, its diagnosis says so, the
/// dashboard's stream carries it, and the log says it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_answers_control_but_does_not_consume() {
    const STUCK: &str = "stuck@control";
    let stack = Stack::new();
    let worker = stack.worker(WorkerConfig {
        hostname: STUCK.into(),
        concurrency: 1,
        health_slots: 0,
        ..config()
    });
    wait_for_control(&stack, STUCK).await;
    let logs = tempfile::tempdir().unwrap();
    let monitor = common::Monitor::start(
        &stack.server,
        &[("CONTROL_PING_INTERVAL_MS", "200")],
        logs.path(),
    )
    .await;
    let fetch = || monitor.json("/monitor");

    // Idle: it answers both pings, and with nothing waiting it is not called stuck.
    let (idle, last) = poll(Duration::from_secs(20), fetch, |status, body| {
        let w = row(body, STUCK);
        status == 200 && answers(w) && w["consume"] == true
    })
    .await;
    assert!(idle, "the idle worker answers and consumes: {last:#}");

    // Its only slot taken by a 30 s task; then more tasks wait behind it.
    send_many(&stack.client, vec![("sleep", vec![json!(30_000)])]).await;
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async { worker.stats.active.load(Ordering::Relaxed) == 1 }
        )
        .await,
        "the worker never started the long task"
    );
    send_many(&stack.client, vec![("noop", vec![json!(1)]); 5]).await;

    let (stuck, last) = poll(Duration::from_secs(20), fetch, |status, body| {
        status == 503
            && body["estado"] == "CAIDO"
            && body["diagnostico"] == NO_CONSUMEN
            && row(body, STUCK)["consume"] == false
    })
    .await;
    assert!(stuck, "reported as answering but not consuming: {last:#}");
    let w = row(&last, STUCK);
    assert_eq!(w["alive"], true, "its heartbeats go on: {w:#}");
    assert!(answers(w), "it answers control: {w:#}");
    assert!(
        w["mensajes_en_cola"].as_u64().is_some_and(|n| n >= 5),
        "the tasks wait in its queue: {w:#}"
    );
    assert!(
        w["sin_consumir_s"].as_f64().is_some_and(|s| s > 0.0),
        "{w:#}"
    );
    assert_eq!(last["objetivos"][0]["diagnostico"], NO_CONSUMEN);

    let metrics = monitor.text("/metrics").await;
    for needle in [
        format!("monitor_worker_consuming{{hostname=\"{STUCK}\"}} 0"),
        format!("monitor_worker_control_answered{{hostname=\"{STUCK}\"}} 1"),
        format!("monitor_worker_control_ping_seconds{{hostname=\"{STUCK}\"}} "),
    ] {
        assert!(metrics.contains(&needle), "{needle} not in:\n{metrics}");
    }

    // The dashboard's stream carries the row and the diagnosis.
    let seen = stream_until(
        &monitor.url("/monitor/stream"),
        Duration::from_secs(10),
        |event, v| {
            (event == "snapshot" || event == "estado")
                && v["objetivos"][0]["diagnostico"] == NO_CONSUMEN
                && row(v, STUCK)["consume"] == false
                && row(v, STUCK)["responde_control"] == true
        },
    )
    .await;
    assert!(
        seen.is_some(),
        "the dashboard's stream shows the stuck worker"
    );

    // Logged once, beside the state change's own line (unchanged).
    let log = monitor.process.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[DIAGNOSTICO] InventarioService: "))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(NO_CONSUMEN), "{}", lines[0]);
    assert!(lines[0].contains(STUCK), "{}", lines[0]);
    assert!(
        log.contains("[ALERTA] InventarioService CAIDO (detectado en "),
        "{log}"
    );
    drop(monitor);
    worker.token.cancel();
    worker.handle.abort();
}
