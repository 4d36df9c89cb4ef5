//! The inventory tasks' names and arguments: the contract between whoever sends them (the
//! REST service, a Python Celery client) and the worker that runs them. Plain JSON, so this
//! module needs nothing of the queue.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

    /// What identifies this request, whatever its JSON looked like: the SHA-256 (in hex) of
    /// its canonical form, the fields in a fixed order with no spacing. Two requests with the
    /// same fingerprint ask for the same movement of the same producto.
    pub fn huella(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a PedidoMovimiento serializes");
        hex::encode(Sha256::digest(&canonical))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_tells_requests_apart_and_nothing_else() {
        let pedido = |id, tipo, cantidad| {
            PedidoMovimiento::new(id, &Movimiento::parse(tipo, cantidad).unwrap()).huella()
        };
        let una = pedido(3, "salida", 2);
        assert_eq!(una.len(), 64);
        assert_eq!(
            una,
            pedido(3, "salida", 2),
            "the same request, the same fingerprint"
        );
        for otra in [
            pedido(4, "salida", 2),
            pedido(3, "entrada", 2),
            pedido(3, "salida", 3),
        ] {
            assert_ne!(una, otra);
        }
    }
}
