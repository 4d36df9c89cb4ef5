//! `/monitor`: what the watch knows, for a client that asks rather than listens.
//!
//! - `GET /monitor`: a live ping of every target right now (bounded by the timeout; sent after
//!   the request came, shared with the requests that came with it) with the loop's summary; 200
//!   when every target answered, 503 otherwise.
//! - `GET /monitor/historial?limite=n`: recent pings and state changes, newest first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::detector::Estado;
use crate::extract::Query;
use crate::monitor::Monitor;
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_MONITOR};

/// `GET /monitor`. The contract's fields describe the whole watch: `estado` is the worst
/// target's state, `latencia_ms` the slowest live echo, `disponibilidad` the lowest;
/// `respuesta` and `ultimo_ping` are the first target's. With one target (the default) they
/// are simply its. `diagnostico` is the first failing target's diagnosis (whether its workers
/// answer control pings but do not consume, or none answers; `null` when none is failing), and
/// each of `workers` carries, beside its heartbeat fields, its own answer to the control ping.
#[utoipa::path(
    get,
    path = "/monitor",
    tag = TAG_MONITOR,
    summary = "Ping en vivo a cada objetivo, con el resumen del bucle",
    responses(
        (status = 200, description = "Todos los objetivos respondieron.", body = Object),
        (status = 401, response = NoAutenticado),
        (status = 503, description = "Algún objetivo no respondió a tiempo (el cuerpo es el mismo).", body = Object),
    ),
)]
pub async fn ahora(State(monitor): State<Monitor>) -> (StatusCode, Json<Value>) {
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
        "diagnostico": summaries.iter().find_map(|s| s.diagnostico),
        "objetivos": objetivos,
        "workers": monitor.workers_with_control(),
    });
    let status = if all_answered {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// The query of `GET /monitor/historial`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistorialQuery {
    /// Entries of each kind, newest first: 100 by default, between 1 and 10 000.
    pub limite: Option<usize>,
}

/// `GET /monitor/historial`.
#[utoipa::path(
    get,
    path = "/monitor/historial",
    tag = TAG_MONITOR,
    summary = "Pings y cambios de estado recientes, el más nuevo primero",
    params(HistorialQuery),
    responses(
        (status = 200, description = "El historial.", body = Object),
        (status = 400, description = "`consulta_invalida`: `limite` no es un número.", body = ErrorBody),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn historial(
    State(monitor): State<Monitor>,
    Query(query): Query<HistorialQuery>,
) -> Json<Value> {
    let limite = query.limite.unwrap_or(100).clamp(1, 10_000);
    let (pings, cambios) = monitor.history().recent(limite);
    Json(json!({
        "estados": monitor.summaries().iter().map(|s| json!({"servicio": s.servicio, "estado": s.estado})).collect::<Vec<_>>(),
        "pings": pings,
        "cambios": cambios,
    }))
}
