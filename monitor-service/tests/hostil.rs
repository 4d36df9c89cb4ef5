//! Hostile HTTP input to the monitor, generated with proptest: every route (`/monitor`,
//! `/monitor/historial`, `/health`, `/metrics`, the dashboard's) and paths it nearly serves,
//! with random and malformed query strings (`limite` out of range, not a number, repeated,
//! percent-encoded), unusual methods and content types, and random or broken bodies, over a
//! real socket to a real `monitor-service` process whose ping target is a real
//! `inventario-worker` process, both on a private Redis.
//!
//! It proves that no request, however hostile, gets a 5xx (but the documented 503 of a live
//! ping that got no echo), a hang or a crash: the process is still up and answering
//! afterwards, and every 200 is the right answer for its route. The second test also holds
//! every 4xx to the contract's JSON `{"error", "detalle"}` body.
//!
//! The request generation is `testkit::hostile_http`'s (the inventory's test uses the same).
//! A third of `PROPTEST_CASES` requests per test (default 1000).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use testkit::hostile_http::{
    self, cases, content_type, odd_path, pct, query, query_value, text, truncate, HostileRequest,
};
use testkit::{wait_for_status, Process};

/// The longest any request may take, however hostile: a hang fails the test.
const LIMITE: Duration = Duration::from_secs(30);

/// An answer as read off the socket.
struct Respuesta {
    status: StatusCode,
    headers: HeaderMap,
    /// The body parsed, `Null` if it is not JSON.
    json: Value,
    text: String,
}

fn peticion_monitor() -> BoxedStrategy<HostileRequest> {
    // Paths the monitor nearly serves. Not `/monitor/stream`: it is an endless event stream.
    let casi = [
        "//monitor",
        "/MONITOR",
        "/monitor//historial",
        "/monitor/./historial",
        "/monitor/../health",
        "/monitor/historial/",
        "/health/",
        "/metrics/x",
        "/assets/",
        "/%6Donitor",
    ];
    let ruta = prop_oneof![
        3 => Just("/monitor".to_owned()),
        3 => Just("/monitor/historial".to_owned()),
        1 => Just("/health".to_owned()),
        1 => Just("/metrics".to_owned()),
        1 => Just("/monitor/".to_owned()),
        1 => Just("/monitor/historial/1".to_owned()),
        1 => text().prop_map(|t| format!("/monitor/{}", pct(&t))),
        2 => odd_path(&casi, text()),
    ];
    let consulta = prop_oneof![
        2 => query(&["limite"], text()),
        3 => query_value(text()).prop_map(|v| format!("?limite={v}")),
    ];
    let metodo = prop_oneof![3 => Just(Method::GET), 2 => hostile_http::method()];
    let json = hostile_http::json_value(text(), text());
    let cuerpo = hostile_http::small_body(json, text(), hostile_http::json_object(text(), text()));
    (metodo, ruta, consulta, content_type(), cuerpo)
        .prop_map(|(method, ruta, q, content_type, body)| HostileRequest {
            method,
            uri: format!("{ruta}{q}"),
            content_type,
            body,
        })
        .boxed()
}

/// `ruta`: the path as sent, after the URL parser's normalisation (`/a/../health` is `/health`).
fn comprobar_monitor(
    p: &HostileRequest,
    ruta: &str,
    r: &Respuesta,
    exigir_json: bool,
) -> Result<(), String> {
    let status = r.status;
    // The one documented 5xx: GET /monitor says 503 when the target did not answer its live
    // ping (the body still says what the monitor knows).
    let live_ping = ruta == "/monitor" && matches!(p.method, Method::GET | Method::HEAD);
    if status.is_server_error() {
        if status == StatusCode::SERVICE_UNAVAILABLE
            && live_ping
            && (p.method == Method::HEAD || r.json["estado"].is_string())
        {
            return Ok(());
        }
        return Err(format!("{status}: {}", truncate(&r.text)));
    }
    if p.method == Method::HEAD {
        return Ok(());
    }
    if status.is_client_error() {
        return if exigir_json {
            hostile_http::error_json(r.status, &r.headers, &r.json, &r.text)
        } else {
            Ok(())
        };
    }
    if status != StatusCode::OK {
        return Err(format!("unexpected {status}: {}", truncate(&r.text)));
    }
    let ok = match ruta {
        "/monitor" => r.json["estado"].is_string() && r.json["latencia_ms"].is_number(),
        "/monitor/historial" => r.json["pings"].is_array() && r.json["cambios"].is_array(),
        "/health" => r.json["status"] == "ok",
        "/metrics" => r.text.contains("monitor_pings_sent_total"),
        // Routes this test does not judge (the dashboard's page and assets): an answer.
        _ => !r.text.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected 200 on {ruta}: {}", truncate(&r.text)))
    }
}

#[derive(Default)]
struct Cuenta {
    enviadas: u64,
    por_status: BTreeMap<u16, u64>,
    mas_lenta: Duration,
}

/// Redis, an inventario-worker and a monitor-service as processes; hostile requests to every
/// monitor route. `exigir_json`: 4xx answers must also carry the JSON error body.
fn monitor_hostil(exigir_json: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = testkit::RedisServer::start();
    let db = format!("sqlite://{}", dir.path().join("inventario.db").display());
    let port = testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _worker = Process::program(
        "inventario-worker",
        &[
            ("REDIS_URL", server.url()),
            ("DATABASE_URL", db),
            ("RUST_LOG", "warn".into()),
        ],
        &dir.path().join("inventario-worker.log"),
    );
    // The binary cargo built for this test, with only this environment (as `Process::program`).
    let mut monitor = Process::start(
        "monitor-service",
        Command::new(env!("CARGO_BIN_EXE_monitor-service"))
            .env_clear()
            .env("REDIS_URL", server.url())
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn"),
        &dir.path().join("monitor-service.log"),
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMITE)
        .build()
        .expect("client");
    let up = rt.block_on(wait_for_status(
        &http,
        &format!("{base}/monitor"),
        200,
        Duration::from_secs(60),
    ));
    assert!(up, "the monitor never answered 200:\n{}", monitor.log());

    let cuenta = RefCell::new(Cuenta::default());
    let config = Config {
        failure_persistence: None,
        max_shrink_iters: 100,
        ..Config::with_cases(cases(3000) / 3)
    };
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&peticion_monitor(), |p| {
        let url = format!("{base}{}", p.uri);
        let ruta = reqwest::Url::parse(&url)
            .map(|u| u.path().to_owned())
            .map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        let mut request = http.request(p.method.clone(), &url);
        if let Some(ct) = &p.content_type {
            request = request.header(header::CONTENT_TYPE, ct.as_str());
        }
        let body = p.body.bytes().expect("small bodies only");
        let sent = Instant::now();
        let r = rt
            .block_on(async {
                let response = request.body(body).send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let bytes = response.bytes().await?;
                Ok::<_, reqwest::Error>(Respuesta {
                    status,
                    headers,
                    json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                })
            })
            .map_err(|e| TestCaseError::fail(format!("{} {url}: no answer: {e}", p.method)))?;
        let mut c = cuenta.borrow_mut();
        c.enviadas += 1;
        c.mas_lenta = c.mas_lenta.max(sent.elapsed());
        *c.por_status.entry(r.status.as_u16()).or_default() += 1;
        drop(c);
        comprobar_monitor(&p, &ruta, &r, exigir_json).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let c = cuenta.into_inner();
    println!(
        "hostile HTTP to the monitor: {} requests in {:.1} s, statuses {:?}, slowest {} ms",
        c.enviadas,
        started.elapsed().as_secs_f64(),
        c.por_status,
        c.mas_lenta.as_millis()
    );
    assert!(
        monitor.is_running(),
        "the monitor exited:\n{}",
        monitor.log()
    );
    let health = rt.block_on(wait_for_status(
        &http,
        &format!("{base}/health"),
        200,
        Duration::from_secs(5),
    ));
    assert!(health, "the monitor stopped answering");
}

/// The monitor's routes under hostile input: no 5xx (but the documented 503 of a live ping
/// that got no echo), no hang, the process stays up, and 2xx answers are the right ones.
#[test]
fn monitor_routes_survive_hostile_requests() {
    // Generating nested strategies takes deep stacks in debug builds: a thread with room.
    let run = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| monitor_hostil(false))
        .expect("thread");
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

/// The same, holding the monitor to the contract's JSON error body on every 4xx.
#[test]
fn monitor_errors_are_json_like_the_contract() {
    let run = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| monitor_hostil(true))
        .expect("thread");
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}
