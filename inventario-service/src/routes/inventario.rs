//! `/inventario`: the productos (CRUD, straight on SQLite, so it works with Redis down) and
//! their stock movements (through the queue: answered 202 with the task id).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use shared::inventory::{
    Movimiento, NuevoProducto, Pagina, PedidoMovimiento, Producto, Store, APLICAR_MOVIMIENTO,
};
use shared::worker::BUSINESS_PRIORITY;
use shared::SendOptions;

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

pub async fn listar(
    State(store): State<Store>,
    Query(p): Query<Paginacion>,
) -> Result<axum::Json<Vec<Producto>>, ApiError> {
    let pagina = Pagina {
        limit: p.limit,
        offset: p.offset.unwrap_or(0),
    };
    Ok(axum::Json(store.list(pagina).await?))
}

pub async fn obtener(
    State(store): State<Store>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Producto>, ApiError> {
    Ok(axum::Json(store.get(id).await?))
}

pub async fn crear(
    State(store): State<Store>,
    Json(entrada): Json<ProductoEntrada>,
) -> Result<impl IntoResponse, ApiError> {
    let producto = store.create(&entrada.try_into()?).await?;
    let location = format!("/inventario/{}", producto.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(producto),
    ))
}

pub async fn reemplazar(
    State(store): State<Store>,
    Path(id): Path<i64>,
    Json(entrada): Json<ProductoEntrada>,
) -> Result<axum::Json<Producto>, ApiError> {
    Ok(axum::Json(store.update(id, &entrada.try_into()?).await?))
}

pub async fn borrar(
    State(store): State<Store>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    store.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the movement to the worker and answers at once with the task to follow. An unknown
/// producto is refused here rather than queued to fail; the worker checks again anyway, since
/// the producto may be deleted meanwhile.
pub async fn mover(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(entrada): Json<MovimientoEntrada>,
) -> Result<impl IntoResponse, ApiError> {
    let movimiento = Movimiento::parse(&entrada.tipo, entrada.cantidad)?;
    state.store.get(id).await?;
    let pedido = PedidoMovimiento::new(id, &movimiento);
    let options = SendOptions {
        priority: Some(BUSINESS_PRIORITY),
        ..SendOptions::default()
    };
    let send = state
        .client
        .send_task(APLICAR_MOVIMIENTO, vec![], pedido.to_kwargs(), options);
    let tarea_id = super::con_redis(state.redis_timeout, send).await?;
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
