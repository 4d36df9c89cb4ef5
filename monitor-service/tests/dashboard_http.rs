//! The dashboard over real HTTP: the monitor's router served on a free port (as `main` serves
//! it, with graceful shutdown on the monitor's token), against a private Redis and an
//! in-process worker, read with reqwest. The page and its assets with their content types and
//! caching; the server-sent events (snapshot, pings, state, a state change) read as a stream,
//! each awaited with a deadline; the cap on open streams; and streams that end when the
//! process is asked to stop, so shutdown does not hang on an open page.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use monitor_service::{app, Config, Monitor};
use serde_json::Value;
use shared::shutdown::CancellationToken;
use shared::{Redis, Worker, WorkerConfig};
use testkit::{eventually, RedisServer};
use tokio::task::JoinHandle;

/// The monitor, served over TCP like `main` does.
struct Served {
    base: String,
    monitor: Monitor,
    token: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

async fn serve(redis: &RedisServer, extra: &[&str]) -> Served {
    let url = redis.url();
    let mut args = vec!["monitor-service", "--redis-url", url.as_str()];
    args.extend_from_slice(extra);
    let config = <Config as clap::Parser>::parse_from(args);
    let token = CancellationToken::new();
    let monitor = Monitor::start(config, token.clone()).expect("monitor starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        axum::serve(listener, app(monitor.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future(),
    );
    Served {
        base,
        monitor,
        token,
        server,
    }
}

fn start_worker(server: &RedisServer, hostname: &str) -> (CancellationToken, JoinHandle<()>) {
    let redis = Redis::from_url(&server.url()).unwrap();
    let config = WorkerConfig {
        hostname: hostname.into(),
        queues: vec!["inventario".into()],
        heartbeat_interval: Duration::from_millis(500),
        idle_block: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let token = CancellationToken::new();
    let worker = Worker::new(redis, demo_worker::registry(), config);
    let handle = tokio::spawn({
        let token = token.clone();
        async move {
            worker.run(token).await.expect("worker runs");
        }
    });
    (token, handle)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    data: String,
}

impl Sse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.event, self.data))
    }
}

/// Reads an `text/event-stream` response event by event (comments and keep-alives skipped).
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    fn new(response: reqwest::Response) -> Self {
        EventReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the stream ends.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive) or a bare `retry:`
                }
                return Some(Sse {
                    event,
                    data: data.join("\n"),
                });
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The first event accepted by `wanted`, within `limit`.
    async fn until(&mut self, limit: Duration, mut wanted: impl FnMut(&Sse) -> bool) -> Sse {
        tokio::time::timeout(limit, async {
            loop {
                let event = self.next().await.expect("the stream ended early");
                if wanted(&event) {
                    return event;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no such event within {limit:?}"))
    }
}

async fn open_stream(base: &str) -> EventReader {
    let response = http()
        .get(format!("{base}/monitor/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/event-stream");
    assert_eq!(header("cache-control"), "no-cache");
    EventReader::new(response)
}

/// The page and its assets: content types, caching, ETag revalidation; the old routes answer
/// as before.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets() {
    let redis = RedisServer::start();
    let served = serve(&redis, &[]).await;
    let client = http();
    let page = client
        .get(format!("{}/", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let etag = h["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    for needle in [
        "<html lang=\"es\">",
        "Monitor de disponibilidad",
        "id=\"objetivos\"",
        "id=\"grafico\"",
        "id=\"pausa\"",
        "data-ventana=\"3600\"",
        "id=\"workers\"",
        "Cambios de estado",
        "id=\"seccion-colas\"",
        "id=\"sin-workers\"",
        "id=\"grafico-colas\"",
        "href=\"/tarea\"",
        "href=\"/cuarentena\"",
    ] {
        assert!(html.contains(needle), "{needle} not in the page");
    }
    // The lookup pages: HTML with the same policy (no inline code), their script versioned.
    for (path, needle) in [
        ("/tarea", "id=\"id-tarea\""),
        ("/tarea?id=%3Cimg%20src%3Dx%3E", "id=\"id-tarea\""),
        ("/cuarentena", "id=\"entradas\""),
    ] {
        let r = client
            .get(format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert!(r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{needle} not in {path}");
        assert!(!body.contains("<img"), "{path} echoes its query");
        let start = body.find("/assets/paginas.js?v=").expect("script linked");
        let link = &body[start..body[start..].find('"').unwrap() + start];
        let js = client
            .get(format!("{}{link}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(js.status(), 200);
        assert_eq!(
            js.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            js.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    // The page names its assets with their version; so named, they are cached for good.
    for (path, content_type) in [
        ("/assets/dashboard.css", "text/css; charset=utf-8"),
        ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
    ] {
        let start = html.find(path).expect("asset linked");
        let link = &html[start..html[start..].find('"').unwrap() + start];
        assert!(link.contains("?v="), "{link}");
        let r = client
            .get(format!("{}{link}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{link}");
        assert_eq!(r.headers()["content-type"], content_type);
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(r.text().await.unwrap().len() > 1000);
        let unversioned = client
            .get(format!("{}{path}", served.base))
            .send()
            .await
            .unwrap();
        assert_eq!(unversioned.headers()["cache-control"], "no-cache");
    }
    let again = client
        .get(format!("{}/", served.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    // The existing routes are untouched.
    let health = client
        .get(format!("{}/health", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
    let metrics = client
        .get(format!("{}/metrics", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    served.token.cancel();
    served.server.await.unwrap().unwrap();
}

/// The stream: a snapshot with the state at once, then pings and the state every second, and
/// a state change as it happens (the worker stops: CAIDO); every event within a deadline.
#[tokio::test(flavor = "multi_thread")]
async fn the_stream_carries_the_state_pings_and_changes() {
    let redis = RedisServer::start();
    let (stop_worker, worker) = start_worker(&redis, "sse@test");
    let served = serve(&redis, &[]).await;
    assert!(
        eventually(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || async {
                served.monitor.summaries()[0]
                    .ultimo_ping_del_ciclo
                    .as_ref()
                    .is_some_and(|p| p.is_ok())
            }
        )
        .await,
        "the worker never answered"
    );
    let opened = Instant::now();
    let mut events = open_stream(&served.base).await;
    let snapshot = events
        .until(Duration::from_secs(5), |e| e.event == "snapshot")
        .await;
    println!("snapshot after {:?}", opened.elapsed());
    let s = snapshot.json();
    assert_eq!(s["objetivos"][0]["servicio"], "InventarioService");
    assert_eq!(s["objetivos"][0]["estado"], "OK");
    assert_eq!(s["ajustes"]["asr_ms"], 2000);
    assert_eq!(s["ajustes"]["timeout_ms"], 750);
    assert_eq!(s["ajustes"]["umbral_degradado_ms"], 300);
    assert_eq!(s["ajustes"]["puntos_max"], 14_400);
    let puntos = s["series"][0]["puntos"].as_array().unwrap();
    assert!(!puntos.is_empty(), "the snapshot carries the recent pings");
    assert_eq!(
        puntos[0].as_array().unwrap().len(),
        3,
        "[t, latencia_ms, codigo]"
    );
    let sent: std::collections::HashSet<i64> =
        puntos.iter().map(|p| p[0].as_i64().unwrap()).collect();

    let ping = events
        .until(Duration::from_secs(3), |e| e.event == "ping")
        .await
        .json();
    assert_eq!(ping["servicio"], "InventarioService");
    assert_eq!(ping["resultado"], "ok");
    assert!(ping["latencia_ms"].as_f64().unwrap() > 0.0);
    assert!(
        !sent.contains(&ping["t"].as_i64().unwrap()),
        "the stream continues after the snapshot, without repeating it"
    );
    let estado = events
        .until(Duration::from_secs(3), |e| e.event == "estado")
        .await
        .json();
    assert_eq!(estado["objetivos"][0]["estado"], "OK");
    assert!(estado["ahora"].as_i64().is_some());
    // The worker's heartbeats reach the page.
    events
        .until(Duration::from_secs(5), |e| {
            e.event == "estado"
                && e.json()["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["hostname"] == "sse@test" && w["alive"] == true)
        })
        .await;

    // The worker goes (worker-offline): the page hears CAIDO at once, not at the next tick.
    let stopped = Instant::now();
    stop_worker.cancel();
    worker.await.unwrap();
    let cambio = events
        .until(Duration::from_secs(5), |e| {
            e.event == "cambio" && e.json()["a"] == "CAIDO"
        })
        .await
        .json();
    println!(
        "cambio CAIDO on the stream {:?} after the worker stopped: {}",
        stopped.elapsed(),
        cambio["linea"]
    );
    assert_eq!(cambio["de"], "OK");
    assert!(cambio["linea"]
        .as_str()
        .unwrap()
        .starts_with("[ALERTA] InventarioService CAIDO"));
    assert!(cambio["t"].as_i64().is_some());
    served.token.cancel();
    served.server.await.unwrap().unwrap();
}

/// At most DASHBOARD_MAX_CLIENTS streams; the next is a JSON 503 with Retry-After; a closed
/// page frees its slot.
#[tokio::test(flavor = "multi_thread")]
async fn open_streams_are_capped() {
    let redis = RedisServer::start();
    let served = serve(&redis, &["--dashboard-max-clients", "2"]).await;
    let mut a = open_stream(&served.base).await;
    let mut b = open_stream(&served.base).await;
    a.until(Duration::from_secs(5), |e| e.event == "snapshot")
        .await;
    b.until(Duration::from_secs(5), |e| e.event == "snapshot")
        .await;
    let refused = http()
        .get(format!("{}/monitor/stream", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "demasiados_clientes");
    assert_eq!(served.monitor.feed().clients(), 2);
    drop(a);
    // The server notices the closed connection when it next writes (an event every second).
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async { served.monitor.feed().clients() == 1 }
        )
        .await,
        "the closed stream's slot was not freed"
    );
    let mut c = open_stream(&served.base).await;
    c.until(Duration::from_secs(5), |e| e.event == "snapshot")
        .await;
    served.token.cancel();
    served.server.await.unwrap().unwrap();
}

/// Graceful shutdown with pages open: every stream ends and the server returns promptly.
#[tokio::test(flavor = "multi_thread")]
async fn streams_end_on_shutdown() {
    let redis = RedisServer::start();
    let served = serve(&redis, &[]).await;
    let mut pages = Vec::new();
    for _ in 0..3 {
        let mut page = open_stream(&served.base).await;
        page.until(Duration::from_secs(5), |e| e.event == "snapshot")
            .await;
        pages.push(page);
    }
    let asked = Instant::now();
    served.token.cancel();
    tokio::time::timeout(Duration::from_secs(5), served.server)
        .await
        .expect("graceful shutdown waited on the open streams")
        .unwrap()
        .unwrap();
    println!("server stopped {:?} after the signal", asked.elapsed());
    for mut page in pages {
        let rest = tokio::time::timeout(Duration::from_secs(2), async {
            let mut n = 0;
            while page.next().await.is_some() {
                n += 1;
            }
            n
        })
        .await
        .expect("the stream did not end");
        assert!(rest < 20, "{rest} events after shutdown");
    }
    served.monitor.stopped().await;
}
