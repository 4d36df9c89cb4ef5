//! inventario-worker's task handlers: where the queue meets the inventory domain.
//!
//! [`registry`] gives the worker runtime its handlers by name:
//!
//! - `obtener_estado`, the health task the monitor pings: it checks that the database
//!   answers and reports how many productos it holds. Faults can be injected into it
//!   ([`Faults`]) for availability experiments.
//! - `inventario.aplicar_movimiento`, one stock movement applied atomically and at most once
//!   per task id (the queue delivers at least once). It can be slowed down ([`Faults`]) so
//!   that a test can catch movements in flight.
//!
//! Handlers turn every expected problem into a task failure that Celery clients can read
//! (`exc_type` names it), never into a panic.

mod faults;

use inventario::{PedidoMovimiento, Store, StoreError, APLICAR_MOVIMIENTO, OBTENER_ESTADO};
use serde_json::json;
use shared::{Registry, Task, TaskError, TaskResult};

pub use faults::Faults;

/// `exc_module` of the failures these handlers define.
const MODULO: &str = "inventario";

/// The inventory worker's handlers on `store`, with `faults` injected into the health task.
pub fn registry(store: Store, faults: Faults) -> Registry {
    let mut registry = Registry::new();
    let health_store = store.clone();
    registry.register(OBTENER_ESTADO, move |task| {
        obtener_estado(health_store.clone(), faults, task)
    });
    registry.register(APLICAR_MOVIMIENTO, move |task| {
        aplicar_movimiento(store.clone(), faults, task)
    });
    registry
}

/// The health check: the database must answer a query. Injected faults come first, the way a
/// slow or broken dependency would show.
async fn obtener_estado(store: Store, faults: Faults, task: Task) -> TaskResult {
    if !faults.delay().is_zero() {
        tokio::time::sleep(faults.delay()).await;
    }
    if faults.should_fail() {
        return Err(TaskError::new(
            "FallaInyectada",
            MODULO,
            format!(
                "falla inyectada (FAULT_FAILURE_RATE={}): InventarioService no disponible",
                faults.failure_rate
            ),
        ));
    }
    let productos = store.count().await.map_err(|e| {
        TaskError::new(
            "BaseDeDatosNoDisponible",
            MODULO,
            format!("la base de datos no responde: {e}"),
        )
    })?;
    Ok(json!({
        "estado": "OK",
        "mensaje": "InventarioService responde correctamente - OK",
        "productos": productos,
        "hostname": task.hostname,
    }))
}

/// Applies one stock movement. The task id is the idempotency key, so a redelivered message
/// reports the first outcome instead of moving the stock again. An injected delay comes before
/// anything is applied, as a slow database would hold it back.
async fn aplicar_movimiento(store: Store, faults: Faults, task: Task) -> TaskResult {
    if !faults.movement_delay().is_zero() {
        tokio::time::sleep(faults.movement_delay()).await;
    }
    let pedido = pedido(&task)?;
    let movimiento = pedido
        .movimiento()
        .map_err(|e| TaskError::value_error(e.to_string()))?;
    let aplicado = store
        .apply_movement(&task.id, pedido.producto_id, &movimiento)
        .await
        .map_err(|e| {
            let exc_type = match &e {
                StoreError::NoEncontrado(_) => "ProductoNoEncontrado",
                StoreError::StockInsuficiente { .. } => "StockInsuficiente",
                StoreError::LimiteExcedido { .. } => "LimiteExcedido",
                _ => "BaseDeDatosNoDisponible",
            };
            TaskError::new(exc_type, MODULO, e.to_string())
        })?;
    if aplicado.repetido {
        tracing::info!(tarea = %task.id, "movement delivered again; already applied, stock unchanged");
    }
    Ok(json!({
        "producto_id": aplicado.producto_id,
        "tipo": movimiento.tipo().as_str(),
        "cantidad": movimiento.cantidad(),
        "cantidad_resultante": aplicado.cantidad_resultante,
        "repetido": aplicado.repetido,
        // Which replica applied it: shows how several workers share the queue.
        "worker": task.hostname,
    }))
}

/// The movement's arguments, as keyword arguments or positionally
/// (`producto_id, tipo, cantidad`), so Python callers may use either.
fn pedido(task: &Task) -> Result<PedidoMovimiento, TaskError> {
    let field = |i, name: &str| {
        task.arg(i, name)
            .cloned()
            .ok_or_else(|| TaskError::value_error(format!("falta el argumento {name}")))
    };
    let value = json!({
        "producto_id": field(0, "producto_id")?,
        "tipo": field(1, "tipo")?,
        "cantidad": field(2, "cantidad")?,
    });
    serde_json::from_value(value)
        .map_err(|e| TaskError::value_error(format!("argumentos no válidos: {e}")))
}
