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

/// `GET /health`.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics`.
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

/// Any path no route takes.
pub async fn ruta_no_encontrada(uri: Uri) -> AppError {
    AppError::NotFound(uri.path().to_owned())
}

/// A known path asked for with a method it does not take.
pub async fn metodo_no_permitido(method: Method) -> AppError {
    AppError::MethodNotAllowed(method.to_string())
}
