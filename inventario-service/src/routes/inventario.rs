//! `/inventario`: the productos (CRUD, straight on SQLite, so it works with Redis down) and
//! their stock movements (through the queue: answered 202 with the task id).
//!
//! Every handler that changes state takes an [`Autor`] first, before its path and body: a
//! write without a valid token is refused before anything is read (see [`crate::auth`]).
//!
//! The stock changes through movements. A producto's answers carry its version as a strong
//! `ETag` (`"7"`); `PUT` and `DELETE` with `If-Match` naming an older one get 412, so a write
//! made from a stale read never undoes a movement it did not see. A `PUT` without `If-Match`
//! (or with `If-Match: *`, which names no version) replaces the name and the price, and its
//! `cantidad` must be the stored one: otherwise 428, saying the stored stock and version. To
//! set the stock by hand (a stocktake), `PUT` with `If-Match` and the new `cantidad`.
//!
//! A movement's `Idempotency-Key` is recorded with a fingerprint of the request before the
//! task is sent: the same key with the same request is a retry (202, same task, applied once);
//! with another producto, type or amount, a 422 that leaves the first movement as it was.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use headers::{ETag, HeaderMapExt, IfMatch};
use inventario::{
    Movimiento, NuevoProducto, Pagina, PedidoMovimiento, Precondicion, Producto, Store, StoreError,
    APLICAR_MOVIMIENTO,
};
use serde::Deserialize;
use serde_json::json;
use shared::worker::BUSINESS_PRIORITY;
use shared::SendOptions;

use crate::auth::Autor;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// The query of `GET /inventario`.
#[derive(Debug, Deserialize)]
pub struct Paginacion {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// The body of `POST /inventario` and `PUT /inventario/{id}`. Types are checked by serde
/// (a wrong type is a 422 before this exists); values by [`NuevoProducto::parse`].
#[derive(Debug, Deserialize)]
pub struct ProductoEntrada {
    pub nombre: String,
    pub cantidad: i64,
    pub precio: f64,
}

impl TryFrom<ProductoEntrada> for NuevoProducto {
    type Error = ApiError;

    fn try_from(e: ProductoEntrada) -> Result<Self, ApiError> {
        Ok(NuevoProducto::parse(&e.nombre, e.cantidad, e.precio)?)
    }
}

/// The body of `POST /inventario/{id}/movimientos`.
#[derive(Debug, Deserialize)]
pub struct MovimientoEntrada {
    pub tipo: String,
    pub cantidad: i64,
}

/// The whole list (the common request) comes serialized from the store's cache; a page is read.
pub async fn listar(
    State(store): State<Store>,
    Query(p): Query<Paginacion>,
) -> Result<Response, ApiError> {
    let pagina = Pagina {
        limit: p.limit,
        offset: p.offset.unwrap_or(0),
    };
    if pagina.limit.is_none() && pagina.offset == 0 {
        let body = store.list_json().await?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    Ok(axum::Json(store.list(pagina).await?).into_response())
}

/// The `ETag` of a producto at `version`: the number, quoted (a strong entity-tag).
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("a quoted number is a header value")
}

/// A producto with its version as the `ETag`.
fn con_etag(producto: Producto) -> impl IntoResponse {
    (
        [(header::ETAG, etag(producto.version))],
        axum::Json(producto),
    )
}

/// What the request's `If-Match` says of producto `id`. A list of entity-tags is compared
/// (strongly, as RFC 9110 asks) with the stored version: none current is a 412 here; one that
/// is becomes [`Precondicion::Version`], which the write checks again in its own statement.
/// No `If-Match`, or `*` (any current version: it says nothing of which was read), is
/// [`Precondicion::Ninguna`].
async fn precondicion(
    store: &Store,
    id: i64,
    headers: &HeaderMap,
) -> Result<Precondicion, ApiError> {
    let if_match = headers
        .typed_try_get::<IfMatch>()
        .map_err(|_| ApiError::Peticion {
            status: StatusCode::BAD_REQUEST,
            codigo: "if_match_invalido",
            detalle: "If-Match debe ser * o una lista de ETags (\"7\", \"8\")".into(),
        })?;
    let Some(if_match) = if_match.filter(|m| !m.is_any()) else {
        return Ok(Precondicion::Ninguna);
    };
    let actual = store.get(id).await?.version;
    let tag: ETag = etag(actual)
        .to_str()
        .ok()
        .and_then(|t| t.parse().ok())
        .expect("a quoted number is an entity-tag");
    if !if_match.precondition_passes(&tag) {
        return Err(StoreError::VersionObsoleta {
            producto_id: id,
            actual,
        }
        .into());
    }
    Ok(Precondicion::Version(actual))
}

pub async fn obtener(
    State(store): State<Store>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(con_etag(store.get(id).await?))
}

pub async fn crear(
    State(store): State<Store>,
    _autor: Autor,
    Json(entrada): Json<ProductoEntrada>,
) -> Result<impl IntoResponse, ApiError> {
    let producto = store.create(&entrada.try_into()?).await?;
    let location = format!("/inventario/{}", producto.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        con_etag(producto),
    ))
}

/// Replaces a producto: everything under a current `If-Match`, the name and the price without
/// one (see the module's comment). The body is checked before the precondition, so a bad body
/// is a 422 whatever the version.
pub async fn reemplazar(
    State(store): State<Store>,
    _autor: Autor,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(entrada): Json<ProductoEntrada>,
) -> Result<impl IntoResponse, ApiError> {
    let nuevo: NuevoProducto = entrada.try_into()?;
    let precondicion = precondicion(&store, id, &headers).await?;
    Ok(con_etag(store.update(id, &nuevo, precondicion).await?))
}

/// Deletes a producto; with `If-Match`, only if it is still the version read.
pub async fn borrar(
    State(store): State<Store>,
    _autor: Autor,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let precondicion = precondicion(&store, id, &headers).await?;
    store.delete(id, precondicion).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The header that names a movement's task, so that a client retrying after a 503 or a lost
/// answer cannot apply the movement twice (the worker applies each task id once).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The longest idempotency key taken (it becomes a Redis key's suffix).
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Whether `id` can be the id of a task this service sends: a uuid4, or an `Idempotency-Key`
/// (1 to 128 characters among letters, digits and `-_.:`).
pub fn es_tarea_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_IDEMPOTENCY_KEY
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The task id a movement is sent under: the client's `Idempotency-Key` (1 to 128 characters
/// among letters, digits and `-_.:`), or a fresh uuid4.
fn tarea_id(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let valida = value.to_str().ok().filter(|k| es_tarea_id(k));
    valida.map(str::to_owned).ok_or_else(|| ApiError::Peticion {
        status: StatusCode::BAD_REQUEST,
        codigo: "idempotency_key_invalida",
        detalle: format!(
            "Idempotency-Key debe tener de 1 a {MAX_IDEMPOTENCY_KEY} caracteres entre letras, dígitos y -_.:"
        ),
    })
}

/// Sends the movement to the worker and answers at once with the task to follow. An unknown
/// producto is refused here rather than queued to fail; the worker checks again anyway, since
/// the producto may be deleted meanwhile. The request is recorded under its task id before it
/// is sent ([`Store::record_movement_request`]): a key reused for another request is refused
/// (422) and nothing is sent; the same request again is sent again, which the worker applies
/// once. If Redis fails or times out during the send, the message may still have been queued:
/// the 503 then names the task (see [`ApiError::EnvioIncierto`]).
pub async fn mover(
    State(state): State<AppState>,
    _autor: Autor,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(entrada): Json<MovimientoEntrada>,
) -> Result<impl IntoResponse, ApiError> {
    let movimiento = Movimiento::parse(&entrada.tipo, entrada.cantidad)?;
    let tarea_id = tarea_id(&headers)?;
    state.store.get(id).await?;
    let pedido = PedidoMovimiento::new(id, &movimiento);
    state
        .store
        .record_movement_request(&tarea_id, &pedido)
        .await?;
    let options = SendOptions {
        priority: Some(BUSINESS_PRIORITY),
        task_id: Some(tarea_id.clone()),
        ..SendOptions::default()
    };
    let send = state
        .client
        .send_task(APLICAR_MOVIMIENTO, vec![], pedido.to_kwargs(), options);
    let tarea_id = match super::con_redis(state.redis_timeout, send).await {
        Err(ApiError::ColaNoDisponible(detalle)) => {
            return Err(ApiError::EnvioIncierto { tarea_id, detalle })
        }
        r => r?,
    };
    let consulta = format!("/tareas/{tarea_id}");
    let body = json!({
        "tarea_id": tarea_id,
        "estado": "PENDING",
        "producto_id": id,
        "tipo": movimiento.tipo().as_str(),
        "cantidad": movimiento.cantidad(),
        "consulta": consulta,
    });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, consulta)],
        axum::Json(body),
    ))
}
