//! `GET /monitor/colas`: the queues as the sampler last read them ([`crate::queues`]), the
//! workers, the throughput, and the last hour of samples, for the dashboard and for anyone
//! who wants the figures of `/metrics` as JSON.

use axum::extract::State;
use axum::Json;

use crate::monitor::Monitor;
use crate::queues::Colas;
use crate::routes::openapi::{NoAutenticado, TAG_MONITOR};

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
    responses(
        (status = 200, description = "La última muestra.", body = Colas),
        (status = 401, response = NoAutenticado),
    ),
)]
pub async fn colas(State(monitor): State<Monitor>) -> Json<Colas> {
    Json(monitor.queues().colas())
}
