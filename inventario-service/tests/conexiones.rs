//! The service against clients that misbehave at the connection level, and what they leave in
//! its log and metrics: slow and silent connections are closed by the header timeout while
//! ordinary requests keep being answered, and the server's metrics count them; a 60 kB URI makes a short log line; an invented
//! method makes no new metric series; a password in DATABASE_URL never reaches the log.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::TestApp;
use testkit::slow_http::{self, Slow};
use testkit::{eventually, RedisServer};

const HEADER_TIMEOUT_MS: u64 = 500;
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn slow_connections_are_closed_and_the_log_stays_short() {
    slow_http::raise_open_files(4096);
    let redis = RedisServer::start_tcp();
    let dir = tempfile::tempdir().unwrap();
    let (servicio, base) = common::servicio(
        &redis,
        dir.path(),
        &[
            ("HTTP_HEADER_TIMEOUT_MS", HEADER_TIMEOUT_MS.to_string()),
            ("RUST_LOG", "info".into()),
        ],
    )
    .await;
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let idle_rss = servicio.rss_kib();

    let mut siege = tokio::spawn(slow_http::siege(
        addr,
        &[
            (Slow::Trickle, 100),
            (Slow::Silent, 100),
            (Slow::KeptAlive, 100),
        ],
        "/inventario",
        "/health",
        Duration::from_secs(15),
    ));
    // Peak memory while the slow clients hold their connections.
    let mut peak_rss = idle_rss;
    let siege = loop {
        tokio::select! {
            done = &mut siege => break done.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                peak_rss = peak_rss.max(servicio.rss_kib());
            }
        }
    };

    assert!(
        siege.not_closed().is_empty(),
        "{} slow clients kept open, e.g. {:?}\n{}",
        siege.not_closed().len(),
        siege.not_closed().first(),
        servicio.log_tail(20)
    );
    let header = Duration::from_millis(HEADER_TIMEOUT_MS);
    for kind in [Slow::Trickle, Slow::Silent, Slow::KeptAlive] {
        let kept = siege.longest_kept(kind).expect("closed");
        assert!(kept < header + Duration::from_secs(5), "{kind:?}: {kept:?}");
        println!("{kind:?}: kept at most {:.0} ms", kept.as_secs_f64() * 1e3);
    }
    let failed: Vec<_> = siege
        .probes
        .iter()
        .filter_map(|p| p.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "ordinary requests failed: {failed:?}");
    assert!(!siege.probes.is_empty());
    println!(
        "GET /health during 300 slow clients: {}; RSS {} KiB idle, {} KiB at peak",
        siege.latency_summary(),
        idle_rss,
        peak_rss
    );

    // The server's own metrics saw the slow clients it closed: each trickling or silent one,
    // and each kept-alive one that never sent its second request, is a header timeout.
    let answer = reqwest::get(format!("{base}/metrics")).await.unwrap();
    // Every answer names the instance that gave it (behind a balancer, which one served).
    assert_eq!(
        answer
            .headers()
            .get("x-instancia")
            .map(|v| v.to_str().unwrap()),
        Some(shared::hostname().as_str())
    );
    let metrics = answer.text().await.unwrap();
    let closed = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"http_server_connections_closed_total{reason="header_timeout"} "#)
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        closed.is_some_and(|n| n >= 300),
        "header timeouts counted: {closed:?}\n{metrics}"
    );

    // A 60 kB URI: answered, and logged cut short with its length.
    let long = format!("{base}/inventario?relleno={}", "x".repeat(60_000));
    let r = reqwest::get(&long).await.unwrap();
    assert_eq!(r.status(), 200);
    let logged = eventually(LIMIT, Duration::from_millis(20), || async {
        servicio.log().contains("bytes]")
    })
    .await;
    assert!(
        logged,
        "no shortened URI in the log:\n{}",
        servicio.log_tail(5)
    );
    let longest = servicio.log().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2_000, "a log line of {longest} bytes");
    // Access-log latencies resolve microseconds: a quick answer does not read "0 ms".
    let timed = servicio
        .log()
        .lines()
        .any(|l| l.contains("finished processing request") && l.contains(" μs"));
    assert!(
        timed,
        "no access-log latency in microseconds:\n{}",
        servicio.log_tail(5)
    );
}

#[tokio::test]
async fn an_invented_method_makes_no_new_metric_series() {
    let app = TestApp::start().await;
    let foo = Method::from_bytes(b"FOO123").unwrap();
    let r = app.raw(foo, "/inventario", None, Body::empty()).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(!metrics.text.contains("FOO123"), "{}", metrics.text);
    assert!(
        metrics.text.contains(r#"method="otro""#),
        "the request is still counted: {}",
        metrics.text
    );
}

#[tokio::test]
async fn a_password_in_database_url_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut servicio = testkit::Process::program(
        "inventario-service",
        &[
            (
                "DATABASE_URL",
                "postgres://usuario:secreto-de-prueba@127.0.0.1:1/inventario".into(),
            ),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("REDIS_URL", "redis://127.0.0.1:1/0".into()),
            // Nothing listens there: give up at once rather than after the default 30 s.
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "500".into()),
        ],
        &dir.path().join("inventario-service.log"),
    );
    let status = servicio.wait_exit(LIMIT).await.expect("it exits");
    assert!(!status.success(), "{}", servicio.log());
    let log = servicio.log();
    assert!(log.contains("usuario:***@127.0.0.1:1"), "{log}");
    assert!(!log.contains("secreto-de-prueba"), "{log}");
}
