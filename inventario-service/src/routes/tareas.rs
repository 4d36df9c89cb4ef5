//! `GET /tareas/{id}`: a task's Celery state and result, read from the result backend.
//! An id that no task of this service can have is refused (400) without asking Redis. A task
//! with nothing stored for it reads PENDING, as in Celery, if this service issued it (the
//! store keeps the movements it sent, see [`inventario::Store::issued_task`]); an id it never
//! issued and with no result is a 404, not a task waiting forever. A stored result is shown
//! whoever sent the task.

use axum::extract::State;
use serde_json::{json, Value};
use shared::protocol::TaskState;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Path;
use crate::routes::openapi::TAG_TAREAS;
use crate::state::AppState;

/// The body of `GET /tareas/{id}`, as the API document describes it (`consultar` builds it).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"tarea_id": "0b8e6c9e-2f0c-4f7a-9d0e-7d3f7d1c2a10", "estado": "SUCCESS",
    "resultado": {"producto_id": 1, "cantidad": 37}, "error": null,
    "fecha_fin": "2026-01-05T10:00:01.234567"}))]
#[allow(dead_code)]
#[schema(description = "Lo que sabe el backend de resultados de una tarea.")]
pub struct EstadoTarea {
    tarea_id: String,
    /// Estado de Celery: `PENDING` (nada guardado aún), `STARTED`, `RETRY`, `SUCCESS`,
    /// `FAILURE`, `REVOKED`, …
    #[schema(example = "SUCCESS")]
    estado: String,
    /// Lo que devolvió la tarea (con `SUCCESS`): cualquier JSON; `null` si no hay.
    resultado: Option<Value>,
    /// Con `FAILURE` (o `RETRY`): la excepción.
    error: Option<ErrorTarea>,
    /// Cuándo terminó, como la guarda Celery; `null` mientras no termina.
    fecha_fin: Option<String>,
}

/// A failed task's exception, in [`EstadoTarea`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(description = "La excepción de una tarea fallida.")]
pub struct ErrorTarea {
    /// Tipo de la excepción (`StockInsuficiente`, …).
    tipo: String,
    mensaje: String,
}

#[utoipa::path(
    get,
    path = "/tareas/{id}",
    tag = TAG_TAREAS,
    summary = "Estado y resultado de una tarea",
    description = "Un id que este servicio emitió y sin resultado guardado es `PENDING`; uno que \
                   nunca emitió y sin resultado, 404.",
    params(("id" = String, Path, description = "Id de la tarea (`tarea_id` del 202).")),
    responses(
        (status = 200, description = "Lo que sabe el backend de resultados.", body = EstadoTarea),
        (status = 400, description = "`tarea_id_invalido`: no puede ser el id de una tarea de este servicio.", body = ErrorBody),
        (status = 404, description = "`tarea_desconocida`.", body = ErrorBody),
        (status = 503, description = "`cola_no_disponible` (Redis no respondió) o `base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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
