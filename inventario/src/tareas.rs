//! The inventory tasks' names and arguments: the contract between whoever sends them (the
//! REST service, a Python Celery client) and the worker that runs them. Plain JSON, so this
//! module needs nothing of the queue.

use serde::{Deserialize, Serialize};

use crate::model::{Movimiento, ValidacionError};

/// The health task: checks the database answers. No arguments.
pub const OBTENER_ESTADO: &str = "obtener_estado";

/// Applies one stock movement; kwargs are a [`PedidoMovimiento`].
pub const APLICAR_MOVIMIENTO: &str = "inventario.aplicar_movimiento";

/// The arguments of [`APLICAR_MOVIMIENTO`], sent as keyword arguments:
/// `{"producto_id": 3, "tipo": "salida", "cantidad": 2}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PedidoMovimiento {
    pub producto_id: i64,
    pub tipo: String,
    pub cantidad: i64,
}

impl PedidoMovimiento {
    pub fn new(producto_id: i64, movimiento: &Movimiento) -> Self {
        PedidoMovimiento {
            producto_id,
            tipo: movimiento.tipo().as_str().to_owned(),
            cantidad: movimiento.cantidad(),
        }
    }

    /// The movement asked for, validated (a sender may be any Celery client).
    pub fn movimiento(&self) -> Result<Movimiento, ValidacionError> {
        Movimiento::parse(&self.tipo, self.cantidad)
    }

    /// As the keyword arguments of a task message.
    pub fn to_kwargs(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("producto_id".into(), self.producto_id.into());
        kwargs.insert("tipo".into(), self.tipo.clone().into());
        kwargs.insert("cantidad".into(), self.cantidad.into());
        kwargs
    }
}
