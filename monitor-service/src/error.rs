//! The one place where failures become HTTP answers: every error a handler or an extractor can
//! produce is an [`AppError`], answered with its status and `{"error": "<code>", "detalle":
//! "<message>"}`, so every route fails the same way and a new error cannot forget its status.
//!
//! Only the monitor's own troubles are 5xx: the metrics failing to render (500), the
//! dashboard's stream cap being reached (503, with `Retry-After`), or Redis not answering a
//! route that reads it (503).

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
    /// No task can have this id (`/monitor/tareas/{id}`).
    #[error("{0}")]
    IdInvalido(String),
    #[error("ni el backend de resultados ni los eventos conocen la tarea {0}")]
    TareaDesconocida(String),
    #[error("no hay en la cuarentena una entrada con id {0}")]
    EntradaDesconocida(String),
    #[error("la entrada {0} no dice de qué lista salió su mensaje; se deja donde está")]
    EntradaIlegible(String),
    /// Requeueing writes to the queue: only with `MONITOR_TOKEN` set.
    #[error("reencolar escribe en la cola: solo se permite con MONITOR_TOKEN configurado")]
    ReencoladoDeshabilitado,
    /// Revoking tells every worker to drop a task: only with `MONITOR_TOKEN` set.
    #[error("revocar actúa sobre los workers: solo se permite con MONITOR_TOKEN configurado")]
    RevocacionDeshabilitada,
    /// The body of a write is not the JSON it takes.
    #[error("el cuerpo no es el JSON esperado: {0}")]
    CuerpoInvalido(String),
    #[error("la señal {0:?} no se admite; use SIGTERM, SIGKILL, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 o SIGABRT")]
    SenalInvalida(String),
    #[error("Redis no está disponible: {0}")]
    Redis(String),
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
            AppError::IdInvalido(_) => (StatusCode::BAD_REQUEST, "id_invalido"),
            AppError::TareaDesconocida(_) => (StatusCode::NOT_FOUND, "tarea_desconocida"),
            AppError::EntradaDesconocida(_) => (StatusCode::NOT_FOUND, "entrada_desconocida"),
            AppError::EntradaIlegible(_) => (StatusCode::CONFLICT, "entrada_ilegible"),
            AppError::ReencoladoDeshabilitado => {
                (StatusCode::FORBIDDEN, "reencolado_deshabilitado")
            }
            AppError::RevocacionDeshabilitada => {
                (StatusCode::FORBIDDEN, "revocacion_deshabilitada")
            }
            AppError::CuerpoInvalido(_) => (StatusCode::BAD_REQUEST, "cuerpo_invalido"),
            AppError::SenalInvalida(_) => (StatusCode::BAD_REQUEST, "senal_invalida"),
            AppError::Redis(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis_no_disponible"),
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
        AppError::BadQuery(http_server::rechazo::query(&r))
    }
}
