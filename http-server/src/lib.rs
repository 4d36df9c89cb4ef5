//! # http-server: the services' HTTP server, with the limits `axum::serve` lacks
//!
//! `axum::serve` runs hyper without a timer, so no timeout of hyper's is in force: a client
//! that connects and sends nothing, or trickles its headers a byte at a time, holds its
//! connection (a socket, a task, a file descriptor) for ever, and enough of them exhaust the
//! process. Both services serve their routers through [`Server`] instead, which keeps what
//! `axum::serve` did (one task per connection, graceful shutdown) and adds:
//!
//! - a header timeout (hyper's `header_read_timeout`, with tokio's timer): the request head
//!   must arrive within it, counted from the connection's start and, on a kept-alive
//!   connection, from the previous answer, so it also bounds an idle kept-alive connection;
//! - a request timeout, from the request head to the answer's head ([`request`]), answered
//!   with the services' JSON error;
//! - an idle timeout for a connection on which nothing moves while no request is handled: a
//!   client that stopped reading its answer or sending its body ([`activity`]);
//! - a cap on connections served at once: at the cap the server stops accepting (new
//!   connections wait in the kernel's backlog) until one closes, as mini-redis does with a
//!   semaphore;
//! - on shutdown: stop accepting, let requests in flight finish, close the rest after a drain
//!   deadline.
//!
//! [`openapi`] serves each service's OpenAPI document and Swagger UI the same way.
//!
//! The settings are [`HttpArgs`] (flattened into each service's clap `Config`).
//!
//! HTTP/1.1 only: hyper's automatic HTTP/2 detection (h2c) has no timeout of its own on the
//! bytes it sniffs, browsers speak HTTP/2 only over TLS, and Prometheus and the services'
//! clients use HTTP/1.1 on plain connections, so h2c would be a second protocol to harden for
//! no client.

mod activity;
mod config;
pub mod openapi;
pub mod rechazo;
mod request;
mod stats;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::Router;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    HttpArgs, Limits, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT_MS,
};

pub use stats::Stats;

use activity::{Activity, Watched};
use stats::Closed;

/// What the server does to every answer of a connection: count the ones it gives itself, and
/// name the instance.
#[derive(Clone)]
pub(crate) struct Answering {
    pub(crate) stats: Stats,
    pub(crate) instance: Option<HeaderValue>,
}

/// The header naming the instance that answered (see [`Server::instance`]).
pub const X_INSTANCIA: axum::http::HeaderName = axum::http::HeaderName::from_static("x-instancia");

/// At the connection cap, one warning per this long at most: a flood must not flood the log.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(5);

/// After an accept error that is not about one connection (no file descriptor left, most
/// likely), the listener waits this long before trying again rather than spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The listener's backlog: connections the kernel completes and holds until the server accepts
/// them. std's and tokio's 128 overflow in a burst of a few hundred connections (measured: a
/// burst of 400 on loopback left a third of them half-open for seconds), and at the connection
/// cap this queue is where new clients wait. The kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: u32 = 1024;

/// Binds a listener on `addr` (`host:port`; a name is resolved, its first address that binds
/// is taken) with [`BACKLOG`], for [`Server::new`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std and tokio do: a restarted service can bind while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// A router bound to a listener, with the [`Limits`] it enforces.
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: Limits,
    slots: Arc<Semaphore>,
    /// One task per open connection.
    connections: TaskTracker,
    stats: Stats,
    /// `X-Instancia` on every answer, when set.
    instance: Option<HeaderValue>,
}

impl Server {
    pub fn new(listener: TcpListener, router: Router, limits: Limits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let connections = TaskTracker::new();
        Server {
            listener,
            router,
            limits,
            slots,
            stats: Stats::new(connections.clone()),
            connections,
            instance: None,
        }
    }

    /// Names this instance in an `X-Instancia` header on every answer, the server's own
    /// (timeouts) included, so a client behind a balancer can tell which instance served it.
    /// A name that is not a valid header value is ignored, with a warning.
    pub fn instance(mut self, name: &str) -> Self {
        match HeaderValue::from_str(name) {
            Ok(value) => self.instance = Some(value),
            Err(_) => tracing::warn!(name, "instance name unusable as X-Instancia: not sent"),
        }
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that counts the connections being served, for tests and metrics.
    pub fn connections(&self) -> Connections {
        Connections(self.connections.clone())
    }

    /// The server's own counters (timeouts, connections closed, the cap reached), to register
    /// in the service's metrics registry.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting (the listener is closed, so
    /// new connections are refused), lets requests in flight finish within the drain timeout,
    /// closes what is left, and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            router,
            limits,
            slots,
            connections,
            stats,
            instance,
        } = self;
        tracing::info!(
            header_timeout_ms = limits.header_timeout.as_millis(),
            request_timeout_ms = limits.request_timeout.as_millis(),
            idle_timeout_ms = limits.idle_timeout.as_millis(),
            max_connections = limits.max_connections,
            "http limits"
        );
        warn_if_fd_limit_is_low(limits.max_connections);
        // Cancelled when the drain deadline passes: closes the connections still open.
        let closing = CancellationToken::new();
        let mut last_cap_warning: Option<Instant> = None;
        loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                permit = slot(&slots, limits.max_connections, &stats, &mut last_cap_warning) => permit,
            };
            let stream = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        stats.accepted();
                        stream
                    }
                    Err(e) => {
                        if !is_connection_error(&e) {
                            tracing::error!(error = %e, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        }
                        continue;
                    }
                },
            };
            connections.spawn(serve_connection(
                stream,
                router.clone(),
                limits,
                shutdown.clone(),
                closing.clone(),
                Answering {
                    stats: stats.clone(),
                    instance: instance.clone(),
                },
                permit,
            ));
        }
        drop(listener);
        connections.close();
        if tokio::time::timeout(limits.drain_timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.len(),
                drain_timeout_ms = limits.drain_timeout.as_millis(),
                "requests still in flight at the drain deadline: closing their connections"
            );
            closing.cancel();
            connections.wait().await;
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled: [`Server::run`] in one call.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    Server::new(listener, router, limits).run(shutdown).await
}

/// Counts the connections a [`Server`] is serving.
#[derive(Clone)]
pub struct Connections(TaskTracker);

impl Connections {
    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.0.len()
    }
}

/// A place for one more connection, waiting for one to close when all are taken.
async fn slot(
    slots: &Arc<Semaphore>,
    max: usize,
    stats: &Stats,
    last_warning: &mut Option<Instant>,
) -> OwnedSemaphorePermit {
    if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        return permit;
    }
    stats.cap_reached();
    if last_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
        *last_warning = Some(Instant::now());
        tracing::warn!(
            max_connections = max,
            "connection cap reached: new connections wait until one closes (HTTP_MAX_CONNECTIONS)"
        );
    }
    Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

/// One connection, from its first byte to its close; `_permit` is its place under the cap.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    closing: CancellationToken,
    answering: Answering,
    _permit: OwnedSemaphorePermit,
) {
    let stats = answering.stats.clone();
    let activity = Activity::new();
    // The client's address, as axum's `ConnectInfo`, for handlers that log who asked.
    let peer = stream.peer_addr().ok().map(axum::extract::ConnectInfo);
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            request::handle(
                router.clone(),
                request,
                limits.request_timeout,
                Arc::clone(&activity),
                answering.clone(),
            )
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let stalled = activity.stalled(limits.idle_timeout);
    tokio::pin!(stalled);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                // Timeouts and clients that hang up end here: theirs, not ours to warn about.
                if let Err(e) = result {
                    if e.is_timeout() {
                        stats.closed(Closed::HeaderTimeout);
                    }
                    tracing::debug!(error = %e, "connection closed");
                }
                return;
            }
            _ = &mut stalled => {
                stats.closed(Closed::Idle);
                tracing::debug!(
                    idle_timeout_ms = limits.idle_timeout.as_millis(),
                    "connection idle: closed"
                );
                return;
            }
            _ = closing.cancelled() => return,
            // Finishes the request in hand, if any, then closes.
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Each connection is a file descriptor: a cap above the process's limit of open files means
/// accepts fail (EMFILE) before the cap is reached.
fn warn_if_fd_limit_is_low(max_connections: usize) {
    // Files the process needs besides its connections: the listener, Redis, the database, logs.
    const OWN_FILES: u64 = 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = max_connections as u64 + OWN_FILES;
    if limit.rlim_cur < wanted {
        tracing::warn!(
            max_connections,
            open_files_limit = limit.rlim_cur,
            "the open-file limit is below HTTP_MAX_CONNECTIONS plus the process's own files: \
             accepts will fail before the cap; raise the limit (ulimit -n) or lower the cap"
        );
    }
}

/// The credentials of `Authorization: Bearer <token>`, the scheme in any case (RFC 7235), the
/// token trimmed; `None` when there is no such header or it holds no token. Both services'
/// authentication read it so, each with its own rules for what the token must be.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The most characters of a client-supplied value (a URI, a method) put in a log line.
pub const MAX_LOGGED_CHARS: usize = 200;

/// `value` for a log line: at most [`MAX_LOGGED_CHARS`] characters, then a marker with its full
/// length in bytes, so a 60 kB URI makes a short line and still shows it was long.
pub fn shorten<T: fmt::Display + ?Sized>(value: &T) -> Shortened<'_, T> {
    Shortened(value)
}

/// What [`shorten`] returns: formats `T` through a cut-off writer, without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Shortened<'a, T: ?Sized>(&'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for Shortened<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cut = CutOff {
            out: f,
            chars: 0,
            bytes: 0,
            cut: false,
        };
        fmt::write(&mut cut, format_args!("{}", self.0))?;
        let (bytes, was_cut) = (cut.bytes, cut.cut);
        if was_cut {
            write!(f, "…[{bytes} bytes]")?;
        }
        Ok(())
    }
}

/// Passes on the first [`MAX_LOGGED_CHARS`] characters written to it and counts the rest.
struct CutOff<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    chars: usize,
    bytes: usize,
    cut: bool,
}

impl fmt::Write for CutOff<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes += s.len();
        if self.cut {
            return Ok(());
        }
        match s.char_indices().nth(MAX_LOGGED_CHARS - self.chars) {
            Some((at, _)) => {
                self.cut = true;
                self.chars = MAX_LOGGED_CHARS;
                self.out.write_str(&s[..at])
            }
            None => {
                self.chars += s.chars().count();
                self.out.write_str(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_whatever_the_scheme_s_case() {
        let with = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(bearer_token(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with("bEaReR  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with("Basic abc")), None);
        assert_eq!(bearer_token(&with("Bearer ")), None);
        assert_eq!(bearer_token(&axum::http::HeaderMap::new()), None);
    }

    #[test]
    fn long_text_is_cut_with_its_length() {
        assert_eq!(shorten("/inventario").to_string(), "/inventario");
        let uri: axum::http::Uri = format!("/inventario?q={}", "x".repeat(60_000))
            .parse()
            .unwrap();
        assert!(shorten(&uri).to_string().ends_with("…[60014 bytes]"));
        let exact = "a".repeat(MAX_LOGGED_CHARS);
        assert_eq!(shorten(&exact).to_string(), exact);
        let long = format!("/inventario?q={}", "x".repeat(60_000));
        let shown = shorten(&long).to_string();
        assert!(shown.starts_with("/inventario?q=xxx"), "{shown}");
        assert!(shown.ends_with("…[60014 bytes]"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            MAX_LOGGED_CHARS + "…[60014 bytes]".chars().count()
        );
        // Cut on a character, not inside one.
        let wide = "ñ".repeat(300);
        assert!(shorten(&wide).to_string().starts_with(&"ñ".repeat(200)));
    }
}
