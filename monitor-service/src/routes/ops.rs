//! Operations: `GET /health` (the process answers), `GET /metrics` (Prometheus text), and the
//! JSON answers for requests no route takes. What a load balancer or a scraper asks, apart
//! from what an operator reads.

use axum::extract::State;
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::monitor::Monitor;
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_OPERACIONES};

/// `GET /health`.
#[utoipa::path(
    get,
    path = "/health",
    tag = TAG_OPERACIONES,
    summary = "El proceso responde",
    description = "Abierta siempre, también con MONITOR_TOKEN: la usan las comprobaciones de vida.",
    security(()),
    responses((status = 200, description = "El proceso está vivo.", body = Salud)),
)]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TAG_OPERACIONES,
    summary = "Métricas de Prometheus",
    responses(
        (status = 200, description = "Formato de texto de Prometheus 0.0.4.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, response = NoAutenticado),
        (status = 500, description = "`metricas`: no se pudieron generar.", body = ErrorBody),
    ),
)]
pub async fn metrics(State(monitor): State<Monitor>) -> Result<Response, AppError> {
    monitor.workers(); // refreshes the live-workers gauge
    let text = monitor.metrics().render()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The body of `GET /health`.
#[derive(utoipa::ToSchema)]
#[schema(description = "El proceso responde.")]
#[allow(dead_code)] // describes the `json!` answer
pub struct Salud {
    /// Siempre `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// Any path no route takes.
pub async fn ruta_no_encontrada(uri: Uri) -> AppError {
    AppError::NotFound(uri.path().to_owned())
}

/// A known path asked for with a method it does not take.
pub async fn metodo_no_permitido(method: Method) -> AppError {
    AppError::MethodNotAllowed(method.to_string())
}
