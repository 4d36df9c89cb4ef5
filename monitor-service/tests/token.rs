//! MONITOR_TOKEN: with it set, every route but `GET /health` needs the token, as a bearer
//! token or as the cookie a browser gets from `/?token=`; unset (or empty), everything is open.
//! The real router with its middleware, driven in process, on a private Redis.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use monitor_service::{app, Config, Monitor};
use serde_json::Value;
use shared::shutdown::CancellationToken;
use testkit::RedisServer;
use tower::ServiceExt;

const TOKEN: &str = "token-de-prueba-del-monitor-0123456789";

/// The routes behind the token: the JSON API, the metrics, the dashboard and its stream, and
/// a route that does not exist (no answer tells an outsider what does).
const PROTECTED: [&str; 6] = [
    "/monitor",
    "/monitor/historial",
    "/metrics",
    "/",
    "/monitor/stream",
    "/no-existe",
];

struct Started {
    monitor: Monitor,
    stop: CancellationToken,
    _redis: RedisServer,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start(token: Option<&str>) -> Started {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut args = vec!["monitor-service", "--redis-url", url.as_str()];
    if let Some(t) = token {
        args.extend(["--monitor-token", t]);
    }
    let config = <Config as clap::Parser>::parse_from(args);
    let stop = CancellationToken::new();
    let monitor = Monitor::start(config, stop.clone()).expect("monitor starts");
    Started {
        monitor,
        stop,
        _redis: redis,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

/// `GET uri` with these headers; the body is read only when it is not a stream.
async fn get(monitor: &Monitor, uri: &str, headers: &[(header::HeaderName, &str)]) -> Answer {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = app(monitor.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let is_stream = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let json = if is_stream {
        Value::Null
    } else {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        json,
    }
}

fn assert_refused(a: &Answer, uri: &str, code: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}: {}", a.json);
    assert_eq!(a.json["error"], code, "{uri}: {}", a.json);
    assert!(a.json["detalle"].is_string(), "{uri}: {}", a.json);
    let challenge = a.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!a.headers.contains_key(header::SET_COOKIE), "{uri}");
}

#[tokio::test]
async fn without_credentials_every_route_but_health_is_refused() {
    let m = start(Some(TOKEN));
    for uri in PROTECTED {
        let a = get(&m.monitor, uri, &[]).await;
        assert_refused(&a, uri, "no_autenticado");
    }
    let health = get(&m.monitor, "/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn the_right_bearer_token_opens_every_route_and_a_wrong_one_does_not() {
    let m = start(Some(TOKEN));
    let right = format!("Bearer {TOKEN}");
    for uri in PROTECTED {
        let a = get(&m.monitor, uri, &[(header::AUTHORIZATION, &right)]).await;
        // /monitor is 503 with no worker to answer, /no-existe is 404: neither is refused.
        assert_ne!(a.status, StatusCode::UNAUTHORIZED, "{uri}: {}", a.json);
    }
    let a = get(&m.monitor, "/metrics", &[(header::AUTHORIZATION, &right)]).await;
    assert_eq!(a.status, StatusCode::OK);
    // The scheme in any case (RFC 7235), as Prometheus or curl may send it.
    let lower = format!("bearer {TOKEN}");
    let a = get(&m.monitor, "/metrics", &[(header::AUTHORIZATION, &lower)]).await;
    assert_eq!(a.status, StatusCode::OK);

    let almost = format!("Bearer {}x", TOKEN);
    for wrong in [
        "Bearer nope",
        almost.as_str(),
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        TOKEN,
    ] {
        let a = get(&m.monitor, "/metrics", &[(header::AUTHORIZATION, wrong)]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let a = get(
        &m.monitor,
        "/metrics",
        &[(header::AUTHORIZATION, "Bearer nope")],
    )
    .await;
    assert_refused(&a, "/metrics", "token_invalido");
}

#[tokio::test]
async fn a_browser_gets_a_cookie_from_the_token_in_the_address_once() {
    let m = start(Some(TOKEN));
    let a = get(&m.monitor, &format!("/?token={TOKEN}"), &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/");
    let set_cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(TOKEN),
        "the cookie shows the token: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // What the browser does next: the page, its stream and anything else, with the cookie.
    let page = get(&m.monitor, "/", &[(header::COOKIE, &cookie)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let stream = get(&m.monitor, "/monitor/stream", &[(header::COOKIE, &cookie)]).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert!(stream.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let with_others = format!("tema=oscuro; {cookie}");
    for uri in ["/metrics", "/monitor/historial"] {
        let a = get(&m.monitor, uri, &[(header::COOKIE, &with_others)]).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.json);
    }

    // A wrong token in the address gets no cookie; a made-up cookie opens nothing.
    let a = get(&m.monitor, "/?token=adivinado", &[]).await;
    assert_refused(&a, "/?token=", "token_invalido");
    let a = get(
        &m.monitor,
        "/",
        &[(header::COOKIE, "monitor_token=adivinado")],
    )
    .await;
    assert_refused(&a, "/", "token_invalido");
    // The token in the address opens only the dashboard's door, not other routes.
    let a = get(&m.monitor, &format!("/metrics?token={TOKEN}"), &[]).await;
    assert_refused(&a, "/metrics?token=", "no_autenticado");
}

#[tokio::test]
async fn unset_or_empty_the_monitor_is_open() {
    for token in [None, Some("")] {
        let m = start(token);
        for uri in ["/metrics", "/monitor/historial", "/", "/health"] {
            let a = get(&m.monitor, uri, &[]).await;
            assert_eq!(a.status, StatusCode::OK, "{token:?} {uri}: {}", a.json);
        }
    }
}
