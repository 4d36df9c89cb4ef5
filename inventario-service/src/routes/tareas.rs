//! `GET /tareas/{id}`: a task's Celery state and result, read from the result backend.
//! An id that no task of this service can have is refused (400) without asking Redis. A task
//! with nothing stored for it reads PENDING, as in Celery, if this service issued it (the
//! store keeps the movements it sent, see [`inventario::Store::issued_task`]); an id it never
//! issued and with no result is a 404, not a task waiting forever. A stored result is shown
//! whoever sent the task.

use axum::extract::State;
use serde_json::{json, Value};
use shared::protocol::TaskState;

use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

pub async fn consultar(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !super::inventario::es_tarea_id(&id) {
        return Err(ApiError::Peticion {
            status: axum::http::StatusCode::BAD_REQUEST,
            codigo: "tarea_id_invalido",
            detalle: "un id de tarea tiene de 1 a 128 caracteres entre letras, dígitos y -_.:"
                .into(),
        });
    }
    let meta = super::con_redis(state.redis_timeout, state.client.backend().get(&id)).await?;
    // Celery never stores PENDING: this state means nothing is stored.
    if meta.status == TaskState::Pending && !state.store.issued_task(&id).await? {
        return Err(ApiError::TareaDesconocida(id));
    }
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
