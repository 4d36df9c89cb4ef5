//! The one place where failures become HTTP answers: every error a handler or an extractor
//! can produce is an [`ApiError`], answered as `{"error": "<code>", "detalle": "<message>"}`.
//!
//! Bad input always maps to a 4xx; a write without a valid token, to a 401 with
//! `WWW-Authenticate: Bearer`; a write made from a stale read of a producto, to a 412 or 428
//! that carries the producto's current `ETag`. Only our own dependencies failing give a 5xx:
//! 503 when Redis (queue routes) or the database cannot be reached. A 5xx is logged with its cause, but
//! an outage fails every request of a kind the same way: per error code, one line every
//! [`LOG_EVERY`], which counts the ones not logged since.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use inventario::{StoreError, ValidacionError};
use serde_json::json;

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
    /// `If-Match` names a version the producto has moved past (see [`StoreError::VersionObsoleta`]).
    /// `version` is the current one, sent back as the `ETag`.
    #[error("{detalle}")]
    VersionObsoleta { detalle: String, version: i64 },
    /// A `PUT` without `If-Match` would change the stock (see
    /// [`StoreError::CantidadSinVersion`]): RFC 6585's 428, the status for "this change must
    /// be conditional", since the stock it would set may undo a movement it never saw.
    #[error("{detalle}")]
    IfMatchRequerido { detalle: String, version: i64 },
    /// An `Idempotency-Key` first used for another movement. 422, as the IETF draft on the
    /// header asks for a key reused with a different payload (draft-ietf-httpapi-idempotency-
    /// key-header, "Error Handling"): the request itself is wrong and retrying it as is can
    /// never succeed, while that draft keeps 409 for a retry that finds the first request
    /// still in progress, which is not an error here (the retry is sent and applied once).
    #[error("{0}")]
    ClaveReusada(String),
    /// `GET /tareas/{id}` for an id this service never issued and with no stored result.
    #[error("no hay tarea {0}: este servicio no la emitió (o hace más de un día) y no tiene resultado guardado")]
    TareaDesconocida(String),
    /// Redis did not answer (in time): the queue routes cannot work now.
    #[error("la cola de tareas (Redis) no está disponible: {0}")]
    ColaNoDisponible(String),
    /// Redis is full (`maxmemory` under `noeviction`) and refused the send: nothing was queued,
    /// and the same request can be sent again once memory is freed.
    #[error("la cola de tareas (Redis) está llena (maxmemory) y rechazó la tarea: no se encoló nada; reintente cuando Redis tenga memoria libre")]
    ColaLlena,
    /// Sending a task failed or timed out after it may have reached Redis: it may still run.
    /// The answer names the task, so the client can follow it or retry with the same
    /// `Idempotency-Key` without the task taking effect twice.
    #[error("la cola de tareas (Redis) no está disponible: {detalle}; la tarea {tarea_id} puede haberse encolado: consulte /tareas/{tarea_id} o reintente con Idempotency-Key: {tarea_id}")]
    EnvioIncierto { tarea_id: String, detalle: String },
    /// The database failed; nothing the client did.
    #[error("la base de datos no está disponible")]
    BaseDeDatos(#[source] StoreError),
    /// A write without a valid token, or with authentication not configured (see
    /// [`crate::auth`]): 401 with `WWW-Authenticate: Bearer`.
    #[error("{detalle}")]
    NoAutenticado { rechazo: Rechazo, detalle: String },
}

/// Why a write was not authenticated: each is its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rechazo {
    /// No `Authorization: Bearer <token>` header.
    SinToken,
    /// A token was given and refused (malformed, wrong algorithm or signature, expired, ...).
    TokenInvalido,
    /// The service has no secret: no token can be checked, so no write is taken.
    NoConfigurada,
}

impl Rechazo {
    pub fn codigo(self) -> &'static str {
        match self {
            Rechazo::SinToken => "no_autenticado",
            Rechazo::TokenInvalido => "token_invalido",
            Rechazo::NoConfigurada => "autenticacion_no_configurada",
        }
    }
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
            ApiError::VersionObsoleta { .. } => {
                (StatusCode::PRECONDITION_FAILED, "version_obsoleta")
            }
            ApiError::IfMatchRequerido { .. } => {
                (StatusCode::PRECONDITION_REQUIRED, "if_match_requerido")
            }
            ApiError::ClaveReusada(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reusada")
            }
            ApiError::TareaDesconocida(_) => (StatusCode::NOT_FOUND, "tarea_desconocida"),
            ApiError::ColaNoDisponible(_) | ApiError::EnvioIncierto { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "cola_no_disponible")
            }
            ApiError::ColaLlena => (StatusCode::SERVICE_UNAVAILABLE, "cola_llena"),
            ApiError::BaseDeDatos(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "base_de_datos_no_disponible",
            ),
            ApiError::NoAutenticado { rechazo, .. } => (StatusCode::UNAUTHORIZED, rechazo.codigo()),
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
            // Logged here, with its cause; the client gets the short message.
            let now = Instant::now();
            let window = LOG_WINDOWS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(codigo)
                .or_default()
                .admit(now);
            if let Some(suppressed) = window {
                tracing::error!(error = ?self, suppressed, "request failed");
            }
        }
        let mut body = json!({"error": codigo, "detalle": self.to_string()});
        if let ApiError::EnvioIncierto { tarea_id, .. } = &self {
            body["tarea_id"] = json!(tarea_id);
        }
        let mut response = (status, Json(body)).into_response();
        if let ApiError::VersionObsoleta { version, .. }
        | ApiError::IfMatchRequerido { version, .. } = &self
        {
            // The version to retry from, as `GET /inventario/{id}` would give it.
            response
                .headers_mut()
                .insert(header::ETAG, crate::routes::inventario::etag(*version));
        }
        if let ApiError::NoAutenticado { rechazo, .. } = &self {
            // RFC 6750: the scheme to use, and whether the token given was the problem.
            let challenge = if *rechazo == Rechazo::TokenInvalido {
                r#"Bearer realm="inventario", error="invalid_token""#
            } else {
                r#"Bearer realm="inventario""#
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The body of every error answer, as the API document describes it ([`ApiError`] builds it).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"error": "producto_no_encontrado", "detalle": "no existe el producto 42"}))]
#[allow(dead_code)] // describes the body `into_response` writes
#[schema(description = "El cuerpo de toda respuesta de error.")]
pub struct ErrorBody {
    /// Código estable del error, para programas (`validacion`, `producto_no_encontrado`, …).
    error: String,
    /// Explicación en español, para personas.
    detalle: String,
    /// Solo en el 503 `cola_no_disponible` de un movimiento cuyo envío quedó en duda: la tarea
    /// que puede haberse encolado (síganla en `/tareas/{id}` o reintenten con esa
    /// `Idempotency-Key`).
    #[schema(nullable = false)]
    tarea_id: Option<String>,
}

/// The most one error code is logged: during an outage, one line per this many seconds.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

static LOG_WINDOWS: std::sync::LazyLock<Mutex<HashMap<&'static str, LogWindow>>> =
    std::sync::LazyLock::new(Mutex::default);

/// When one error code was last logged, and how many of it went unlogged since.
#[derive(Debug, Default)]
struct LogWindow {
    last: Option<Instant>,
    unlogged: u64,
}

impl LogWindow {
    /// `Some(count unlogged before it)` if a failure at `now` is to be logged.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoEncontrado(id) => ApiError::ProductoNoEncontrado(id),
            e @ (StoreError::StockInsuficiente { .. } | StoreError::LimiteExcedido { .. }) => {
                ApiError::Conflicto(e.to_string())
            }
            StoreError::VersionObsoleta { producto_id, actual } => ApiError::VersionObsoleta {
                detalle: format!(
                    "{e} (ETag \"{actual}\"); léalo de nuevo (GET /inventario/{producto_id}) y \
                     repita el cambio sobre lo leído"
                ),
                version: actual,
            },
            StoreError::CantidadSinVersion {
                producto_id,
                version,
                ..
            } => ApiError::IfMatchRequerido {
                detalle: format!(
                    "{e}: el stock cambia con movimientos (POST /inventario/{producto_id}/movimientos), \
                     o con If-Match: \"{version}\" (la versión leída) para fijarlo a mano"
                ),
                version,
            },
            StoreError::ClaveReusada { ref tarea_id } => ApiError::ClaveReusada(format!(
                "la Idempotency-Key {tarea_id} ya se usó: {e}; el primero sigue en pie: use una \
                 clave nueva para un movimiento distinto"
            )),
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
        ApiError::peticion(r.status(), codigo, http_server::rechazo::json(&r))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        // Only a malformed id reaches here: unknown routes never match at all.
        ApiError::peticion(
            StatusCode::BAD_REQUEST,
            "id_invalido",
            http_server::rechazo::path(&r),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::peticion(
            StatusCode::BAD_REQUEST,
            "parametros_invalidos",
            http_server::rechazo::query(&r),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{LogWindow, LOG_EVERY};
    use std::time::{Duration, Instant};

    #[test]
    fn an_outage_logs_one_line_per_window_with_the_count_skipped() {
        let mut w = LogWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.admit(t0), Some(0), "the first failure is logged");
        let within = (1..=99).filter_map(|i| w.admit(t0 + Duration::from_millis(i * 40)));
        assert_eq!(
            within.count(),
            0,
            "the rest of the window is counted, not logged"
        );
        assert_eq!(
            w.admit(t0 + LOG_EVERY),
            Some(99),
            "the next line says how many"
        );
        assert_eq!(w.admit(t0 + LOG_EVERY * 3), Some(0));
    }
}
