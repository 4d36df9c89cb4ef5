//! The queue sampler, against a private redis-server: what the real monitor-service binary
//! publishes on `/metrics` and `GET /monitor/colas` for a queue filled on every priority list,
//! with unacked, parked and quarantined entries put there by hand; a demo-worker coming,
//! going and being forgotten; Redis going away and coming back. And the library's age of the
//! oldest waiting message, checked against when the test really pushed.

mod common;

use std::time::{Duration, Instant};

use common::{value, Monitor};
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use shared::broker::stats::{QueueClocks, QueueStats};
use shared::protocol::task::NewTask;
use shared::protocol::TaskMessage;
use shared::{Broker, Redis};
use testkit::demo::spawn_demo_worker;
use testkit::RedisServer;

/// The filled queue: not a target's, so no ping is ever queued on it.
const CARGA: &str = "carga";
const WORKER: &str = "colas@test";

/// Messages for `queue`, `n` at each of `priorities`.
fn messages(queue: &str, priority: u8, n: usize) -> Vec<TaskMessage> {
    (0..n)
        .map(|i| {
            TaskMessage::build(
                "demo.sleep",
                vec![json!(i)],
                Map::new(),
                queue,
                "test@colas",
                "reply",
                NewTask {
                    priority: Some(priority),
                    ..NewTask::default()
                },
            )
        })
        .collect()
}

/// `GET /monitor/colas`, whatever its status.
async fn colas(monitor: &Monitor) -> Value {
    monitor.json("/monitor/colas").await.1
}

/// Asks `GET /monitor/colas` until `wanted`, within `limit`; the last answer.
async fn colas_until(monitor: &Monitor, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let (ok, last) = monitor
        .until_json("/monitor/colas", limit, |_, c| wanted(c))
        .await;
    assert!(ok, "GET /monitor/colas never matched: {last:#}");
    last
}

fn cola<'a>(colas: &'a Value, nombre: &str) -> Option<&'a Value> {
    colas["colas"]
        .as_array()?
        .iter()
        .find(|c| c["nombre"] == nombre)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_samples_the_queues_and_the_workers() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::from_url(&server.url()).unwrap();
    let broker = Broker::new(redis.clone());
    // 1 000 waiting, on all four priority lists.
    let per_list = [(0u8, 400), (3, 100), (6, 300), (9, 200)];
    for (priority, n) in per_list {
        broker
            .publish_many(CARGA, &messages(CARGA, priority, n))
            .await
            .unwrap();
    }
    let n: usize = per_list.iter().map(|(_, n)| n).sum();
    // Three delivered and unacknowledged, two parked far ahead, two quarantined and five
    // dropped from the quarantine.
    let mut c = redis.conn().await.unwrap();
    for tag in ["t1", "t2", "t3"] {
        let _: () = c
            .hset("unacked", tag, "[{}, \"\", \"carga\"]")
            .await
            .unwrap();
    }
    let later = chrono::Utc::now().timestamp_millis() + 86_400_000;
    for tag in ["t1", "t2"] {
        let entry = json!([tag, CARGA, "0"]).to_string();
        let _: () = c.zadd("rcelery:parked", entry, later).await.unwrap();
    }
    let _: () = c.lpush("rcelery:quarantine", &["{}", "{}"]).await.unwrap();
    let _: () = c.set("rcelery:quarantine:dropped", 5).await.unwrap();

    let monitor = Monitor::start(
        &server,
        &[
            ("QUEUE_SAMPLE_INTERVAL_MS", "200"),
            ("MONITOR_QUEUES", CARGA),
            ("WORKER_FORGET_AFTER_MS", "3000"),
            ("CONTROL_PING_INTERVAL_MS", "500"),
        ],
        dir.path(),
    )
    .await;
    let limit = Duration::from_secs(10);
    let length = format!("celery_queue_length{{queue_name=\"{CARGA}\"}}");
    monitor
        .until_metric(&length, limit, |v| v == Some(n as f64))
        .await;
    let age = format!("monitor_queue_oldest_age_seconds{{queue_name=\"{CARGA}\"}}");
    let first = monitor.metric(&age).await.unwrap();
    monitor
        .until_metric(&age, limit, |v| v.unwrap_or(0.0) >= first + 0.5)
        .await;
    let metrics = monitor.text("/metrics").await;
    assert_eq!(value(&metrics, "monitor_unacked_messages"), Some(3.0));
    assert_eq!(value(&metrics, "monitor_parked_messages"), Some(2.0));
    assert_eq!(value(&metrics, "monitor_quarantine_length"), Some(2.0));
    assert_eq!(
        value(&metrics, "monitor_quarantine_dropped_total"),
        Some(5.0)
    );
    assert_eq!(value(&metrics, "monitor_queue_sample_stale"), Some(0.0));
    assert!(value(&metrics, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(metrics.contains("process_cpu_seconds_total"));
    // The HTTP server's own counters: this test's requests came on accepted connections.
    assert!(value(&metrics, "http_server_connections_accepted_total").unwrap() >= 1.0);
    assert!(metrics.contains("http_server_requests_timed_out_total{status=\"503\"} 0"));

    // The same figures as JSON; no worker connected.
    let colas = colas(&monitor).await;
    let carga = cola(&colas, CARGA).expect("the queue is listed");
    assert_eq!(carga["pendientes"], n);
    assert!(carga["antiguedad_s"].as_f64().unwrap() >= first + 0.5);
    // Waiting before the monitor started: only the lower bound is known.
    assert!(carga["antiguedad_max_s"].is_null());
    assert_eq!(carga["consumidores"], 0);
    assert_eq!(colas["retenidos"], 3);
    assert_eq!(colas["aparcados"], 2);
    assert_eq!(colas["cuarentena"], 2);
    assert_eq!(colas["cuarentena_descartados"], 5);
    assert_eq!(colas["trabajadores_conectados"], 0);
    assert_eq!(colas["trabajadores"], json!([]));
    assert_eq!(colas["intervalo_ms"], 200);
    assert_eq!(colas["obsoleto"], false);
    assert!(colas["muestreado"].is_string());
    let historial = colas["historial"].as_array().unwrap();
    assert!(historial.len() >= 2, "{historial:?}");
    assert_eq!(historial.last().unwrap()["pendientes"][CARGA], n);
    assert!(historial[0]["t"].as_i64() < historial.last().unwrap()["t"].as_i64());

    // A worker comes: up, with its queue and concurrency from its control answers.
    let mut worker = spawn_demo_worker(
        &server.url(),
        WORKER,
        &[("CONCURRENCY", "4"), ("LEASE_TTL_SECS", "1.5")],
        dir.path(),
    );
    let up = format!("celery_worker_up{{hostname=\"{WORKER}\"}}");
    monitor.until_metric(&up, limit, |v| v == Some(1.0)).await;
    let colas = colas_until(&monitor, limit, |c| {
        cola(c, "inventario").is_some_and(|q| q["consumidores"] == 1 && q["procesos"] == 4)
    })
    .await;
    assert_eq!(colas["trabajadores_conectados"], 1);
    let row = &colas["trabajadores"][0];
    assert_eq!(row["hostname"], WORKER);
    assert_eq!(row["vivo"], true);
    assert_eq!(row["colas"], json!(["inventario"]));
    assert_eq!(row["concurrencia"], 4);
    assert_eq!(row["software"], "rcelery");
    assert!(row["ultimo_latido"].is_string());
    // It answers the monitor's pings: throughput, and latencies in sub-millisecond buckets.
    colas_until(&monitor, limit, |c| {
        c["rendimiento_por_s"].as_f64() > Some(0.0)
    })
    .await;
    let processed = format!("monitor_tasks_processed_total{{hostname=\"{WORKER}\"}}");
    monitor
        .until_metric(&processed, limit, |v| v > Some(0.0))
        .await;
    let metrics = monitor.text("/metrics").await;
    assert!(
        metrics.contains(
            "monitor_ping_latency_seconds_bucket{target=\"InventarioService\",le=\"0.00005\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "celery_worker_tasks_active{{hostname=\"{WORKER}\"}}"
    )));

    // The history can be asked for from a point on: a page polling every second gets the
    // new samples, not the whole hour again; a bad `desde` is the JSON 400.
    let entera = colas_until(&monitor, limit, |c| {
        c["historial"].as_array().is_some_and(|h| h.len() >= 3)
    })
    .await;
    let puntos = entera["historial"].as_array().unwrap();
    let corte = puntos[puntos.len() - 2]["t"].as_i64().unwrap();
    let desde: Value =
        serde_json::from_str(&monitor.text(&format!("/monitor/colas?desde={corte}")).await)
            .unwrap();
    let nuevos = desde["historial"].as_array().unwrap();
    assert!(!nuevos.is_empty(), "{desde:#}");
    assert!(
        nuevos.iter().all(|p| p["t"].as_i64().unwrap() > corte),
        "{desde:#}"
    );
    assert!(
        nuevos.len() < puntos.len(),
        "{} of {} points",
        nuevos.len(),
        puntos.len()
    );
    let r = monitor
        .http
        .get(monitor.url("/monitor/colas?desde=ayer"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "consulta_invalida", "{e}");

    // It stops: down, then forgotten (its series and row go).
    worker.signal(libc::SIGTERM);
    monitor.until_metric(&up, limit, |v| v == Some(0.0)).await;
    monitor.until_metric(&up, limit, |v| v.is_none()).await;
    assert_eq!(monitor.metric(&processed).await, None);
    let colas = colas_until(&monitor, limit, |c| c["trabajadores"] == json!([])).await;
    assert_eq!(colas["trabajadores_conectados"], 0);

    // Redis goes away: the last sample stays, marked stale; it comes back by itself.
    server.kill();
    let colas = colas_until(&monitor, limit, |c| c["obsoleto"] == true).await;
    assert_eq!(cola(&colas, CARGA).unwrap()["pendientes"], n);
    monitor
        .until_metric("monitor_queue_sample_stale", limit, |v| v == Some(1.0))
        .await;
    assert_eq!(monitor.metric(&length).await, Some(n as f64));
    server.restart();
    colas_until(&monitor, Duration::from_secs(20), |c| {
        c["obsoleto"] == false
    })
    .await;
    let log = monitor.process.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("queue sampler") && l.contains("redis unavailable"))
            .count()
            == 1,
        "the outage is logged once: {log}"
    );
}

/// Samples `queue` now.
async fn sample(broker: &Broker, clocks: &mut QueueClocks, queue: &str) -> QueueStats {
    broker
        .queue_stats(clocks, &[queue.to_owned()])
        .await
        .unwrap()
}

fn pause() -> tokio::time::Sleep {
    // Time must pass for an age to grow; nothing is waited for.
    tokio::time::sleep(Duration::from_millis(300))
}

#[tokio::test]
async fn the_oldest_age_is_bounded_by_when_messages_were_really_pushed() {
    let server = RedisServer::start();
    let redis = Redis::from_url(&server.url()).unwrap();
    let broker = Broker::new(redis.clone());
    let q = "edad";
    let mut clocks = QueueClocks::default();
    let s = sample(&broker, &mut clocks, q).await;
    assert_eq!(s.queues[q].waiting, 0);
    assert_eq!(s.queues[q].oldest, None);

    // Three pushed after that sample.
    let a = Instant::now();
    broker.publish_many(q, &messages(q, 0, 3)).await.unwrap();
    let a_done = Instant::now();
    pause().await;
    let s = sample(&broker, &mut clocks, q).await;
    let age = s.queues[q].oldest.unwrap();
    assert!(age.at_least <= a_done.elapsed(), "{age:?}");
    assert!(age.at_most.unwrap() >= a.elapsed(), "{age:?}");

    // Two more, on another priority list, later.
    pause().await;
    let b = Instant::now();
    broker.publish_many(q, &messages(q, 6, 1)).await.unwrap();
    broker.publish_many(q, &messages(q, 0, 2)).await.unwrap();
    let b_done = Instant::now();
    pause().await;
    let s = sample(&broker, &mut clocks, q).await;
    assert_eq!(s.queues[q].waiting, 6);
    let age = s.queues[q].oldest.unwrap();
    // Still the first three's age, within one interval.
    assert!(age.at_least <= a_done.elapsed() && age.at_least >= Duration::from_millis(600));
    assert!(age.at_most.unwrap() >= a.elapsed());

    // The first three are consumed (from the consuming end, as workers do): the oldest is
    // now one of the later ones.
    let mut c = redis.conn().await.unwrap();
    let _: Vec<String> = c.rpop(q, std::num::NonZeroUsize::new(3)).await.unwrap();
    let s = sample(&broker, &mut clocks, q).await;
    assert_eq!(s.queues[q].waiting, 3);
    let age = s.queues[q].oldest.unwrap();
    assert!(
        age.at_least <= b_done.elapsed(),
        "{age:?} vs {:?}",
        b_done.elapsed()
    );
    assert!(age.at_most.unwrap() >= b.elapsed(), "{age:?}");
    assert!(age.at_least < a.elapsed() - Duration::from_millis(500));

    // Everything consumed: no age.
    let _: () = c
        .del(&[q.to_owned(), format!("{q}\x06\x166")])
        .await
        .unwrap();
    let s = sample(&broker, &mut clocks, q).await;
    assert_eq!(s.queues[q].oldest, None);
}

/// The cost of one sample with a million waiting messages (run by hand:
/// `cargo test -p monitor-service --release --test colas -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement: fills a million messages"]
async fn cost_of_a_sample_with_a_million_waiting() {
    let server = RedisServer::start();
    let redis = Redis::from_url(&server.url()).unwrap();
    let broker = Broker::new(redis.clone());
    let q = "millon";
    let batch = messages(q, 0, 10_000);
    for _ in 0..100 {
        broker.publish_many(q, &batch).await.unwrap();
    }
    let mut clocks = QueueClocks::default();
    let s = sample(&broker, &mut clocks, q).await;
    assert_eq!(s.queues[q].waiting, 1_000_000);
    server.cli(&["CONFIG", "RESETSTAT"]);
    let rounds = 200;
    let started = Instant::now();
    for i in 0..rounds {
        // Some traffic between samples, as in a live system: 100 pushed, 100 taken.
        if i % 2 == 1 {
            broker.publish_many(q, &messages(q, 0, 100)).await.unwrap();
            let _: () = redis::cmd("LTRIM")
                .arg(q)
                .arg(0)
                .arg(-101)
                .query_async(&mut redis.conn().await.unwrap())
                .await
                .unwrap();
        }
        let s = sample(&broker, &mut clocks, q).await;
        assert!(s.queues[q].oldest.is_some());
    }
    let elapsed = started.elapsed();
    let stats = server.cli(&["INFO", "commandstats"]);
    let evalsha = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or("")
        .to_owned();
    println!(
        "1M waiting: {rounds} samples (half after 100 pushed and 100 taken) in {elapsed:?}, \
         {:?} per sample seen by the client; server: {evalsha}",
        elapsed / rounds
    );
}
