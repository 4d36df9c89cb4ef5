//! `GET /monitor/tareas/{id}`: one task as the monitor can know it, from two sources merged:
//! the result backend (`celery-task-meta-<id>`: the state, the result or the error and, when
//! workers store `result_extended`, the name, arguments, worker, queue and retries) and the
//! task events the monitor has seen (the reprs of the arguments, the worker, when it was
//! received, started and finished, its run time). `fuentes` says which of the two answered.
//!
//! Reading changes nothing in Redis (a GET of the result key). A stored final state (SUCCESS,
//! FAILURE, REVOKED) is the task's; otherwise the events, newer than any intermediate stored
//! state, say where it is. An id that no task can have is refused (400) without asking Redis;
//! an id neither source knows is a 404 (Celery would say PENDING for ever).
//!
//! `POST /monitor/tareas/{id}/revocar` is what Flower's task page offers: Celery's `revoke`
//! broadcast to every worker (and kept in Redis for ours, so a worker that starts later honours
//! it too), with `terminar` also stopping the task if it runs. A waiting task is then never run
//! and is stored REVOKED; a finished one is left as it is, as Celery leaves it, and the answer
//! is the same 202 (the workers act on it, the route does not wait for them). A write, so it is
//! refused (403) unless `MONITOR_TOKEN` is set, as the quarantine's requeue is; each revoke is
//! logged with who asked.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::control::{Control, DEFAULT_REVOKE_SIGNAL};
use shared::protocol::{ResultMeta, TaskState};
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;
use crate::extract::Query;
use crate::monitor::Monitor;
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_MONITOR};
use crate::routes::{redis, who, writes_allowed, REDIS_TIMEOUT};
use crate::tasks::TaskRecord;

/// The longest task id taken (it becomes a Redis key's suffix).
const MAX_ID: usize = 128;

/// A task, as `GET /monitor/tareas/{id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tarea {
    pub id: String,
    /// PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED (or a state of the
    /// task's own that it stored, e.g. PROGRESS).
    #[schema(example = "SUCCESS")]
    pub estado: String,
    pub nombre: Option<String>,
    /// Repr de Python de los argumentos posicionales (de los eventos), o su JSON (del resultado
    /// extendido).
    pub args: Option<String>,
    pub kwargs: Option<String>,
    /// El resultado guardado (cualquier JSON) o, si solo lo dicen los eventos, su repr.
    pub resultado: Option<Value>,
    pub error: Option<ErrorTarea>,
    pub trabajador: Option<String>,
    pub cola: Option<String>,
    pub reintentos: Option<u32>,
    /// RFC 3339.
    pub recibida: Option<String>,
    pub iniciada: Option<String>,
    pub terminada: Option<String>,
    /// Segundos de ejecución, medidos por el worker.
    pub duracion_s: Option<f64>,
    /// `resultado` (el backend de resultados) y/o `eventos` (los eventos de tarea).
    pub fuentes: Vec<&'static str>,
}

/// Why a task failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorTarea {
    /// La clase de la excepción, p. ej. `ValueError`.
    pub tipo: String,
    pub mensaje: String,
    pub traceback: Option<String>,
}

/// Whether `id` can be a task id: 1 to 128 characters among letters, digits and `-_.:` (a
/// uuid, or an inventory movement's idempotency key).
pub fn es_tarea_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// How `POST /monitor/tareas/{id}/revocar` is asked, in its query or its JSON body (the body's
/// fields win).
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "Cómo revocar: si además se detiene la tarea que ya corre, y con qué señal."
)]
pub struct Revocar {
    /// Si la tarea ya corre, detenerla también (el `terminate=True` de Celery). Por omisión,
    /// no: solo se impide que empiece.
    pub terminar: Option<bool>,
    /// La señal que un worker de Python envía a la tarea que detiene: SIGTERM (por omisión),
    /// SIGKILL, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 o SIGABRT, con o sin `SIG`. Los
    /// workers de Rust detienen la tarea sea cual sea.
    #[schema(example = "SIGKILL")]
    pub senal: Option<String>,
}

/// `POST /monitor/tareas/{id}/revocar`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "La revocación se envió a todos los workers.")]
pub struct Revocada {
    pub revocada: bool,
    pub tarea_id: String,
    pub terminar: bool,
    /// La señal pedida para detenerla, si `terminar`.
    #[schema(example = "SIGTERM")]
    pub senal: Option<String>,
}

/// The signals a revoke may name: Celery's worker sends any the platform knows, but these are
/// the ones that make sense for stopping a task, and a name a worker cannot read would make it
/// ignore the whole revoke.
const SENALES: [&str; 8] = [
    "SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGABRT",
];

/// `senal` as Celery spells it (`kill`, `SIGKILL` → `SIGKILL`), if it is one of [`SENALES`].
fn senal(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SENALES.into_iter().find(|s| *s == full)
}

/// The id rule of both task routes, as a 400.
fn check_id(id: &str) -> Result<(), AppError> {
    if es_tarea_id(id) {
        Ok(())
    } else {
        Err(AppError::IdInvalido(
            "un id de tarea tiene de 1 a 128 caracteres entre letras, dígitos y -_.:".into(),
        ))
    }
}

/// `POST /monitor/tareas/{id}/revocar`.
#[utoipa::path(
    post,
    path = "/monitor/tareas/{id}/revocar",
    tag = TAG_MONITOR,
    summary = "Revoca una tarea en todos los workers (y la detiene si corre, con `terminar`)",
    description = "El `revoke` de Celery: la tarea que espera no llega a ejecutarse y queda \
                   REVOKED; con `terminar=true` la que corre se detiene (REVOKED, motivo \
                   `terminated`). Revocar una tarea terminada no la cambia, y también responde \
                   202. Las opciones van en la consulta o en un cuerpo JSON (que manda).",
    params(("id" = String, Path, description = "El id de la tarea (uuid)."), Revocar),
    request_body(content = Option<Revocar>, content_type = "application/json"),
    responses(
        (status = 202, description = "Revocación enviada a los workers (y guardada en Redis para los que arranquen después).", body = Revocada),
        (status = 400, description = "`id_invalido`: ninguna tarea puede tener ese id; `senal_invalida`: una señal que no se admite; `cuerpo_invalido` o `consulta_invalida`: opciones ilegibles.", body = ErrorBody),
        (status = 401, response = NoAutenticado),
        (status = 403, description = "`revocacion_deshabilitada`: sin MONITOR_TOKEN el monitor no escribe.", body = ErrorBody),
        (status = 503, description = "`redis_no_disponible`: Redis no respondió a tiempo.", body = ErrorBody),
    ),
)]
pub async fn revocar(
    State(monitor): State<Monitor>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
    Query(query): Query<Revocar>,
    body: Bytes,
) -> Result<(StatusCode, Json<Revocada>), AppError> {
    if !writes_allowed(&monitor) {
        return Err(AppError::RevocacionDeshabilitada);
    }
    check_id(&id)?;
    let from_body: Revocar = if body.iter().all(u8::is_ascii_whitespace) {
        Revocar::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::CuerpoInvalido(e.to_string()))?
    };
    let terminar = from_body.terminar.or(query.terminar).unwrap_or(false);
    let pedida = from_body.senal.or(query.senal);
    let signal = match pedida.as_deref() {
        None => DEFAULT_REVOKE_SIGNAL,
        Some(name) => senal(name).ok_or_else(|| AppError::SenalInvalida(name.to_owned()))?,
    };
    let control = Control::new(monitor.client().broker().redis().clone());
    let ids = [id.clone()];
    redis(control.revoke_with_signal(&ids, terminar, signal)).await?;
    let who = who(peer);
    tracing::info!(
        %who,
        task_id = %id,
        terminate = terminar,
        signal = if terminar { signal } else { "-" },
        "task revoked"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Revocada {
            revocada: true,
            tarea_id: id,
            terminar,
            senal: terminar.then(|| signal.to_owned()),
        }),
    ))
}

/// `GET /monitor/tareas/{id}`.
#[utoipa::path(
    get,
    path = "/monitor/tareas/{id}",
    tag = TAG_MONITOR,
    summary = "Una tarea: estado, argumentos, resultado o error, worker y tiempos",
    params(("id" = String, Path, description = "El id de la tarea (uuid).")),
    responses(
        (status = 200, description = "Lo que dicen el backend de resultados y los eventos de tarea.", body = Tarea),
        (status = 400, description = "`id_invalido`: ninguna tarea puede tener ese id.", body = ErrorBody),
        (status = 401, response = NoAutenticado),
        (status = 404, description = "`tarea_desconocida`: ni el backend ni los eventos la conocen.", body = ErrorBody),
        (status = 503, description = "`redis_no_disponible`: Redis no respondió a tiempo.", body = ErrorBody),
    ),
)]
pub async fn consultar(
    State(monitor): State<Monitor>,
    Path(id): Path<String>,
) -> Result<Json<Tarea>, AppError> {
    check_id(&id)?;
    let read = monitor.client().backend().get(&id);
    let stored = match tokio::time::timeout(REDIS_TIMEOUT, read).await {
        Ok(Ok(meta)) => (meta.status != TaskState::Pending).then_some(meta),
        // A document no Celery wrote: the events may still know the task.
        Ok(Err(shared::QueueError::Protocol(error))) => {
            tracing::debug!(%id, %error, "unreadable result document ignored");
            None
        }
        Ok(Err(error)) => return Err(AppError::Redis(error.to_string())),
        Err(_) => return Err(AppError::Redis("Redis no respondió a tiempo".into())),
    };
    let events = monitor.task_watch().get(&id);
    if stored.is_none() && events.is_none() {
        return Err(AppError::TareaDesconocida(id));
    }
    Ok(Json(merge(id, stored.as_ref(), events.as_ref())))
}

/// The two sources as one answer.
fn merge(id: String, stored: Option<&ResultMeta>, events: Option<&TaskRecord>) -> Tarea {
    let extra = |key: &str| stored.and_then(|m| m.extra.get(key));
    let extra_text = |key: &str| extra(key).and_then(Value::as_str).map(str::to_owned);
    let extra_json = |key: &str| extra(key).filter(|v| !v.is_null()).map(Value::to_string);
    let final_state = stored.filter(|m| m.status.is_ready());
    let estado = match (final_state, events) {
        (Some(m), _) => m.status_name().to_owned(),
        (None, Some(e)) => e.state.to_owned(),
        (None, None) => stored.map_or("PENDING", |m| m.status_name()).to_owned(),
    };
    let resultado = match stored {
        Some(m) if m.status == TaskState::Success => Some(m.result.clone()),
        _ => events.and_then(|e| e.result.clone()).map(Value::String),
    };
    let error = stored
        .and_then(ResultMeta::exception)
        .map(|exc| ErrorTarea {
            tipo: exc.exc_type.clone(),
            mensaje: exc.message(),
            traceback: stored.and_then(|m| m.traceback.clone()),
        })
        .or_else(|| {
            let e = events?;
            let repr = e.exception.clone()?;
            Some(ErrorTarea {
                tipo: crate::tasks::exception_name(Some(&repr)).to_owned(),
                mensaje: repr,
                traceback: e.traceback.clone(),
            })
        });
    let terminada = final_state
        .and_then(|m| m.date_done.as_deref())
        .and_then(shared::protocol::parse_datetime)
        .or_else(|| events.and_then(|e| e.finished));
    let mut fuentes = Vec::new();
    if stored.is_some() {
        fuentes.push("resultado");
    }
    if events.is_some() {
        fuentes.push("eventos");
    }
    Tarea {
        id,
        estado,
        nombre: events
            .and_then(|e| e.name.clone())
            .or_else(|| extra_text("name")),
        args: events
            .and_then(|e| e.args.clone())
            .or_else(|| extra_json("args")),
        kwargs: events
            .and_then(|e| e.kwargs.clone())
            .or_else(|| extra_json("kwargs")),
        resultado,
        error,
        trabajador: extra_text("worker").or_else(|| events.and_then(|e| e.worker.clone())),
        cola: extra_text("queue").or_else(|| events.and_then(|e| e.queue.clone())),
        reintentos: extra("retries")
            .and_then(Value::as_u64)
            .and_then(|r| u32::try_from(r).ok())
            .or_else(|| events.and_then(|e| e.retries)),
        recibida: events.and_then(|e| e.received).map(rfc3339),
        iniciada: events.and_then(|e| e.started).map(rfc3339),
        terminada: terminada.map(rfc3339),
        duracion_s: events.and_then(|e| e.runtime),
        fuentes,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    /// A result is any JSON (a number, a string, an object, null): its schema must not say
    /// otherwise, or a real answer would not fit the document.
    #[test]
    fn the_result_may_be_any_json() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let tarea = &doc["components"]["schemas"]["Tarea"]["properties"];
        let resultado = &tarea["resultado"];
        assert!(
            resultado.get("type").is_none() || resultado["type"] == "null",
            "{resultado}"
        );
        assert!(resultado.get("$ref").is_none(), "{resultado}");
    }
}
