//! `GET /monitor/colas`: the queues as the sampler last read them ([`crate::queues`]), the
//! workers, the throughput, and the last hour of samples, for the dashboard and for anyone
//! who wants the figures of `/metrics` as JSON.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use crate::extract::Query;
use crate::monitor::Monitor;
use crate::queues::Colas;
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_MONITOR};

/// `GET /monitor/colas?desde=<ms>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Desde {
    /// Sólo los puntos de `historial` posteriores a este instante (milisegundos desde la
    /// época, el `t` del último punto que ya se tiene). Sin él, la hora entera.
    desde: Option<i64>,
}

/// `GET /monitor/colas`. Reads nothing from Redis: it answers with the last sample, so any
/// number of pages can ask as often as they like.
#[utoipa::path(
    get,
    path = "/monitor/colas",
    tag = TAG_MONITOR,
    summary = "Colas, trabajadores y rendimiento, con la última hora de muestras",
    description = "La última muestra de las colas (cada QUEUE_SAMPLE_INTERVAL_MS): mensajes \
                   pendientes sumando todas las listas de prioridad, antigüedad del más viejo \
                   (`antiguedad_s` es una cota inferior, exacta a un intervalo), retenidos sin \
                   confirmar, aparcados, cuarentena; los trabajadores con sus colas y su \
                   concurrencia (`null` si aún no se conocen); `trabajadores_conectados` 0 si no \
                   hay ninguno; `obsoleto` mientras Redis no responde.",
    params(Desde),
    responses(
        (status = 200, description = "La última muestra.", body = Colas),
        (status = 400, description = "`consulta_invalida`: `desde` no es un entero.", body = ErrorBody),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn colas(
    State(monitor): State<Monitor>,
    Query(Desde { desde }): Query<Desde>,
) -> Json<Colas> {
    // A page polls every second: with `desde` it gets the new points only, not the whole
    // hour (some 300 KB) each time.
    Json(monitor.queues().colas(desde))
}
