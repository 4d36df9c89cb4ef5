//! The server's limits against real sockets: a tiny router served on 127.0.0.1:0 by the real
//! `Server`, and clients written by hand that misbehave on purpose. Timeouts are a few hundred
//! milliseconds so the tests are quick; margins are wide, since the machine may be busy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream;
use http_server::{Connections, Limits, Server};
use testkit::eventually;
use testkit::slow_http::{self, Slow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should take a fraction of it.
const LIMIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(10);

/// What the routes of [`router`] share with the test: handlers of `/esperar` wait for a permit
/// the test hands out, and count themselves in.
#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(0)),
            entered: Arc::default(),
        }
    }
}

fn router(gate: Gate) -> Router {
    Router::new()
        .route("/", get(|| async { "hola" }))
        .route(
            "/esperar",
            get(move || {
                let gate = gate.clone();
                async move {
                    gate.entered.fetch_add(1, Ordering::SeqCst);
                    gate.permits.acquire().await.expect("open").forget();
                    "pasa"
                }
            }),
        )
        .route(
            "/lento",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "nunca"
            }),
        )
        .route("/eco", post(|body: String| async move { body }))
        // Endless: a client that does not read it fills its buffers and stops the writes.
        .route(
            "/flujo",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
                Body::from_stream(stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(chunk.clone())
                }))
            }),
        )
        // Server-sent events for longer than the request timeout of the tests.
        .route(
            "/eventos",
            get(|| async {
                let ticks = stream::unfold(0u32, |n| async move {
                    if n == 15 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, std::convert::Infallible>(Event::default().data(n.to_string())),
                        n + 1,
                    ))
                });
                Sse::new(ticks)
            }),
        )
}

struct Running {
    addr: SocketAddr,
    connections: Connections,
    stats: http_server::Stats,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(gate: Gate, limits: Limits) -> Running {
    let listener = http_server::bind("127.0.0.1:0").await.unwrap();
    let server = Server::new(listener, router(gate), limits).instance("prueba-1");
    let addr = server.local_addr().unwrap();
    let connections = server.connections();
    let stats = server.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running {
        addr,
        connections,
        stats,
        shutdown,
        task,
    }
}

fn limits(header_ms: u64, request_ms: u64, idle_ms: u64, max: usize) -> Limits {
    Limits {
        header_timeout: Duration::from_millis(header_ms),
        request_timeout: Duration::from_millis(request_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        max_connections: max,
        drain_timeout: Duration::from_secs(5),
    }
}

/// Sends `request` as is on a fresh connection and reads until the server closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_clients_are_closed_while_others_are_served() {
    slow_http::raise_open_files(4096);
    let header = Duration::from_millis(400);
    // The idle timeout is far longer than the header timeout: an idle kept-alive connection
    // closed near the header timeout shows hyper's header timer also covers that wait.
    let server = start(Gate::default(), limits(400, 5_000, 30_000, 2_000)).await;
    let siege = slow_http::siege(
        server.addr,
        &[
            (Slow::Trickle, 150),
            (Slow::Silent, 150),
            (Slow::KeptAlive, 100),
        ],
        "/",
        "/",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        siege.not_closed().is_empty(),
        "{} slow clients kept open: {:?}",
        siege.not_closed().len(),
        &siege.not_closed()[..siege.not_closed().len().min(5)]
    );
    // Header timeout plus a wide margin for a busy machine; far below the idle timeout.
    let margin = Duration::from_secs(3);
    for kind in [Slow::Trickle, Slow::Silent, Slow::KeptAlive] {
        let kept = siege.longest_kept(kind).expect("some closed");
        assert!(kept < header + margin, "{kind:?} kept {kept:?}");
        assert!(
            kept >= header - Duration::from_millis(50),
            "{kind:?} cut early: {kept:?}"
        );
        println!("{kind:?}: kept at most {:.0} ms", kept.as_secs_f64() * 1e3);
    }
    let failed: Vec<_> = siege
        .probes
        .iter()
        .filter_map(|p| p.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "ordinary requests failed: {failed:?}");
    assert!(!siege.probes.is_empty(), "no ordinary request was made");
    println!(
        "ordinary requests during 400 slow clients: {}",
        siege.latency_summary()
    );
    assert!(
        eventually(LIMIT, STEP, || async { server.connections.open() == 0 }).await,
        "{} connections still open",
        server.connections.open()
    );
    server.shutdown.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let server = start(Gate::default(), limits(5_000, 5_000, 500, 16)).await;
    let mut reader = TcpStream::connect(server.addr).await.unwrap();
    reader
        .write_all(b"GET /flujo HTTP/1.1\r\nHost: prueba\r\n\r\n")
        .await
        .unwrap();
    // It reads a little, then stops: the server's writes fill the buffers and stall.
    let mut buf = vec![0u8; 1024];
    reader.read_exact(&mut buf).await.unwrap();
    assert_eq!(server.connections.open(), 1);
    let closed = eventually(LIMIT, STEP, || async { server.connections.open() == 0 }).await;
    assert!(closed, "a stalled stream kept its connection");
    // What it could still read ends: the server did close it.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(LIMIT, reader.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the stream went on");
}

#[tokio::test]
async fn a_request_out_of_time_gets_a_json_error_and_a_stream_goes_on() {
    let server = start(Gate::default(), limits(5_000, 300, 5_000, 16)).await;

    // The service was slow: 503 with the services' JSON error and a Retry-After.
    let answer = raw(
        server.addr,
        b"GET /lento HTTP/1.1\r\nHost: prueba\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The server's own answers name the instance too, as the router's do.
    assert!(answer.contains("x-instancia: prueba-1\r\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert!(answer.contains(r#""error":"tiempo_agotado""#), "{answer}");
    assert!(answer.contains(r#""detalle":"#), "{answer}");

    // The client was slow to send its body: 408, and the connection closes.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /eco HTTP/1.1\r\nHost: prueba\r\nContent-Length: 100\r\n\r\nsolo diez.")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut answer))
        .await
        .expect("closed by the server")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""error":"peticion_incompleta""#),
        "{answer}"
    );

    // A whole body in time is answered as usual.
    let answer = raw(
        server.addr,
        b"POST /eco HTTP/1.1\r\nHost: prueba\r\nConnection: close\r\nContent-Length: 4\r\n\r\nhola",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hola"),
        "{answer}"
    );

    // Server-sent events for 1.5 s, five times the request timeout: all arrive.
    let started = tokio::time::Instant::now();
    let mut events = reqwest::get(format!("http://{}/eventos", server.addr))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut text = String::new();
    while let Some(chunk) = events.chunk().await.expect("the stream is not cut") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("data: 14"), "the stream was cut: {text}");
    assert!(started.elapsed() > Duration::from_millis(1_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_new_connection_waits_and_is_served_when_one_frees() {
    let gate = Gate::default();
    let server = start(gate.clone(), limits(10_000, 30_000, 30_000, 4)).await;
    let holders: Vec<_> = (0..4)
        .map(|_| tokio::spawn(slow_http::get(server.addr, "/esperar")))
        .collect();
    let all_in = eventually(LIMIT, STEP, || async {
        gate.entered.load(Ordering::SeqCst) == 4
    })
    .await;
    assert!(all_in, "the four holders did not get in");
    assert_eq!(server.connections.open(), 4);

    // The fifth connects (the kernel's backlog takes it) but is not served...
    let mut fifth = tokio::spawn(slow_http::get(server.addr, "/"));
    let early = tokio::time::timeout(Duration::from_millis(500), &mut fifth).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    assert_eq!(server.connections.open(), 4);

    // ...until one holder is answered and its connection closes.
    gate.permits.add_permits(1);
    let (status, body, _) = tokio::time::timeout(LIMIT, fifth)
        .await
        .expect("served once a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "hola"));

    gate.permits.add_permits(3);
    for h in holders {
        let (status, _, _) = h.await.unwrap().unwrap();
        assert_eq!(status, 200);
    }
    server.shutdown.cancel();
    server.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_a_request_in_flight_finish() {
    let gate = Gate::default();
    let server = start(gate.clone(), limits(10_000, 30_000, 30_000, 16)).await;
    let in_flight = tokio::spawn(slow_http::get(server.addr, "/esperar"));
    assert!(
        eventually(LIMIT, STEP, || async {
            gate.entered.load(Ordering::SeqCst) == 1
        })
        .await
    );

    server.shutdown.cancel();
    let refused = eventually(LIMIT, STEP, || async {
        TcpStream::connect(server.addr).await.is_err()
    })
    .await;
    assert!(refused, "still accepting after shutdown");
    assert!(
        !server.task.is_finished(),
        "returned with a request in flight"
    );

    gate.permits.add_permits(1);
    let (status, body, _) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "pasa"));
    tokio::time::timeout(LIMIT, server.task)
        .await
        .expect("returns once the request is answered")
        .unwrap();
}

#[tokio::test]
async fn the_drain_deadline_closes_what_does_not_finish() {
    let gate = Gate::default();
    let mut l = limits(10_000, 60_000, 60_000, 16);
    l.drain_timeout = Duration::from_millis(300);
    let server = start(gate.clone(), l).await;
    let stuck = tokio::spawn(slow_http::get(server.addr, "/esperar"));
    assert!(
        eventually(LIMIT, STEP, || async {
            gate.entered.load(Ordering::SeqCst) == 1
        })
        .await
    );

    let asked = tokio::time::Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(LIMIT, server.task)
        .await
        .expect("returns at the drain deadline")
        .unwrap();
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    println!("returned {:.0} ms after shutdown", took.as_secs_f64() * 1e3);
    // The stuck request's connection is closed without an answer.
    let r = tokio::time::timeout(LIMIT, stuck).await.unwrap().unwrap();
    assert!(r.is_err(), "{r:?}");
}

/// The server's own metrics, as the services' `/metrics` render them.
fn scrape(stats: &http_server::Stats) -> String {
    let registry = prometheus::Registry::new();
    registry.register(Box::new(stats.clone())).unwrap();
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    String::from_utf8(text).unwrap()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn what_the_server_cuts_off_is_counted_in_its_metrics() {
    // The idle timeout is longer than the header timeout, so a trickled head is cut by the
    // latter and counted as such.
    let server = start(Gate::default(), limits(300, 300, 1_000, 16)).await;
    let text = scrape(&server.stats);
    // Every series exists at 0 before anything happens, so rates over them are defined.
    for series in [
        "http_server_connections_accepted_total",
        "http_server_connection_cap_reached_total",
        "http_server_connections_closed_total{reason=\"header_timeout\"}",
        "http_server_connections_closed_total{reason=\"idle\"}",
        "http_server_requests_timed_out_total{status=\"503\"}",
        "http_server_requests_timed_out_total{status=\"408\"}",
        "http_server_connections_open",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series} in:\n{text}");
    }

    // An ordinary answer names the instance that gave it.
    let answer = raw(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-instancia: prueba-1\r\n"), "{answer}");
    // A slow handler: the server answers 503 itself.
    let answer = raw(
        server.addr,
        b"GET /lento HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // A body that never comes: 408.
    let answer = raw(
        server.addr,
        b"POST /eco HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A head that never ends: closed for the header timeout, with no answer.
    let answer = raw(server.addr, b"GET / HTTP/1.1\r\nHost:").await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    // An answer nobody reads: closed for idling.
    let mut reader = TcpStream::connect(server.addr).await.unwrap();
    reader
        .write_all(b"GET /flujo HTTP/1.1\r\nHost: p\r\n\r\n")
        .await
        .unwrap();

    let counted = eventually(LIMIT, STEP, || async {
        let text = scrape(&server.stats);
        sample(&text, "http_server_connections_accepted_total") == Some(5.0)
            && sample(
                &text,
                "http_server_connections_closed_total{reason=\"idle\"}",
            ) == Some(1.0)
            && sample(&text, "http_server_connections_open") == Some(0.0)
    })
    .await;
    let text = scrape(&server.stats);
    assert!(counted, "the idle close was not counted:\n{text}");
    for (series, value) in [
        ("http_server_connections_accepted_total", 5.0),
        ("http_server_requests_timed_out_total{status=\"503\"}", 1.0),
        ("http_server_requests_timed_out_total{status=\"408\"}", 1.0),
        (
            "http_server_connections_closed_total{reason=\"header_timeout\"}",
            1.0,
        ),
        ("http_server_connection_cap_reached_total", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    drop(reader);
    server.shutdown.cancel();
    server.task.await.unwrap();
}
