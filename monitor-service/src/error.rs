//! The one place where failures become HTTP answers: every error a handler or an extractor can
//! produce is an [`AppError`], answered with its status and `{"error": "<code>", "detalle":
//! "<message>"}`, so every route fails the same way and a new error cannot forget its status.
//!
//! Only the monitor's own troubles are 5xx: the metrics failing to render (500), or the
//! dashboard's stream cap being reached (503, with `Retry-After`).

use axum::extract::rejection::QueryRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::feed::FeedError;

/// Every error of the API.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The query string could not be read (`/monitor/historial?limite=x`).
    #[error("{0}")]
    BadQuery(String),
    #[error("no existe la ruta {0}")]
    NotFound(String),
    #[error("el método {0} no está permitido en esta ruta")]
    MethodNotAllowed(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Feed(#[from] FeedError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::BadQuery(_) => (StatusCode::BAD_REQUEST, "consulta_invalida"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "ruta_no_encontrada"),
            AppError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "metodo_no_permitido")
            }
            AppError::Metrics(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metricas"),
            AppError::Feed(FeedError::TooManyClients(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "demasiados_clientes")
            }
        };
        // A full dashboard frees up when a page closes: the client may try again shortly.
        let retry_after = matches!(self, AppError::Feed(_)).then_some([(header::RETRY_AFTER, "5")]);
        (
            status,
            retry_after,
            Json(json!({"error": code, "detalle": self.to_string()})),
        )
            .into_response()
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        AppError::BadQuery(r.body_text())
    }
}
