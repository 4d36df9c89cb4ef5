//! The HTTP routes, one module per resource, so each handler sits with the types it answers
//! with: the watch itself (`monitor`: `/monitor`, `/monitor/historial`), the web dashboard
//! (`dashboard`: the page, its assets and `/monitor/stream`), and operations (`ops`: health,
//! metrics, and the JSON answers for requests no route takes). [`crate::app`] puts them
//! together.

pub mod colas;
pub mod cuarentena;
pub mod dashboard;
pub mod monitor;
pub mod openapi;
pub mod ops;
pub mod tareas;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Extension;

use crate::error::AppError;
use crate::monitor::Monitor;

/// How long Redis may take to answer a route before it says Redis is unavailable.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A route's Redis call, bounded by [`REDIS_TIMEOUT`]: a failure or a timeout is the 503
/// `redis_no_disponible`.
pub(crate) async fn redis<T>(call: impl Future<Output = shared::Result<T>>) -> Result<T, AppError> {
    match tokio::time::timeout(REDIS_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(error)) => Err(AppError::Redis(error.to_string())),
        Err(_) => Err(AppError::Redis("Redis no respondió a tiempo".into())),
    }
}

/// Whether the monitor's writes (requeue, revoke) are allowed: only with `MONITOR_TOKEN`
/// configured, so that the auth layer already demanded it of this request.
pub(crate) fn writes_allowed(monitor: &Monitor) -> bool {
    monitor.config().token().is_some()
}

/// Who asked, for a write's log line: the client's address as the server saw it.
pub(crate) fn who(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> String {
    peer.map_or_else(
        || "unknown".to_owned(),
        |Extension(ConnectInfo(a))| a.to_string(),
    )
}
