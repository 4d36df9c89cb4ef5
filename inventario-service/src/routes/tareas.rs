//! `GET /tareas/{id}`: a task's Celery state and result, read from the result backend.
//! A task nobody has stored anything for reads PENDING, as in Celery.

use axum::extract::State;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

pub async fn consultar(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let meta = super::con_redis(state.redis_timeout, state.client.backend().get(&id)).await?;
    let error = meta
        .exception()
        .map(|e| json!({"tipo": e.exc_type, "mensaje": e.message()}));
    Ok(axum::Json(json!({
        "tarea_id": meta.task_id,
        "estado": meta.status_name(),
        "resultado": meta.result,
        "error": error,
        "fecha_fin": meta.date_done,
    })))
}
