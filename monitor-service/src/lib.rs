//! # monitor-service: is the inventory worker alive, and how fast does it answer?
//!
//! A ping-echo failure detector with heartbeats as a second signal, in the order data flows:
//!
//! - [`config`]: the settings (flags with environment fallbacks).
//! - [`targets`]: what is watched: `name:queue:task`, one or several.
//! - [`ping`]: one ping-echo through Redis, timed with `Instant`, and its log line; a ping
//!   leaves nothing behind (its result is deleted once read, a ping unanswered in time is
//!   withdrawn from its queue, a late result deleted when it comes).
//! - [`detector`]: the failure detector of one target, a pure state machine: INICIANDO (until
//!   the first answer or the start-up grace), OK / DEGRADADO / CAIDO.
//! - [`change`]: a state change as published (the record and its log line), shared by the
//!   monitor that makes it and the feed that keeps it.
//! - [`monitor`]: the ping loops that feed the detectors, the heartbeat table, and where each
//!   ping and change goes; [`live`]: the live pings of `GET /monitor`, shared by the requests
//!   that come together.
//! - [`control_ping`]: each live worker asked directly through Celery's remote control
//!   (`inspect ping`): its own answer and latency, whether it consumes its queue, and from that
//!   why a target's task pings fail.
//! - [`history`]: recent pings and changes in memory, in a Redis stream, in a file.
//! - [`metrics`]: the Prometheus metrics.
//! - [`queues`]: the queue sampler: depths, the oldest message's age, unacked, parked and
//!   quarantined messages, workers and throughput, for `/metrics` and `GET /monitor/colas`.
//! - [`tasks`]: task events counted under celery-exporter's names, and the recent tasks.
//! - [`feed`]: the last hour of pings and the live events, bounded, for the dashboard.
//! - The HTTP API on port 3002: [`routes`](mod@routes), the handlers, one module per resource (`/monitor`,
//!   the queues, tasks, the quarantine, the dashboard and its pages, operations, the OpenAPI
//!   document); [`extract`] and [`error`], request parsing at
//!   the edge and the one mapping from every failure to a JSON error with its status;
//!   [`auth`], the optional `MONITOR_TOKEN` every route but `/health` then needs.
//! - [`availability`]: the arithmetic of the `availability-check` tool.
//!
//! Imports run one way, from the HTTP side down: [`routes`](mod@routes) use the [`monitor`] and its
//! records; the monitor uses what it feeds ([`history`], [`metrics`], [`feed`]) and the
//! [`control_ping`] loop it starts (which feeds the metrics too); those take only the records
//! themselves ([`ping`]'s, the [`detector`]'s, [`change`]'s). No module imports one that
//! imports it back.
//!
//! [`app`] builds the whole router from a [`Monitor`], so tests drive it without a socket and
//! `main` only binds and serves.

pub mod auth;
pub mod availability;
pub mod change;
pub mod config;
pub mod control_ping;
pub mod detector;
pub mod error;
pub mod extract;
pub mod feed;
pub mod history;
pub mod live;
pub mod metrics;
pub mod monitor;
pub mod ping;
pub mod queues;
pub mod routes;
pub mod targets;
pub mod tasks;

use axum::{Extension, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use change::StateChange;
pub use config::Config;
pub use detector::Estado;
pub use monitor::Monitor;

/// The service's router with every route, behind `MONITOR_TOKEN` when it is set.
pub fn app(monitor: Monitor) -> Router {
    let access = monitor.config().token().and_then(auth::Access::new);
    let (router, doc) = api().split_for_parts();
    router
        .fallback(routes::ops::ruta_no_encontrada)
        .method_not_allowed_fallback(routes::ops::metodo_no_permitido)
        .layer(Extension(http_server::openapi::Document::new(&doc)))
        .layer(axum::middleware::from_fn_with_state(access, auth::require))
        .with_state(monitor)
}

/// Every route with its documentation: `routes!` takes each path and method from the
/// handler's `#[utoipa::path]`, so what is served and what is documented are one list.
pub fn api() -> OpenApiRouter<Monitor> {
    use routes::{colas, cuarentena, dashboard, monitor, openapi, ops, tareas};
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(monitor::ahora))
        .routes(routes!(monitor::historial))
        .routes(routes!(colas::colas))
        .routes(routes!(tareas::consultar))
        .routes(routes!(tareas::revocar))
        .routes(routes!(cuarentena::listar))
        .routes(routes!(cuarentena::reencolar))
        .routes(routes!(ops::metrics))
        .routes(routes!(dashboard::page))
        .routes(routes!(dashboard::css))
        .routes(routes!(dashboard::js))
        .routes(routes!(dashboard::stream))
        .routes(routes!(dashboard::tarea))
        .routes(routes!(dashboard::cuarentena))
        .routes(routes!(dashboard::paginas_js))
        .merge(openapi::routes())
}

/// The OpenAPI document [`app`] serves at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}
