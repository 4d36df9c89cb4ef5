//! Operations: `GET /health` (the process answers), `GET /ready` (its dependencies answer),
//! and the JSON answers for requests no route takes.

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::json;

use crate::error::ApiError;
use crate::routes::openapi::TAG_OPERACIONES;
use crate::state::AppState;

/// The body of `GET /health`, as the API document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(description = "El proceso responde.")]
pub struct Salud {
    /// Siempre `ok`.
    #[schema(example = "ok")]
    status: String,
}

/// The body of `GET /ready`, as the API document describes it (`ready` builds it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(description = "Si la base de datos y Redis responden.")]
pub struct Disponibilidad {
    /// `ok`, o `error: <causa>`.
    #[schema(example = "ok")]
    base_de_datos: String,
    /// `ok`, o `error: <causa>`.
    #[schema(example = "ok")]
    redis: String,
    /// `listo`, solo con 200.
    #[schema(nullable = false, example = "listo")]
    estado: Option<String>,
    /// `no_listo`, solo con 503.
    #[schema(nullable = false)]
    error: Option<String>,
    /// Qué no responde, solo con 503.
    #[schema(nullable = false)]
    detalle: Option<String>,
}

/// `GET /health`.
#[utoipa::path(
    get,
    path = "/health",
    tag = TAG_OPERACIONES,
    summary = "El proceso responde",
    responses((status = 200, description = "Vivo.", body = Salud)),
)]
pub async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when both the database and Redis answer (each within the Redis timeout); 503 with
/// what is wrong otherwise. Both are checked at once, so a dead Redis costs one timeout.
#[utoipa::path(
    get,
    path = "/ready",
    tag = TAG_OPERACIONES,
    summary = "La base de datos y Redis responden",
    responses(
        (status = 200, description = "Listo.", body = Disponibilidad),
        (status = 503, description = "`no_listo`: alguno no responde (el cuerpo dice cuál).", body = Disponibilidad),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let limit = state.redis_timeout;
    let db = async {
        match tokio::time::timeout(limit, state.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("sin respuesta en {} ms", limit.as_millis())),
        }
    };
    let redis = async {
        super::con_redis(limit, state.redis.ping())
            .await
            .map_err(|e| e.to_string())
    };
    let (db, redis) = tokio::join!(db, redis);
    let mut body = json!({"base_de_datos": describe(&db), "redis": describe(&redis)});
    if db.is_ok() && redis.is_ok() {
        body["estado"] = json!("listo");
        return (StatusCode::OK, axum::Json(body));
    }
    let caidos: Vec<&str> = [("base de datos", &db), ("redis", &redis)]
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name)
        .collect();
    tracing::warn!(caidos = ?caidos, "not ready");
    body["error"] = json!("no_listo");
    body["detalle"] = json!(format!("no responde: {}", caidos.join(", ")));
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
}

fn describe(check: &Result<(), String>) -> String {
    match check {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TAG_OPERACIONES,
    summary = "Métricas de Prometheus",
    responses((status = 200, description = "Formato de texto de Prometheus 0.0.4.", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
pub async fn metrics(state: State<crate::metrics::Metrics>) -> impl IntoResponse {
    crate::metrics::render(state).await
}

pub async fn ruta_no_encontrada(uri: Uri) -> ApiError {
    ApiError::RutaNoEncontrada(uri.path().to_owned())
}

pub async fn metodo_no_permitido(method: Method) -> ApiError {
    ApiError::MetodoNoPermitido(method.to_string())
}
