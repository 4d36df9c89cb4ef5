//! The initial data: the productos of `seeds/productos.json`, compiled into the library so
//! every binary seeds the same set wherever it runs. Loading it is [`Store::seed`]'s job,
//! which does it once per database.
//!
//! [`Store::seed`]: crate::Store::seed

use serde::Deserialize;

use crate::model::{NuevoProducto, ValidacionError};

/// `seeds/productos.json`.
pub const SEMILLA_PRODUCTOS: &str = include_str!("../../seeds/productos.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entrada {
    nombre: String,
    cantidad: i64,
    precio: f64,
}

/// Why a seed file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SemillaError {
    #[error("la semilla no es un arreglo JSON de productos: {0}")]
    Json(#[from] serde_json::Error),
    #[error("el producto {posicion} de la semilla no es válido: {error}")]
    Invalido {
        posicion: usize,
        error: ValidacionError,
    },
}

/// Parses and validates a seed file: a JSON array of `{nombre, cantidad, precio}`.
pub fn parse_semilla(json: &str) -> Result<Vec<NuevoProducto>, SemillaError> {
    let entradas: Vec<Entrada> = serde_json::from_str(json)?;
    entradas
        .iter()
        .enumerate()
        .map(|(posicion, e)| {
            NuevoProducto::parse(&e.nombre, e.cantidad, e.precio)
                .map_err(|error| SemillaError::Invalido { posicion, error })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_seed_holds_twenty_valid_productos() {
        let productos = super::parse_semilla(super::SEMILLA_PRODUCTOS).unwrap();
        assert_eq!(productos.len(), 20);
    }
}
