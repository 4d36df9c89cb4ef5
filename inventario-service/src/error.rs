//! The one place where failures become HTTP answers: every error a handler or an extractor
//! can produce is an [`ApiError`], answered as `{"error": "<code>", "detalle": "<message>"}`.
//!
//! Bad input always maps to a 4xx. Only our own dependencies failing give a 5xx: 503 when
//! Redis (queue routes) or the database cannot be reached.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use shared::inventory::{StoreError, ValidacionError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body parsed but a value breaks a rule (empty name, negative stock, …).
    #[error("{0}")]
    Validacion(#[from] ValidacionError),
    #[error("no existe el producto {0}")]
    ProductoNoEncontrado(i64),
    /// The request could not be read: bad JSON, wrong types or content type, a body too
    /// large, a non-numeric id, a bad query string. Status and code come from the rejection.
    #[error("{detalle}")]
    Peticion {
        status: StatusCode,
        codigo: &'static str,
        detalle: String,
    },
    #[error("no existe la ruta {0}")]
    RutaNoEncontrada(String),
    #[error("el método {0} no está permitido en esta ruta")]
    MetodoNoPermitido(String),
    /// The request is well formed but the inventory's state refuses it.
    #[error("{0}")]
    Conflicto(String),
    /// Redis did not answer (in time): the queue routes cannot work now.
    #[error("la cola de tareas (Redis) no está disponible: {0}")]
    ColaNoDisponible(String),
    /// Sending a task failed or timed out after it may have reached Redis: it may still run.
    /// The answer names the task, so the client can follow it or retry with the same
    /// `Idempotency-Key` without the task taking effect twice.
    #[error("la cola de tareas (Redis) no está disponible: {detalle}; la tarea {tarea_id} puede haberse encolado: consulte /tareas/{tarea_id} o reintente con Idempotency-Key: {tarea_id}")]
    EnvioIncierto { tarea_id: String, detalle: String },
    /// The database failed; nothing the client did.
    #[error("la base de datos no está disponible")]
    BaseDeDatos(#[source] StoreError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validacion(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validacion"),
            ApiError::ProductoNoEncontrado(_) => (StatusCode::NOT_FOUND, "producto_no_encontrado"),
            ApiError::Peticion { status, codigo, .. } => (*status, codigo),
            ApiError::RutaNoEncontrada(_) => (StatusCode::NOT_FOUND, "ruta_no_encontrada"),
            ApiError::MetodoNoPermitido(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "metodo_no_permitido")
            }
            ApiError::Conflicto(_) => (StatusCode::CONFLICT, "conflicto"),
            ApiError::ColaNoDisponible(_) | ApiError::EnvioIncierto { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "cola_no_disponible")
            }
            ApiError::BaseDeDatos(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "base_de_datos_no_disponible",
            ),
        }
    }

    fn peticion(status: StatusCode, codigo: &'static str, detalle: String) -> Self {
        ApiError::Peticion {
            status,
            codigo,
            detalle,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, codigo) = self.status_and_code();
        if status.is_server_error() {
            // Logged once, here, with its cause; the client gets the short message.
            tracing::error!(error = ?self, "request failed");
        }
        let mut body = json!({"error": codigo, "detalle": self.to_string()});
        if let ApiError::EnvioIncierto { tarea_id, .. } = &self {
            body["tarea_id"] = json!(tarea_id);
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoEncontrado(id) => ApiError::ProductoNoEncontrado(id),
            e @ (StoreError::StockInsuficiente { .. } | StoreError::LimiteExcedido { .. }) => {
                ApiError::Conflicto(e.to_string())
            }
            other => ApiError::BaseDeDatos(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let codigo = match &r {
            JsonRejection::JsonSyntaxError(_) => "json_malformado",
            JsonRejection::JsonDataError(_) => "tipos_invalidos",
            JsonRejection::MissingJsonContentType(_) => "content_type_invalido",
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "cuerpo_demasiado_grande",
            _ => "cuerpo_ilegible",
        };
        ApiError::peticion(r.status(), codigo, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // Only a malformed id reaches here: unknown routes never match at all.
        ApiError::peticion(StatusCode::BAD_REQUEST, "id_invalido", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::peticion(
            StatusCode::BAD_REQUEST,
            "parametros_invalidos",
            r.body_text(),
        )
    }
}
