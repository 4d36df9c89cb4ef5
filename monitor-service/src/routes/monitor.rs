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
        (status = 200, description = "Todos los objetivos respondieron.", body = EstadoMonitor),
        (status = 401, response = NoAutenticado),
        (status = 503, description = "Algún objetivo no respondió a tiempo (el cuerpo es el mismo).", body = EstadoMonitor),
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

/// A target's state, as the API document names it (the detector's [`Estado`]).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "UPPERCASE")]
#[allow(dead_code)]
#[schema(description = "Estado de un objetivo según el detector.")]
pub enum EstadoObjetivo {
    Iniciando,
    Ok,
    Degradado,
    Caido,
}

/// The body of `GET /monitor`, as the API document describes it (`ahora` builds it). The
/// per-target and per-worker objects are described in words: they carry what the summaries
/// and the heartbeats hold, which grows with the monitor.
#[derive(utoipa::ToSchema)]
#[schema(description = "El estado de la vigilancia, con un ping en vivo a cada objetivo.")]
#[allow(dead_code)]
pub struct EstadoMonitor {
    /// El peor estado entre los objetivos.
    estado: EstadoObjetivo,
    /// El eco en vivo más lento, en milisegundos (o lo esperado antes de rendirse).
    latencia_ms: f64,
    /// La respuesta del primer objetivo; `null` si no respondió.
    respuesta: Option<String>,
    /// La menor disponibilidad entre los objetivos, en % de pings respondidos.
    disponibilidad: f64,
    /// Cuándo salió el ping en vivo del primer objetivo (RFC 3339).
    ultimo_ping: Option<String>,
    /// El nombre del primer objetivo.
    servicio: Option<String>,
    /// El diagnóstico del primer objetivo caído (si sus workers responden al ping de control
    /// pero no consumen la cola, o si ninguno responde); `null` si ninguno está caído.
    diagnostico: Option<String>,
    /// Resumen de cada objetivo (servicio, cola, tarea, estado, estado_desde, disponibilidad,
    /// pings…), con su `ping` en vivo.
    #[schema(value_type = Vec<Object>)]
    objetivos: Vec<Value>,
    /// Cada worker con sus campos de latido y su respuesta al ping de control.
    #[schema(value_type = Vec<Object>)]
    workers: Vec<Value>,
}

/// One target's state in [`Historial`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(description = "El estado vigente de un objetivo.")]
pub struct EstadoActual {
    servicio: String,
    estado: EstadoObjetivo,
}

/// The body of `GET /monitor/historial`, as the API document describes it.
#[derive(utoipa::ToSchema)]
#[schema(description = "Pings y cambios de estado recientes, el más nuevo primero.")]
#[allow(dead_code)]
pub struct Historial {
    /// El estado vigente de cada objetivo.
    estados: Vec<EstadoActual>,
    /// Cada ping: servicio, enviado (RFC 3339), latencia_ms, resultado (`ok` con
    /// `respuesta`, `fallo` con `detalle`, o `timeout`).
    #[schema(value_type = Vec<Object>)]
    pings: Vec<Value>,
    /// Cada cambio de estado: servicio, de, a, detectado_en_s, tras_s, motivo, en (RFC 3339)
    /// y la línea de log tal cual.
    #[schema(value_type = Vec<Object>)]
    cambios: Vec<Value>,
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
        (status = 200, description = "El historial.", body = Historial),
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
