//! The monitor's start, as `docker compose up` makes it: the monitor-service binary started
//! before its worker says INICIANDO, raises no alarm, and says once that the target answers;
//! started with no worker at all, it says CAIDO, with the usual alert, once the start-up grace
//! has passed. Each test starts its own redis-server and the real binary, and reads its log.

mod common;

use std::time::{Duration, Instant};

use common::Monitor;
use serde_json::Value;
use testkit::demo::spawn_demo_worker;
use testkit::{eventually, RedisServer};

const SERVICE: &str = "InventarioService";

/// `GET /monitor`: its status and body.
async fn ahora(monitor: &Monitor) -> (u16, Value) {
    monitor.json("/monitor").await
}

/// Started three ping timeouts and more before its worker, the monitor says INICIANDO (503,
/// and -1 on the state gauge), logs the failed pings calmly, raises no `[ALERTA]`, and once the
/// worker answers says `[INICIO] ... responde` once (not `[RECUPERADO]`) and OK.
#[tokio::test(flavor = "multi_thread")]
async fn started_before_its_worker_it_raises_no_alarm() {
    // Built before the monitor starts, so that the worker starts within the grace.
    testkit::workspace_binary("demo-worker");
    let redis = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let monitor = Monitor::start(&redis, &[], logs.path()).await;

    let (status, body) = ahora(&monitor).await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["estado"], "INICIANDO", "{body:#}");
    let (_, metrics) = monitor.get("/metrics").await;
    let gauge = format!("monitor_target_state{{target=\"{SERVICE}\"}} -1");
    assert!(metrics.contains(&gauge), "{gauge} not in:\n{metrics}");

    // Pings time out while nothing serves the queue: more than enough to have been CAIDO.
    let (waited, last) = monitor
        .until_json("/monitor", Duration::from_secs(15), |_, body| {
            body["objetivos"][0]["pings"]["timeouts"]
                .as_u64()
                .is_some_and(|n| n >= 4)
        })
        .await;
    assert!(waited, "pings never timed out: {last:#}");
    assert_eq!(last["estado"], "INICIANDO", "{last:#}");

    let _worker = spawn_demo_worker(&redis.url(), "arranque@test", &[], logs.path());
    let (ok, last) = monitor
        .until_json("/monitor", Duration::from_secs(30), |status, body| {
            status == 200 && body["estado"] == "OK"
        })
        .await;
    assert!(ok, "never OK: {last:#}");

    let inicio = monitor.log_lines("[INICIO]");
    assert_eq!(inicio.len(), 1, "{}", monitor.process.log_tail(30));
    assert!(
        inicio[0].contains(&format!("[INICIO] {SERVICE} responde: OK tras ")),
        "{}",
        inicio[0]
    );
    assert!(
        monitor.log_lines("[INICIANDO]").len() >= 4,
        "the failed pings are logged: {}",
        monitor.process.log_tail(20)
    );
    for quiet in ["[ALERTA]", "[RECUPERADO]", "[FALLA]"] {
        let lines = monitor.log_lines(quiet);
        assert!(lines.is_empty(), "{quiet} while starting: {lines:#?}");
    }
}

/// With no worker at all and a 2 s start-up grace, the target is INICIANDO, then CAIDO with
/// the usual `[ALERTA]` once the grace has passed, not before.
#[tokio::test(flavor = "multi_thread")]
async fn no_worker_is_caido_once_the_grace_has_passed() {
    let redis = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(2);
    let spawned = Instant::now();
    let monitor = Monitor::start(&redis, &[("STARTUP_GRACE_MS", "2000")], logs.path()).await;
    let (status, body) = ahora(&monitor).await;
    assert_eq!(status, 503, "{body:#}");
    if spawned.elapsed() < grace {
        assert_eq!(body["estado"], "INICIANDO", "{body:#}");
    }
    let alerted = eventually(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || async { !monitor.log_lines("[ALERTA]").is_empty() },
    )
    .await;
    let seen = spawned.elapsed();
    assert!(alerted, "no alert: {}", monitor.process.log_tail(20));
    assert!(
        seen >= grace,
        "alert {seen:?} after the start, within the grace"
    );
    let alert = &monitor.log_lines("[ALERTA]")[0];
    assert!(
        alert.contains(&format!("[ALERTA] {SERVICE} CAIDO (detectado en ")),
        "{alert}"
    );
    assert!(alert.contains("sin respuesta desde el arranque"), "{alert}");
    let (status, body) = ahora(&monitor).await;
    assert_eq!((status, &body["estado"]), (503, &Value::from("CAIDO")));
    // After the grace, failed pings are failures again.
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { !monitor.log_lines("[FALLA]").is_empty() }
        )
        .await,
        "{}",
        monitor.process.log_tail(10)
    );
}
