//! The HTTP routes, one module per resource: productos (`inventario`), tasks (`tareas`),
//! operations (`ops`: health, readiness, metrics, and the JSON answers for unknown routes), and
//! the API's own description (`openapi`: `/openapi.json` and Swagger UI at `/docs/`).

pub mod inventario;
pub mod openapi;
pub mod ops;
pub mod tareas;

use std::future::Future;
use std::time::Duration;

use crate::error::ApiError;

/// Bounds a Redis call by `limit`, turning an outage or a slow answer into a 503 for the
/// client instead of a hung request. A send that `WAIT` saw too few replicas acknowledge
/// (`REDIS_WAIT_REPLICAS`, [`shared::QueueError::NotReplicated`]) is such a failure: its task is
/// on the master and may still run, so a movement answers it as a send in doubt, naming the
/// task ([`ApiError::EnvioIncierto`]). The movement's `Idempotency-Key` record lives in the
/// database, not in Redis, so the `WAIT` that follows the send is all Redis has to cover.
pub(crate) async fn con_redis<T>(
    limit: Duration,
    call: impl Future<Output = shared::Result<T>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.is_out_of_memory() => Err(ApiError::ColaLlena),
        Ok(Err(e)) => Err(ApiError::ColaNoDisponible(e.to_string())),
        Err(_) => Err(ApiError::ColaNoDisponible(format!(
            "Redis no respondió en {} ms",
            limit.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fewer replicas than asked is "the queue is unavailable" (503 `cola_no_disponible`), not
    /// "Redis is full" (which would say that nothing was queued).
    #[tokio::test]
    async fn an_unreplicated_send_is_an_unavailable_queue() {
        let unreplicated =
            async { Err::<(), _>(shared::QueueError::NotReplicated { wanted: 1, got: 0 }) };
        match con_redis(Duration::from_secs(1), unreplicated).await {
            Err(ApiError::ColaNoDisponible(detalle)) => assert!(detalle.contains("replicas")),
            other => panic!("{other:?}"),
        }
    }
}
