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
//! [`app`] builds the whole router from a state, so tests drive it without a socket. Its
//! routes come from [`api`], where each handler is registered with the path and method of its
//! own `#[utoipa::path]`: the OpenAPI document served at `/openapi.json` (and browsed at
//! `/docs/`) lists exactly the routes the service answers.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;
pub mod state;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::{Extension, Router};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use config::Config;
pub use state::AppState;

/// Largest request body accepted; larger ones get 413 before anything is parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The service's router with every route and layer.
pub fn app(state: AppState) -> Router {
    let (router, doc) = api().split_for_parts();
    router
        .fallback(routes::ops::ruta_no_encontrada)
        .method_not_allowed_fallback(routes::ops::metodo_no_permitido)
        .layer(Extension(http_server::openapi::Document::new(&doc)))
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

/// Every route with its documentation: `routes!` takes each path and method from the
/// handler's `#[utoipa::path]`, so what is served and what is documented are one list.
pub fn api() -> OpenApiRouter<AppState> {
    use routes::{inventario, openapi, ops, tareas};
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(inventario::listar, inventario::crear))
        .routes(routes!(
            inventario::obtener,
            inventario::reemplazar,
            inventario::borrar
        ))
        .routes(routes!(inventario::mover))
        .routes(routes!(tareas::consultar))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .merge(openapi::routes())
}

/// The OpenAPI document [`app`] serves at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}
