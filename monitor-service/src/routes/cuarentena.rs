//! The quarantine (`rcelery:quarantine`: messages the workers could not take, with the reason),
//! for an operator who wants to see what was set aside and put a message back once its cause
//! is fixed.
//!
//! - `GET /monitor/cuarentena?n=50`: the newest entries, each with its id (the SHA-1 of the
//!   stored entry) and the task it carries when the message can be read that far. Reads only.
//! - `POST /monitor/cuarentena/{id}/reencolar`: the entry's message back on its list, where
//!   workers take next, and the entry removed, in one step (two requeues of one entry requeue
//!   it once). A write, so it is refused (403) unless `MONITOR_TOKEN` is set, and with it set
//!   the auth middleware has already demanded the token. Each requeue is logged: who asked
//!   (the peer address), the entry, the task and the list.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::broker::quarantine::{QuarantinedItem, Requeue};
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;
use crate::extract::Query;
use crate::monitor::Monitor;
use crate::routes::openapi::{ErrorBody, NoAutenticado, TAG_MONITOR};
use crate::routes::{redis, who, writes_allowed};

/// Entries shown when `n` is not given, and at most.
const DEFAULT_N: usize = 50;
const MAX_N: usize = 500;
/// The message is shown up to this many bytes (the entry keeps it whole).
const MAX_SHOWN: usize = 4096;

/// The query of `GET /monitor/cuarentena`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CuarentenaQuery {
    /// Entradas, la más reciente primero: 50 por omisión, entre 1 y 500.
    pub n: Option<usize>,
}

/// `GET /monitor/cuarentena`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Los mensajes en cuarentena, el más reciente primero.")]
pub struct Cuarentena {
    /// Entradas en la lista ahora.
    pub total: u64,
    /// Entradas descartadas hasta ahora para mantener la lista en su tope (QUARANTINE_MAX).
    pub descartados: u64,
    pub entradas: Vec<Entrada>,
}

/// One quarantine entry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Un mensaje en cuarentena.")]
pub struct Entrada {
    /// SHA-1 (hex) de la entrada tal como está guardada: el id para reencolarla.
    pub id: String,
    pub motivo: String,
    /// La lista de la que salió el mensaje (su cola y prioridad).
    pub lista: String,
    pub consumidor: String,
    /// RFC 3339.
    pub en_cuarentena: Option<String>,
    /// La tarea del mensaje, si se puede leer.
    pub tarea: Option<String>,
    pub tarea_id: Option<String>,
    /// El mensaje tal como llegó, cortado a 4 KiB.
    pub mensaje: String,
    /// Si el mensaje se cortó.
    pub mensaje_cortado: bool,
}

/// `POST /monitor/cuarentena/{id}/reencolar`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "La entrada volvió a su lista.")]
pub struct Reencolada {
    pub reencolada: bool,
    pub lista: String,
}

/// `GET /monitor/cuarentena`.
#[utoipa::path(
    get,
    path = "/monitor/cuarentena",
    tag = TAG_MONITOR,
    summary = "Mensajes en cuarentena, el más reciente primero",
    params(CuarentenaQuery),
    responses(
        (status = 200, description = "Las entradas más recientes.", body = Cuarentena),
        (status = 400, description = "`consulta_invalida`: `n` no es un número.", body = ErrorBody),
        (status = 401, response = NoAutenticado),
        (status = 503, description = "`redis_no_disponible`: Redis no respondió a tiempo.", body = ErrorBody),
    ),
)]
pub async fn listar(
    State(monitor): State<Monitor>,
    Query(query): Query<CuarentenaQuery>,
) -> Result<Json<Cuarentena>, AppError> {
    let n = query.n.unwrap_or(DEFAULT_N).clamp(1, MAX_N);
    let page = redis(monitor.client().broker().quarantine_page(n)).await?;
    Ok(Json(Cuarentena {
        total: page.total,
        descartados: page.dropped,
        entradas: page.items.into_iter().map(entrada).collect(),
    }))
}

fn entrada(item: QuarantinedItem) -> Entrada {
    let (motivo, lista, consumidor, en_cuarentena, mensaje) = match item.entry {
        Some(e) => (
            e.reason,
            e.list,
            e.consumer,
            shared::protocol::parse_datetime(&e.quarantined_at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            e.message,
        ),
        None => (
            "la entrada no es un registro de cuarentena".into(),
            String::new(),
            String::new(),
            None,
            item.raw,
        ),
    };
    let (tarea, tarea_id) = task_of(&mensaje);
    let (mensaje, mensaje_cortado) = cut(mensaje, MAX_SHOWN);
    Entrada {
        id: item.id,
        motivo,
        lista,
        consumidor,
        en_cuarentena,
        tarea,
        tarea_id,
        mensaje,
        mensaje_cortado,
    }
}

/// The task name and id in a message's headers (protocol 2), if it reads as JSON that far.
fn task_of(message: &str) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(message) else {
        return (None, None);
    };
    let header = |k: &str| {
        m.get("headers")
            .and_then(|h| h.get(k))
            .and_then(Value::as_str)
            .map(|s| cut(s.to_owned(), 200).0)
    };
    (header("task"), header("id"))
}

/// `s` cut to at most `max` bytes on a character boundary; whether it was cut.
fn cut(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

/// `POST /monitor/cuarentena/{id}/reencolar`.
#[utoipa::path(
    post,
    path = "/monitor/cuarentena/{id}/reencolar",
    tag = TAG_MONITOR,
    summary = "Devuelve el mensaje de una entrada a su lista (el siguiente en servirse)",
    params(("id" = String, Path, description = "El id de la entrada (SHA-1 hex).")),
    responses(
        (status = 200, description = "El mensaje está de nuevo en su lista y la entrada se quitó.", body = Reencolada),
        (status = 401, response = NoAutenticado),
        (status = 403, description = "`reencolado_deshabilitado`: sin MONITOR_TOKEN el monitor no escribe.", body = ErrorBody),
        (status = 404, description = "`entrada_desconocida`: no hay (o ya no hay) una entrada con ese id.", body = ErrorBody),
        (status = 409, description = "`entrada_ilegible`: la entrada no dice de qué lista salió su mensaje.", body = ErrorBody),
        (status = 503, description = "`redis_no_disponible`: Redis no respondió a tiempo.", body = ErrorBody),
    ),
)]
pub async fn reencolar(
    State(monitor): State<Monitor>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(id): Path<String>,
) -> Result<Json<Reencolada>, AppError> {
    if !writes_allowed(&monitor) {
        return Err(AppError::ReencoladoDeshabilitado);
    }
    // An id is 40 hex digits; anything else names no entry, and is not sent to Redis.
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::EntradaDesconocida(id));
    }
    let id = id.to_ascii_lowercase();
    let broker = monitor.client().broker();
    // The task it carries, for the log line only (read before it leaves the list).
    let item = redis(broker.quarantined_item(&id)).await?;
    let requeued = redis(broker.requeue_quarantined(&id)).await?;
    let who = who(peer);
    match requeued {
        Requeue::Done { list } => {
            let (task, task_id) = item
                .and_then(|i| i.entry)
                .map(|e| task_of(&e.message))
                .unwrap_or_default();
            tracing::info!(
                %who,
                entry = %id,
                task_id = task_id.as_deref().unwrap_or("-"),
                task = task.as_deref().unwrap_or("-"),
                list = %list.escape_debug(),
                "quarantined message requeued"
            );
            Ok(Json(Reencolada {
                reencolada: true,
                lista: list,
            }))
        }
        Requeue::Unknown => Err(AppError::EntradaDesconocida(id)),
        Requeue::Unreadable => Err(AppError::EntradaIlegible(id)),
    }
}
