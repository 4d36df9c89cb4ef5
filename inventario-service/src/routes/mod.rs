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
/// client instead of a hung request.
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
