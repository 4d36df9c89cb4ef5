//! The monitor against a private Redis and real workers: our worker as a process (killed with
//! SIGKILL, restarted), in-process workers where a custom handler is needed (a slow health
//! task), and a Python Celery worker. Each test starts its own redis-server and monitor.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{answering, oneshot_get, oneshot_json, start_in_process};
use monitor_service::{Estado, StateChange};
use serde_json::{json, Value};
use shared::shutdown::CancellationToken;
use shared::{Redis, Registry, SendOptions, Task, TaskResult, Worker, WorkerConfig};
use tempfile::TempDir;
use testkit::celery::{python, repository};
use testkit::demo::spawn_demo_worker;
use testkit::{eventually, Process, RedisServer};
use tokio::sync::broadcast;

const SERVICE: &str = "InventarioService";
const ANSWER: &str = "InventarioService responde correctamente - OK";

/// A demo-worker process (it answers `obtener_estado` as ours does, and has `sleep`), logging
/// into `logs`.
fn worker_process(server: &RedisServer, hostname: &str, logs: &TempDir) -> Process {
    let env = [
        ("CONCURRENCY", "8"),
        ("LEASE_TTL_SECS", "2"),
        ("RUST_LOG", "warn"),
    ];
    spawn_demo_worker(&server.url(), hostname, &env, logs.path())
}

/// An in-process worker on `queue` with `registry`.
fn start_worker(
    server: &RedisServer,
    queue: &str,
    hostname: &str,
    registry: Registry,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<shared::Result<()>>,
) {
    let redis = Redis::from_url(&server.url()).unwrap();
    let config = WorkerConfig {
        hostname: hostname.into(),
        queues: vec![queue.into()],
        heartbeat_interval: Duration::from_millis(500),
        idle_block: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let token = CancellationToken::new();
    let handle = tokio::spawn(Worker::new(redis, registry, config).run(token.clone()));
    (token, handle)
}

/// The next change of `servicio` to `to`, within `limit`.
async fn next_change(
    rx: &mut broadcast::Receiver<StateChange>,
    servicio: &str,
    to: Estado,
    limit: Duration,
) -> StateChange {
    tokio::time::timeout(limit, async {
        loop {
            let change = rx.recv().await.expect("change stream");
            if change.servicio == servicio && change.a == to {
                return change;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{servicio} did not become {to} within {limit:?}"))
}

/// With the defaults (250 ms / 750 ms), a SIGKILLed worker is CAIDO within 1 s, every time
/// (three kills), and each restart is a [RECUPERADO] back to OK.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_is_caido_within_one_second_and_restart_recovers() {
    let server = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let mut worker = worker_process(&server, "kill@test", &logs);
    let (monitor, token) = start_in_process(&server, &[]);
    assert!(
        answering(&monitor, Duration::from_secs(20)).await,
        "worker never answered"
    );
    let mut times = Vec::new();
    for round in 1..=3 {
        let mut changes = monitor.subscribe();
        let killed = Instant::now();
        worker.sigkill();
        let change =
            next_change(&mut changes, SERVICE, Estado::Caido, Duration::from_secs(5)).await;
        let elapsed = killed.elapsed();
        println!(
            "round {round}: CAIDO {:.3} s after SIGKILL (detector: {:.3} s from the first unanswered ping): {}",
            elapsed.as_secs_f64(),
            change.detectado_en_s,
            change.linea
        );
        assert!(change
            .linea
            .starts_with("[ALERTA] InventarioService CAIDO (detectado en "));
        assert!(
            elapsed < Duration::from_secs(1),
            "detection took {elapsed:?}"
        );
        times.push(elapsed);

        let restarted = Instant::now();
        worker = worker_process(&server, "kill@test", &logs);
        let back = next_change(&mut changes, SERVICE, Estado::Ok, Duration::from_secs(20)).await;
        println!(
            "round {round}: {} ({:.3} s after the restart)",
            back.linea,
            restarted.elapsed().as_secs_f64()
        );
        assert_eq!(back.de, Estado::Caido);
        assert!(
            back.linea
                .starts_with("[RECUPERADO] InventarioService OK tras "),
            "{}",
            back.linea
        );
        assert_eq!(monitor.state(SERVICE), Some(Estado::Ok));
    }
    println!("detection times after SIGKILL: {times:?}");
    token.cancel();
    monitor.stopped().await;
}

async fn slow_estado(_task: Task) -> TaskResult {
    tokio::time::sleep(Duration::from_millis(400)).await;
    Ok(json!({"estado": "OK", "mensaje": "lento pero vivo"}))
}

/// A worker whose health task takes 400 ms (threshold 300 ms) is DEGRADADO, not CAIDO.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_worker_is_degraded_not_down() {
    let server = RedisServer::start();
    let mut registry = Registry::new();
    registry.register("obtener_estado", slow_estado);
    let (stop, _w) = start_worker(&server, "lento", "slow@test", registry);
    let (monitor, token) = start_in_process(&server, &["--queue", "lento"]);
    let mut changes = monitor.subscribe();
    // First it starts answering (OK), then its latencies make it DEGRADADO.
    let change = next_change(
        &mut changes,
        SERVICE,
        Estado::Degradado,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(change.de, Estado::Ok, "{change:?}");
    assert!(change
        .linea
        .starts_with("[ALERTA] InventarioService DEGRADADO"));
    // It keeps answering, slowly: no further change (in particular, no CAIDO) for 2 s.
    assert!(tokio::time::timeout(Duration::from_secs(2), changes.recv())
        .await
        .is_err());
    let summary = &monitor.summaries()[0];
    let last = summary.ultimo_ping_del_ciclo.as_ref().unwrap();
    assert!(last.is_ok() && last.latencia_ms >= 400.0, "{last:?}");
    assert_eq!(last.respuesta(), Some("lento pero vivo"));
    token.cancel();
    stop.cancel();
}

/// 2000 business tasks queued at priority 6 keep the worker busy; pings (priority 0) still
/// answer in time: no change of state at all, while the backlog is still there.
#[tokio::test(flavor = "multi_thread")]
async fn no_false_alarm_under_a_backlog() {
    let server = RedisServer::start();
    let logs = tempfile::tempdir().unwrap();
    let _worker = worker_process(&server, "busy@test", &logs);
    let redis = Redis::from_url(&server.url()).unwrap();
    let client = shared::Client::new(redis.clone(), "inventario");
    let backlog = SendOptions {
        priority: Some(shared::worker::BUSINESS_PRIORITY),
        ..SendOptions::queue("inventario")
    };
    for _ in 0..2000 {
        client
            .send_task(
                "sleep",
                vec![json!(50)],
                Default::default(),
                backlog.clone(),
            )
            .await
            .unwrap();
    }
    let (monitor, token) = start_in_process(&server, &[]);
    assert!(answering(&monitor, Duration::from_secs(20)).await);
    // From the first answer on (the start, INICIANDO to OK, is not what is judged here).
    let mut changes = monitor.subscribe();
    let before = monitor.summaries()[0].pings["ok"].as_u64().unwrap();
    // 3 s of pings against the busy worker: no change of state.
    if let Ok(change) = tokio::time::timeout(Duration::from_secs(3), changes.recv()).await {
        panic!("false alarm under backlog: {change:?}");
    }
    let summary = &monitor.summaries()[0];
    assert_eq!(summary.estado, Estado::Ok);
    let after = summary.pings["ok"].as_u64().unwrap();
    assert!(
        after >= before + 8,
        "only {} pings answered in 3 s",
        after - before
    );
    assert_eq!(summary.pings["timeouts"], 0);
    let pending: u64 = redis
        .run(|mut c| async move {
            redis::cmd("LLEN")
                .arg(shared::keys::queue_list(
                    "inventario",
                    shared::worker::BUSINESS_PRIORITY,
                ))
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
    assert!(pending > 0, "the backlog drained: the test proved nothing");
    println!(
        "backlog still queued at the end: {pending}; pings answered: {}",
        after - before
    );
    token.cancel();
}

/// Two targets, one served and one not: each has its own state (the one never served is CAIDO
/// once a short start-up grace has passed); /monitor shows both and answers 503 because one did
/// not answer.
#[tokio::test(flavor = "multi_thread")]
async fn several_targets_each_with_its_own_state() {
    let server = RedisServer::start();
    let (stop, _w) = start_worker(&server, "a", "a@test", demo_worker::registry());
    let (monitor, token) = start_in_process(
        &server,
        &[
            "--targets",
            "Alfa:a:obtener_estado,Beta:b:obtener_estado",
            "--startup-grace-ms",
            "1000",
        ],
    );
    let mut changes = monitor.subscribe();
    next_change(&mut changes, "Beta", Estado::Caido, Duration::from_secs(5)).await;
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    assert_eq!(monitor.state("Alfa"), Some(Estado::Ok));
    assert_eq!(monitor.state("Beta"), Some(Estado::Caido));
    let (status, body) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["estado"], "CAIDO");
    assert_eq!(body["objetivos"][0]["servicio"], "Alfa");
    assert_eq!(body["objetivos"][0]["estado"], "OK");
    assert_eq!(body["objetivos"][0]["ping"]["resultado"], "ok");
    assert_eq!(body["objetivos"][1]["estado"], "CAIDO");
    assert_eq!(body["objetivos"][1]["ping"]["resultado"], "timeout");
    assert_eq!(body["respuesta"], ANSWER);
    token.cancel();
    stop.cancel();
}

/// With a long ping timeout the silence rule cannot fire for 5 s; a graceful stop (which sends
/// worker-offline) still makes the target CAIDO at once: the heartbeat signal.
#[tokio::test(flavor = "multi_thread")]
async fn worker_offline_is_a_second_signal() {
    let server = RedisServer::start();
    let (stop, worker) = start_worker(&server, "inventario", "hb@test", demo_worker::registry());
    let (monitor, token) = start_in_process(&server, &["--ping-timeout-ms", "5000"]);
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async {
                monitor
                    .workers()
                    .iter()
                    .any(|w| w.hostname == "hb@test" && w.alive)
            }
        )
        .await,
        "the worker's heartbeats are listed"
    );
    assert_eq!(monitor.summaries()[0].workers, ["hb@test"]);
    let mut changes = monitor.subscribe();
    let stopped = Instant::now();
    stop.cancel();
    worker.await.unwrap().unwrap();
    let change = next_change(&mut changes, SERVICE, Estado::Caido, Duration::from_secs(3)).await;
    assert!(change.motivo.contains("heartbeat"), "{change:?}");
    assert!(stopped.elapsed() < Duration::from_secs(3));
    let hb = monitor
        .workers()
        .into_iter()
        .find(|w| w.hostname == "hb@test")
        .unwrap();
    assert!(!hb.alive);
    token.cancel();
}

/// A worker that stops is listed offline, then, WORKER_FORGET_AFTER_MS after its last event,
/// forgotten: gone from /monitor's workers (and its target's), and from the per-worker metrics.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_gone_for_long_is_forgotten() {
    const HOST: &str = "olvido@test";
    let server = RedisServer::start();
    let (stop, worker) = start_worker(&server, "inventario", HOST, demo_worker::registry());
    let (monitor, token) = start_in_process(
        &server,
        &[
            "--worker-forget-after-ms",
            "2000",
            "--control-ping-interval-ms",
            "200",
        ],
    );
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    let series = format!("monitor_worker_control_answered{{hostname=\"{HOST}\"}}");
    let metrics =
        || async { String::from_utf8(oneshot_get(&monitor, "/metrics").await.1).unwrap() };
    let listed = |body: &Value| {
        body["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["hostname"] == HOST)
            .cloned()
    };
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async { metrics().await.contains(&series) }
        )
        .await,
        "the worker's control series appears"
    );
    assert_eq!(monitor.summaries()[0].workers, [HOST]);

    let stopped = Instant::now();
    stop.cancel();
    worker.await.unwrap().unwrap();
    let (_, body) = oneshot_json(&monitor, "/monitor").await;
    let row = listed(&body).expect("still listed right after it stopped");
    assert_eq!(row["alive"], false, "{row:#}");

    let forgotten = eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (_, body) = oneshot_json(&monitor, "/monitor").await;
            listed(&body).is_none()
                && body["objetivos"][0]["workers"] == json!([])
                && !metrics().await.contains(&series)
        },
    )
    .await;
    let after = stopped.elapsed();
    assert!(
        forgotten,
        "still listed: {}",
        oneshot_json(&monitor, "/monitor").await.1
    );
    assert!(
        after >= Duration::from_millis(1900),
        "forgotten {after:?} after it stopped, before WORKER_FORGET_AFTER_MS"
    );
    assert!(!monitor.workers().iter().any(|w| w.hostname == HOST));
    token.cancel();
}

/// A Python Celery worker (the seed's: `obtener_estado` returns a bare string) as the target:
/// pings are answered with its string, and its heartbeats are listed.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_celery_worker_as_target() {
    let server = RedisServer::start_tcp();
    let (monitor, token) = start_in_process(&server, &[]);
    let _py = Process::spawn(
        "celery worker",
        Command::new(python())
            .args([
                "-m",
                "celery",
                "-A",
                "celery_app",
                "worker",
                "-Q",
                "inventario",
            ])
            .args(["-c", "2", "-n", "py@monitor", "--loglevel=WARNING"])
            .current_dir(repository().join("tests/python"))
            .env("CELERY_URL", server.url())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::null()),
    );
    assert!(
        answering(&monitor, Duration::from_secs(30)).await,
        "Python worker never answered"
    );
    let (status, body) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["respuesta"], ANSWER);
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async {
                monitor
                    .workers()
                    .iter()
                    .any(|w| w.hostname == "py@monitor" && w.alive && w.sw_ident == "py-celery")
            }
        )
        .await,
        "the Python worker's heartbeats are listed: {:?}",
        monitor.workers()
    );
    token.cancel();
}

async fn pubsub_clients(redis: &Redis) -> usize {
    let list: String = redis
        .run(|mut c| async move {
            redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
    list.lines().filter(|l| !l.trim().is_empty()).count()
}

/// 1000 concurrent GET /monitor: every one answered with a live echo (a ping sent after the
/// request came), requests that come together share pings (the worker is not sent one task
/// per request), and the waits ride the monitor's one result connection (pub/sub connections
/// do not grow with the requests).
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_monitor_requests_share_one_pubsub_connection() {
    let server = RedisServer::start();
    let (stop, _w) = start_worker(&server, "inventario", "load@test", demo_worker::registry());
    let redis = Redis::from_url(&server.url()).unwrap();
    // The worker's own subscription (remote control) is up once its pidbox member is written;
    // counted apart, so what is asserted below is the monitor's.
    let member = shared::keys::pidbox_member("load@test");
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || async { server.cli(&["SISMEMBER", shared::keys::PIDBOX_BINDING, &member]) == "1" }
        )
        .await,
        "the worker never listened for remote control"
    );
    let workers = pubsub_clients(&redis).await;
    // The point is concurrency, not speed: a generous timeout for a debug build under load.
    let (monitor, token) = start_in_process(&server, &["--ping-timeout-ms", "15000"]);
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    assert!(monitor.listener().ready(Duration::from_secs(5)).await);
    let baseline = pubsub_clients(&redis).await;
    // The monitor's: the result waiter and the event listener (control pings use none).
    assert_eq!(
        baseline - workers,
        2,
        "the monitor's pub/sub connections before the load"
    );

    let done = CancellationToken::new();
    let sampler = tokio::spawn({
        let (redis, done) = (redis.clone(), done.clone());
        async move {
            let mut most = 0;
            while !done.is_cancelled() {
                most = most.max(pubsub_clients(&redis).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            most
        }
    });
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let monitor = monitor.clone();
        requests.spawn(async move {
            // Whole milliseconds, as `ultimo_ping` is written.
            let asked = chrono::Utc::now().timestamp_millis();
            (asked, oneshot_json(&monitor, "/monitor").await)
        });
    }
    let mut answered = 0;
    let mut pings = std::collections::HashSet::new();
    while let Some(r) = requests.join_next().await {
        let (asked, (status, body)) = r.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["respuesta"], ANSWER);
        assert!(body["latencia_ms"].as_f64().unwrap() > 0.0);
        let sent = chrono::DateTime::parse_from_rfc3339(body["ultimo_ping"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(sent >= asked, "a live ping, sent after the request: {body}");
        pings.insert(body["objetivos"][0]["ping"]["task_id"].to_string());
        answered += 1;
    }
    done.cancel();
    let most = sampler.await.unwrap();
    assert_eq!(answered, 1000);
    println!(
        "1000 concurrent GET /monitor answered by {} pings",
        pings.len()
    );
    assert!(
        pings.len() < 500,
        "requests that come together share pings: {} pings",
        pings.len()
    );
    assert_eq!(most, baseline, "pub/sub connections during the load");
    token.cancel();
    stop.cancel();
}

/// The history in memory (/monitor/historial), in the Redis stream and in HISTORY_FILE; the
/// metrics; /health; a bad query is a JSON 400.
#[tokio::test(flavor = "multi_thread")]
async fn history_metrics_and_health() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("historial.jsonl");
    let (stop, _w) = start_worker(&server, "inventario", "hist@test", demo_worker::registry());
    let (monitor, token) = start_in_process(
        &server,
        &[
            "--ping-interval-ms",
            "50",
            "--history-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    let redis = Redis::from_url(&server.url()).unwrap();
    let stream_len = || async {
        redis
            .run(|mut c| async move {
                redis::cmd("XLEN")
                    .arg("monitor:historial")
                    .query_async::<u64>(&mut c)
                    .await
            })
            .await
            .unwrap()
    };
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { stream_len().await >= 5 }
        )
        .await
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() >= 5) }
        )
        .await
    );
    let first_line: Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first_line["tipo"], "ping");
    assert_eq!(first_line["servicio"], SERVICE);

    let (status, body) = oneshot_json(&monitor, "/monitor/historial?limite=3").await;
    assert_eq!(status, StatusCode::OK);
    let pings = body["pings"].as_array().unwrap();
    assert_eq!(pings.len(), 3);
    assert_eq!(pings[0]["tipo"], "ping");
    assert_eq!(pings[0]["resultado"], "ok");
    assert_eq!(pings[0]["respuesta"], ANSWER);
    let (status, body) = oneshot_json(&monitor, "/monitor/historial?limite=muchos").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "consulta_invalida");
    assert_eq!(
        body["detalle"],
        "consulta inválida: limite: no es un número"
    );

    let (status, body) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "estado",
        "latencia_ms",
        "respuesta",
        "disponibilidad",
        "ultimo_ping",
    ] {
        assert!(!body[field].is_null(), "{field} missing: {body}");
    }
    assert_eq!(body["estado"], "OK");
    assert!(chrono::DateTime::parse_from_rfc3339(body["ultimo_ping"].as_str().unwrap()).is_ok());

    let (status, text) = oneshot_get(&monitor, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    for needle in [
        "monitor_ping_latency_seconds_bucket{target=\"InventarioService\"",
        "monitor_pings_sent_total{target=\"InventarioService\"}",
        "monitor_pings_ok_total{target=\"InventarioService\"}",
        "monitor_pings_timeout_total{target=\"InventarioService\"} 0",
        "monitor_target_state{target=\"InventarioService\"} 0",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    let (status, body) = oneshot_json(&monitor, "/health").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    token.cancel();
    monitor.stopped().await;
    stop.cancel();
}

/// Redis itself goes away: the monitor says CAIDO, keeps running, and is OK again by itself
/// when Redis is back (its result connection and the worker reconnect).
#[tokio::test(flavor = "multi_thread")]
async fn redis_restart_is_caido_then_ok() {
    let mut server = RedisServer::start();
    let (stop, _w) = start_worker(&server, "inventario", "rr@test", demo_worker::registry());
    let (monitor, token) = start_in_process(&server, &[]);
    assert!(answering(&monitor, Duration::from_secs(10)).await);
    let mut changes = monitor.subscribe();
    server.kill();
    next_change(&mut changes, SERVICE, Estado::Caido, Duration::from_secs(5)).await;
    let (status, _) = oneshot_json(&monitor, "/monitor").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    server.restart();
    let back = next_change(&mut changes, SERVICE, Estado::Ok, Duration::from_secs(20)).await;
    assert!(back.linea.starts_with("[RECUPERADO]"), "{}", back.linea);
    token.cancel();
    stop.cancel();
}
