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
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::routes::openapi::TAG_INVENTARIO;
use crate::state::AppState;

/// The query of `GET /inventario`. (Field docs in Spanish: they are the API document's.)
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paginacion {
    /// Cuántos productos como mucho; sin él, todos.
    pub limit: Option<u32>,
    /// Cuántos saltar, en orden de id (0 si falta).
    pub offset: Option<u32>,
}

/// The body of `POST /inventario` and `PUT /inventario/{id}`. Types are checked by serde
/// (a wrong type is a 422 before this exists); values by [`NuevoProducto::parse`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "Lo que el cliente fija de un producto. Un valor fuera de regla es un 422 `validacion`.",
    example = json!({"nombre": "Miel de azahar 500 g", "cantidad": 12, "precio": 7.25})
)]
pub struct ProductoEntrada {
    /// Sin blancos al principio ni al final (se recortan), sin caracteres de control, de 1 a
    /// 120 caracteres.
    #[schema(min_length = 1, max_length = 120)]
    pub nombre: String,
    /// Stock, de 0 a 1 000 000 000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub cantidad: i64,
    /// De 0 a 1 000 000 000.
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub precio: f64,
}

impl TryFrom<ProductoEntrada> for NuevoProducto {
    type Error = ApiError;

    fn try_from(e: ProductoEntrada) -> Result<Self, ApiError> {
        Ok(NuevoProducto::parse(&e.nombre, e.cantidad, e.precio)?)
    }
}

/// The body of `POST /inventario/{id}/movimientos`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"tipo": "salida", "cantidad": 3}))]
#[schema(description = "Un movimiento de stock. Un valor fuera de regla es un 422 `validacion`.")]
pub struct MovimientoEntrada {
    /// Otro valor es un 422 `validacion`.
    #[schema(value_type = inventario::TipoMovimiento)]
    pub tipo: String,
    /// Unidades, de 1 a 1 000 000 000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub cantidad: i64,
}

/// The body of a movement's 202, as the API document describes it (`mover` builds it).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"tarea_id": "0b8e6c9e-2f0c-4f7a-9d0e-7d3f7d1c2a10", "estado": "PENDING",
    "producto_id": 1, "tipo": "salida", "cantidad": 3,
    "consulta": "/tareas/0b8e6c9e-2f0c-4f7a-9d0e-7d3f7d1c2a10"}))]
#[allow(dead_code)]
#[schema(description = "El movimiento está en la cola: la tarea que lo aplicará.")]
pub struct MovimientoAceptado {
    /// La `Idempotency-Key` si se dio; si no, un uuid4 nuevo.
    tarea_id: String,
    /// Siempre `PENDING`: la tarea está en la cola.
    #[schema(example = "PENDING")]
    estado: String,
    producto_id: i64,
    tipo: inventario::TipoMovimiento,
    cantidad: i64,
    /// Dónde seguir la tarea: `/tareas/{tarea_id}` (también en `Location`).
    consulta: String,
}

/// The whole list (the common request) comes serialized from the store's cache; a page is read.
#[utoipa::path(
    get,
    path = "/inventario",
    tag = TAG_INVENTARIO,
    summary = "Lista los productos, en orden de id",
    params(Paginacion),
    responses(
        (status = 200, description = "Los productos (todos, o la página pedida).", body = Vec<Producto>),
        (status = 400, description = "`parametros_invalidos`: `limit` u `offset` no son enteros no negativos.", body = ErrorBody),
        (status = 503, description = "`base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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

/// `GET /inventario/{id}`.
#[utoipa::path(
    get,
    path = "/inventario/{id}",
    tag = TAG_INVENTARIO,
    summary = "Un producto, con su versión como ETag",
    params(("id" = i64, Path, description = "Id del producto.")),
    responses(
        (status = 200, description = "El producto.", body = Producto, headers(("etag" = String, description = "La versión, entre comillas: `\"7\"`."))),
        (status = 400, description = "`id_invalido`: el id no es un entero.", body = ErrorBody),
        (status = 404, description = "`producto_no_encontrado`.", body = ErrorBody),
        (status = 503, description = "`base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
pub async fn obtener(
    State(store): State<Store>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(con_etag(store.get(id).await?))
}

/// `POST /inventario`.
#[utoipa::path(
    post,
    path = "/inventario",
    tag = TAG_INVENTARIO,
    summary = "Da de alta un producto",
    request_body(content = ProductoEntrada, content_type = "application/json"),
    security(("jwt" = [])),
    responses(
        (status = 201, description = "Creado.", body = Producto, headers(
            ("location" = String, description = "`/inventario/{id}` del nuevo producto."),
            ("etag" = String, description = "Su versión, `\"1\"`."),
        )),
        (status = 400, description = "`json_malformado`: el cuerpo no es JSON.", body = ErrorBody),
        (status = 401, description = "`no_autenticado` (sin token), `token_invalido` o `autenticacion_no_configurada` (el servicio no tiene JWT_SECRET). Lleva `WWW-Authenticate: Bearer`.", body = ErrorBody),
        (status = 413, description = "`cuerpo_demasiado_grande`: más de 64 KiB.", body = ErrorBody),
        (status = 415, description = "`content_type_invalido`: falta `Content-Type: application/json`.", body = ErrorBody),
        (status = 422, description = "`tipos_invalidos` (un campo falta o tiene otro tipo) o `validacion` (un valor rompe una regla).", body = ErrorBody),
        (status = 503, description = "`base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    put,
    path = "/inventario/{id}",
    tag = TAG_INVENTARIO,
    summary = "Reemplaza un producto",
    description = "Con `If-Match` vigente se reemplaza todo, stock incluido (un recuento). Sin \
                   `If-Match` (o con `*`) se cambian nombre y precio, y `cantidad` debe ser la \
                   guardada: si no, 428.",
    params(
        ("id" = i64, Path, description = "Id del producto."),
        ("if-match" = Option<String>, Header, description = "ETags de la versión leída (`\"7\"`), o `*`."),
    ),
    request_body(content = ProductoEntrada, content_type = "application/json"),
    security(("jwt" = [])),
    responses(
        (status = 200, description = "Reemplazado.", body = Producto, headers(("etag" = String, description = "La nueva versión."))),
        (status = 400, description = "`id_invalido`, `json_malformado` o `if_match_invalido`.", body = ErrorBody),
        (status = 401, description = "`no_autenticado`, `token_invalido` o `autenticacion_no_configurada`. Lleva `WWW-Authenticate: Bearer`.", body = ErrorBody),
        (status = 404, description = "`producto_no_encontrado`.", body = ErrorBody),
        (status = 412, description = "`version_obsoleta`: el producto cambió desde la versión de `If-Match`; lleva el `ETag` vigente.", body = ErrorBody, headers(("etag" = String))),
        (status = 413, description = "`cuerpo_demasiado_grande`.", body = ErrorBody),
        (status = 415, description = "`content_type_invalido`.", body = ErrorBody),
        (status = 422, description = "`tipos_invalidos` o `validacion`.", body = ErrorBody),
        (status = 428, description = "`if_match_requerido`: sin `If-Match`, `cantidad` no es la guardada; lleva el `ETag` vigente.", body = ErrorBody, headers(("etag" = String))),
        (status = 503, description = "`base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    delete,
    path = "/inventario/{id}",
    tag = TAG_INVENTARIO,
    summary = "Borra un producto",
    params(
        ("id" = i64, Path, description = "Id del producto."),
        ("if-match" = Option<String>, Header, description = "Solo si sigue en esta versión (`\"7\"`); `*` o nada: sin condición."),
    ),
    security(("jwt" = [])),
    responses(
        (status = 204, description = "Borrado."),
        (status = 400, description = "`id_invalido` o `if_match_invalido`.", body = ErrorBody),
        (status = 401, description = "`no_autenticado`, `token_invalido` o `autenticacion_no_configurada`. Lleva `WWW-Authenticate: Bearer`.", body = ErrorBody),
        (status = 404, description = "`producto_no_encontrado`.", body = ErrorBody),
        (status = 412, description = "`version_obsoleta`; lleva el `ETag` vigente.", body = ErrorBody, headers(("etag" = String))),
        (status = 503, description = "`base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/inventario/{id}/movimientos",
    tag = TAG_INVENTARIO,
    summary = "Encola un movimiento de stock",
    description = "Responde en cuanto la tarea está en la cola; el worker la aplica una sola vez \
                   por id de tarea. Una salida mayor que el stock no se rechaza aquí: la tarea \
                   termina en FAILURE (véase `/tareas/{id}`).",
    params(
        ("id" = i64, Path, description = "Id del producto."),
        ("idempotency-key" = Option<String>, Header, description = "Id de la tarea: de 1 a 128 caracteres entre letras, dígitos y `-_.:`. La misma clave con el mismo movimiento es un reintento (misma tarea, se aplica una vez)."),
    ),
    request_body(content = MovimientoEntrada, content_type = "application/json"),
    security(("jwt" = [])),
    responses(
        (status = 202, description = "Encolado.", body = MovimientoAceptado, headers(("location" = String, description = "`/tareas/{tarea_id}`."))),
        (status = 400, description = "`id_invalido`, `json_malformado` o `idempotency_key_invalida`.", body = ErrorBody),
        (status = 401, description = "`no_autenticado`, `token_invalido` o `autenticacion_no_configurada`. Lleva `WWW-Authenticate: Bearer`.", body = ErrorBody),
        (status = 404, description = "`producto_no_encontrado`.", body = ErrorBody),
        (status = 413, description = "`cuerpo_demasiado_grande`.", body = ErrorBody),
        (status = 415, description = "`content_type_invalido`.", body = ErrorBody),
        (status = 422, description = "`tipos_invalidos`, `validacion`, o `idempotency_key_reusada` (la clave ya se usó para otro movimiento; el primero sigue en pie).", body = ErrorBody),
        (status = 503, description = "`cola_llena` (Redis sin memoria: no se encoló nada), `cola_no_disponible` (Redis no respondió; si el envío quedó en duda el cuerpo lleva `tarea_id`), o `base_de_datos_no_disponible`.", body = ErrorBody),
    ),
)]
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
