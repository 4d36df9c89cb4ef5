//! inventario-service: the inventory REST API.
//!
//! - [`config`]: settings (flags with environment fallbacks) and the `token` subcommand.
//! - [`auth`]: who may write: the bearer tokens (HS256 JWTs) every state-changing route needs.
//! - [`state`]: what handlers share (store, queue client, metrics).
//! - [`routes`]: the handlers, one module per resource.
//! - [`extract`] and [`error`]: request parsing at the edge, and the one mapping from every
//!   failure to a JSON error with its status.
//! - [`metrics`]: Prometheus counters and latency by route.
//!
//! [`app`] builds the whole router from a state, so tests drive it without a socket.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;
pub mod state;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::get;
use axum::Router;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

pub use config::Config;
pub use state::AppState;

/// Largest request body accepted; larger ones get 413 before anything is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The service's router with every route and layer.
pub fn app(state: AppState) -> Router {
    use routes::{inventario, ops, tareas};
    Router::new()
        .route(
            "/inventario",
            get(inventario::listar).post(inventario::crear),
        )
        .route(
            "/inventario/{id}",
            get(inventario::obtener)
                .put(inventario::reemplazar)
                .delete(inventario::borrar),
        )
        .route(
            "/inventario/{id}/movimientos",
            axum::routing::post(inventario::mover),
        )
        .route("/tareas/{id}", get(tareas::consultar))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(metrics::render))
        .fallback(ops::ruta_no_encontrada)
        .method_not_allowed_fallback(ops::metodo_no_permitido)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str);
                    // `sub` is filled in by a write's token (auth::Autor): who changed what.
                    // The method and URI are the client's own text: shortened, so a 60 kB URI
                    // does not make a 60 kB log line.
                    tracing::info_span!(
                        "http",
                        method = %http_server::shorten(request.method()),
                        uri = %http_server::shorten(request.uri()),
                        route,
                        sub = tracing::field::Empty,
                    )
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                ),
        )
        .with_state(state)
}
