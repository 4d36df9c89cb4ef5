//! The HTTP API on port 3002. `app()` builds the router, so tests drive it with
//! `tower::ServiceExt::oneshot` and `main` only binds and serves.
//!
//! - `GET /monitor`: a live ping of every target right now (bounded by the timeout; sent after
//!   the request came, shared with the requests that came with it) with the loop's summary; 200
//!   when every target answered, 503 otherwise.
//! - `GET /monitor/historial?limite=n`: recent pings and state changes, newest first.
//! - `GET /metrics`: Prometheus text. `GET /health`: the process answers.
//! - `GET /` (and its two assets) and `GET /monitor/stream`: the web dashboard and its
//!   server-sent events, in [`crate::dashboard`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dashboard;
use crate::detector::Estado;
use crate::feed::FeedError;
use crate::monitor::Monitor;

pub fn app(monitor: Monitor) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/monitor", get(monitor_now))
        .route("/monitor/historial", get(historial))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.css", get(dashboard::css))
        .route("/assets/dashboard.js", get(dashboard::js))
        .route("/monitor/stream", get(dashboard::stream))
        .fallback(|uri: axum::http::Uri| async move { AppError::NotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            AppError::MethodNotAllowed(method.to_string())
        })
        .with_state(monitor)
}

/// Every error of the API, mapped to a status and `{"error", "detalle"}` in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
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
        let retry_after = matches!(self, AppError::Feed(_)).then_some([(header::RETRY_AFTER, "5")]);
        (
            status,
            retry_after,
            Json(json!({"error": code, "detalle": self.to_string()})),
        )
            .into_response()
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The contract's fields describe the whole watch: `estado` is the worst target's state,
/// `latencia_ms` the slowest live echo, `disponibilidad` the lowest; `respuesta` and
/// `ultimo_ping` are the first target's. With one target (the default) they are simply its.
async fn monitor_now(State(monitor): State<Monitor>) -> (StatusCode, Json<Value>) {
    let live = monitor.ping_now().await;
    let live = live.as_slice();
    let summaries = monitor.summaries();
    let all_answered = live.iter().all(|p| p.is_ok());
    let estado = summaries
        .iter()
        .map(|s| s.estado)
        .max()
        .unwrap_or(Estado::Ok);
    let latencia_ms = live.iter().map(|p| p.latencia_ms).fold(0.0, f64::max);
    let first = live.first();
    let disponibilidad = summaries
        .iter()
        .zip(live)
        .map(|(s, p)| {
            s.disponibilidad
                .unwrap_or(if p.is_ok() { 100.0 } else { 0.0 })
        })
        .fold(100.0, f64::min);
    let objetivos: Vec<Value> = summaries
        .iter()
        .zip(live)
        .map(|(s, p)| {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert(
                    "ping".into(),
                    serde_json::to_value(p).unwrap_or(Value::Null),
                );
            }
            v
        })
        .collect();
    let body = json!({
        "estado": estado,
        "latencia_ms": latencia_ms,
        "respuesta": first.and_then(|p| p.respuesta()),
        "disponibilidad": disponibilidad,
        "ultimo_ping": first.map(|p| p.enviado.to_rfc3339_opts(SecondsFormat::Millis, true)),
        "servicio": first.map(|p| p.servicio.clone()),
        "objetivos": objetivos,
        "workers": monitor.workers(),
    });
    let status = if all_answered {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[derive(Debug, Deserialize)]
struct HistorialQuery {
    limite: Option<usize>,
}

async fn historial(
    State(monitor): State<Monitor>,
    query: Result<Query<HistorialQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(query) = query.map_err(|e| AppError::BadQuery(e.body_text()))?;
    let limite = query.limite.unwrap_or(100).clamp(1, 10_000);
    let (pings, cambios) = monitor.history().recent(limite);
    Ok(Json(json!({
        "estados": monitor.summaries().iter().map(|s| json!({"servicio": s.servicio, "estado": s.estado})).collect::<Vec<_>>(),
        "pings": pings,
        "cambios": cambios,
    })))
}

async fn metrics(State(monitor): State<Monitor>) -> Result<Response, AppError> {
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
