//! The availability-check binary against a tiny local server that fails exactly one request in
//! ten: it must count them, print the numbers, and exit 1 when the ASR does not hold, 0 when
//! it does.

use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Serves GET / on a free port: every tenth request is a 503.
async fn flaky_server() -> String {
    let count = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/",
        get(move || {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                if n.is_multiple_of(10) {
                    (StatusCode::SERVICE_UNAVAILABLE, "no")
                } else {
                    (StatusCode::OK, "si")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

async fn check(url: &str, asr: &str) -> Output {
    let args = ["--url", url, "-c", "10", "-n", "20", "--asr", asr];
    tokio::process::Command::new(env!("CARGO_BIN_EXE_availability-check"))
        .args(args)
        .output()
        .await
        .expect("run availability-check")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_below_the_asr_and_passes_above_it() {
    let url = flaky_server().await;

    let out = check(&url, "99").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "Solicitudes: 200",
        "Exitosas: 180",
        "Fallidas: 20",
        "Disponibilidad: 90.00 %",
        "NO CUMPLE",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(text.contains("Latencia: p50 "), "{text}");

    // The same server, the next 200 requests, judged against 90 %: holds.
    let out = check(&url, "90").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Exitosas: 180"), "{text}");
    assert!(
        text.contains("ASR (disponibilidad >= 90.00 %): CUMPLE"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_zero_availability() {
    let port = testkit::free_port();
    let out = check(&format!("http://127.0.0.1:{port}/"), "1").await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Fallidas: 200"), "{text}");
    assert!(text.contains("Disponibilidad: 0.00 %"), "{text}");
}
