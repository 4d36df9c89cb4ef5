//! How the monitor's tests start it and ask it things, in one place: the real binary as a
//! child process ([`Monitor`], for what only the process shows: its log lines, its HTTP server,
//! its environment), or the library's monitor in this process driven through `app()` with
//! `oneshot` ([`start_in_process`], for tests that read its state directly).
//!
//! Each test file uses part of it, hence `dead_code` allowed here.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use shared::shutdown::CancellationToken;
use testkit::{eventually, free_port, wait_for_status, Process, RedisServer};
use tower::ServiceExt;

/// How often the `until_*` helpers ask again.
const POLL_STEP: Duration = Duration::from_millis(50);

/// The real monitor binary on a private Redis, with nothing from this shell's environment but
/// what the test gives it, answering on a loopback port of its own; killed when dropped.
pub struct Monitor {
    pub process: Process,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub http: reqwest::Client,
}

impl Monitor {
    /// Starts the binary on `redis` with `env` besides `REDIS_URL`, `HTTP_ADDR` and
    /// `RUST_LOG=info`, logging into `dir`, and waits until `/health` answers 200.
    pub async fn start(redis: &RedisServer, env: &[(&str, &str)], dir: &Path) -> Self {
        let port = free_port();
        let process = Process::start(
            "monitor-service",
            Command::new(env!("CARGO_BIN_EXE_monitor-service"))
                .env_clear()
                .env("REDIS_URL", redis.url())
                .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("RUST_LOG", "info")
                .envs(env.iter().copied()),
            // By port: a test may start several monitors in one directory.
            &dir.join(format!("monitor-service-{port}.log")),
        );
        let monitor = Monitor {
            process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        assert!(
            wait_for_status(
                &monitor.http,
                &monitor.url("/health"),
                200,
                Duration::from_secs(30)
            )
            .await,
            "the monitor never answered: {}",
            monitor.process.log_tail(20)
        );
        monitor
    }

    /// The absolute URL of `path` (with its query, if any).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// `GET path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `GET path`'s body, whatever its status.
    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.1
    }

    /// `GET path`: status and JSON body.
    pub async fn json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get(path).await;
        let body = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"));
        (status, body)
    }

    /// One series of `/metrics` (`name{labels}` as rendered), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        value(&self.text("/metrics").await, series)
    }

    /// Asks `GET path` until `wanted(body)`, within `limit`: whether it came, and the last body.
    pub async fn until_text(
        &self,
        path: &str,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> (bool, String) {
        let last = RefCell::new(String::new());
        let held = eventually(limit, POLL_STEP, || async {
            let body = self.text(path).await;
            let ok = wanted(&body);
            *last.borrow_mut() = body;
            ok
        })
        .await;
        (held, last.into_inner())
    }

    /// Asks `GET path` until `wanted(status, body)` (a JSON body), within `limit`: whether it
    /// came, and the last body.
    pub async fn until_json(
        &self,
        path: &str,
        limit: Duration,
        wanted: impl Fn(u16, &Value) -> bool,
    ) -> (bool, Value) {
        let last = RefCell::new(Value::Null);
        let held = eventually(limit, POLL_STEP, || async {
            let (status, body) = self.json(path).await;
            let ok = wanted(status, &body);
            *last.borrow_mut() = body;
            ok
        })
        .await;
        (held, last.into_inner())
    }

    /// Asks `/metrics` until `series` satisfies `wanted`, within `limit`, and fails the test
    /// (with the log's tail) if it never does.
    pub async fn until_metric(
        &self,
        series: &str,
        limit: Duration,
        wanted: impl Fn(Option<f64>) -> bool,
    ) {
        let (held, text) = self
            .until_text("/metrics", limit, |t| wanted(value(t, series)))
            .await;
        assert!(
            held,
            "{series} is {:?}; log: {}",
            value(&text, series),
            self.process.log_tail(20)
        );
    }

    /// The log lines that contain `tag`.
    pub fn log_lines(&self, tag: &str) -> Vec<String> {
        self.process
            .log()
            .lines()
            .filter(|l| l.contains(tag))
            .map(str::to_owned)
            .collect()
    }
}

/// The value of `series` (`name{labels}` as rendered) in a Prometheus text exposition.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The library's monitor in this process on `server`, with the defaults plus `extra` flags;
/// the token stops it.
pub fn start_in_process(
    server: &RedisServer,
    extra: &[&str],
) -> (monitor_service::Monitor, CancellationToken) {
    let url = server.url();
    let mut args = vec!["monitor-service", "--redis-url", url.as_str()];
    args.extend_from_slice(extra);
    let config = <monitor_service::Config as clap::Parser>::parse_from(args);
    let token = CancellationToken::new();
    let monitor = monitor_service::Monitor::start(config, token.clone()).expect("monitor starts");
    (monitor, token)
}

/// `GET uri` through the in-process monitor's router: status and body.
pub async fn oneshot_get(monitor: &monitor_service::Monitor, uri: &str) -> (StatusCode, Vec<u8>) {
    let response = monitor_service::app(monitor.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// `GET uri` through the in-process monitor's router: status and JSON body.
pub async fn oneshot_json(monitor: &monitor_service::Monitor, uri: &str) -> (StatusCode, Value) {
    let (status, body) = oneshot_get(monitor, uri).await;
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

/// Waits until the in-process monitor's last ping of its first target was answered and the
/// state is OK.
pub async fn answering(monitor: &monitor_service::Monitor, limit: Duration) -> bool {
    eventually(limit, Duration::from_millis(20), || async {
        let s = &monitor.summaries()[0];
        s.estado == monitor_service::Estado::Ok
            && s.ultimo_ping_del_ciclo.as_ref().is_some_and(|p| p.is_ok())
    })
    .await
}
