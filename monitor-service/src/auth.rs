//! Who may read the monitor: with `MONITOR_TOKEN` set, every route but `GET /health` needs that
//! token; unset, everything is open, as before (the compose file publishes the port on
//! loopback only).
//!
//! The token is taken from:
//! - `Authorization: Bearer <token>`: scripts, curl, and Prometheus (`authorization:
//!   credentials: <token>` in its scrape config);
//! - the cookie [`COOKIE`]: a browser cannot add a header to the dashboard page it opens, nor
//!   to the page's `EventSource`, so `GET /?token=<token>` is taken once, answered with the
//!   cookie (HttpOnly, SameSite=Strict, Path=/) and a redirect to `/`, which takes the token out
//!   of the address bar and its history. The page's own requests then carry the cookie, and the
//!   dashboard's code needs no change.
//!
//! Comparisons take the same time whatever the bytes (`subtle`), so the answer's timing does
//! not reveal how much of a guess was right. Refusals are 401 with the services' JSON error and
//! a `WWW-Authenticate: Bearer` challenge (RFC 6750).

use std::fmt;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header::{COOKIE as COOKIE_HEADER, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use subtle::ConstantTimeEq;

/// The cookie that carries the token for the dashboard's page and stream.
pub const COOKIE: &str = "monitor_token";

/// The route left open whatever the token: liveness checks (the compose healthcheck,
/// orchestrators) carry no credentials.
const OPEN_PATH: &str = "/health";

/// `MONITOR_TOKEN`. Its `Debug` shows no part of it, so a `Config` logged with `{:?}` cannot
/// leak it.
#[derive(Clone)]
pub struct MonitorToken(String);

impl MonitorToken {
    pub fn new(s: impl Into<String>) -> Self {
        MonitorToken(s.into())
    }

    /// Length in bytes (to warn about short tokens without showing them).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for MonitorToken {
    fn from(s: String) -> Self {
        MonitorToken(s)
    }
}

impl fmt::Debug for MonitorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MonitorToken(***)")
    }
}

/// The credentials a request must show, prepared once: the token, and the cookie's value
/// (the token in base64url, since a cookie value cannot hold every character a token may).
#[derive(Clone)]
pub struct Access {
    token: Arc<str>,
    cookie: Arc<str>,
}

impl Access {
    /// `None` when the token is empty: an empty `MONITOR_TOKEN` (as `${MONITOR_TOKEN:-}` in a
    /// compose file gives) means unset, not "the empty string opens everything".
    pub fn new(token: &MonitorToken) -> Option<Self> {
        (!token.is_empty()).then(|| Access {
            token: token.0.as_str().into(),
            cookie: URL_SAFE_NO_PAD.encode(token.0.as_bytes()).into(),
        })
    }

    fn is_token(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.token.as_bytes()).into()
    }

    fn is_cookie(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.cookie.as_bytes()).into()
    }

    /// The `Set-Cookie` that lets a browser in. No `Max-Age`: it lasts the browser session.
    /// No `Secure`: the monitor is served over plain HTTP, where a Secure cookie is not kept.
    fn set_cookie(&self) -> HeaderValue {
        HeaderValue::try_from(format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie
        ))
        .expect("base64url is a valid header value")
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No credentials at all.
    Missing,
    /// A token or cookie was given and is not the right one.
    Wrong,
}

/// Middleware: lets a request through when the monitor is open, when it is `GET /health`, or
/// when it shows the token; answers the dashboard's `/?token=` with the cookie; refuses the
/// rest with 401.
pub async fn require(
    State(access): State<Option<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(access) = access else {
        return next.run(request).await;
    };
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    if request.method() == Method::GET && request.uri().path() == "/" {
        if let Some(given) = query_token(request.uri()) {
            return if access.is_token(&given) {
                let mut response = StatusCode::SEE_OTHER.into_response();
                let headers = response.headers_mut();
                headers.insert(LOCATION, HeaderValue::from_static("/"));
                headers.insert(SET_COOKIE, access.set_cookie());
                response
            } else {
                refuse(Refusal::Wrong)
            };
        }
    }
    match check(&access, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refuse(refusal),
    }
}

/// Whether the headers carry the token, as a bearer token or as the cookie.
fn check(access: &Access, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut given = false;
    if let Some(token) = http_server::bearer_token(headers) {
        if access.is_token(token) {
            return Ok(());
        }
        given = true;
    }
    for value in cookies(headers, COOKIE) {
        if access.is_cookie(value) {
            return Ok(());
        }
        given = true;
    }
    Err(if given {
        Refusal::Wrong
    } else {
        Refusal::Missing
    })
}

/// The values of the cookie `name` in every `Cookie` header.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n == name).then_some(value)
        })
}

/// The `token` parameter of a URI's query, percent-decoded.
fn query_token(uri: &Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        token: Option<String>,
    }
    Query::<Q>::try_from_uri(uri).ok()?.0.token
}

fn refuse(refusal: Refusal) -> Response {
    let (code, detalle, challenge) = match refusal {
        Refusal::Missing => (
            "no_autenticado",
            "el monitor pide MONITOR_TOKEN: envíe Authorization: Bearer <token>, o abra \
             /?token=<token> una vez en el navegador",
            r#"Bearer realm="monitor""#,
        ),
        Refusal::Wrong => (
            "token_invalido",
            "el token no es el de este monitor",
            r#"Bearer realm="monitor", error="invalid_token""#,
        ),
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": code, "detalle": detalle})),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_shown_by_debug() {
        let t = MonitorToken::new("muy-secreto");
        assert!(!format!("{t:?}").contains("secreto"));
    }

    #[test]
    fn an_empty_token_means_open() {
        assert!(Access::new(&MonitorToken::new("")).is_none());
    }

    #[test]
    fn query_tokens_are_decoded() {
        let token = |uri: &str| query_token(&uri.parse().unwrap());
        assert_eq!(token("/?token=a%20b").as_deref(), Some("a b"));
        assert_eq!(token("/?x=1&token=t").as_deref(), Some("t"));
        assert_eq!(token("/?x=1"), None);
        assert_eq!(token("/"), None);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE_HEADER,
            HeaderValue::from_static("a=1; monitor_token=xyz"),
        );
        h.append(
            COOKIE_HEADER,
            HeaderValue::from_static("monitor_token=otro"),
        );
        assert_eq!(cookies(&h, COOKIE).collect::<Vec<_>>(), ["xyz", "otro"]);
    }
}
