//! Productos and stock movements, each checked once when it is built from outside input.
//!
//! Whoever holds a [`NuevoProducto`] or a [`Movimiento`] holds a valid one: the only way to
//! get one is `parse`, so neither the store nor the task handlers validate again. The same
//! limits are repeated as CHECK constraints in the migration, the last line of defence for
//! writers that do not go through this code.

use serde::{Deserialize, Serialize};

/// Longest `nombre`, in characters.
pub const MAX_NOMBRE: usize = 120;
/// Largest stock of one producto and largest single movement. Keeps every sum far from
/// integer overflow (SQLite would silently turn an overflowing sum into a float).
pub const MAX_CANTIDAD: i64 = 1_000_000_000;
/// Largest `precio`.
pub const MAX_PRECIO: f64 = 1_000_000_000.0;

/// Why some input is not a valid producto or movement. The messages are for people (they
/// reach API clients as `detalle`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidacionError {
    #[error("el nombre no puede estar vacío")]
    NombreVacio,
    #[error("el nombre tiene {largo} caracteres; el máximo es {MAX_NOMBRE}")]
    NombreLargo { largo: usize },
    /// NUL, escapes, line breaks inside the name. SQLite's `length()` stops at a NUL, so a
    /// name starting with one would break the table's CHECK at insert time instead.
    #[error("el nombre no puede contener caracteres de control")]
    NombreConControl,
    #[error("la cantidad debe ser un entero entre 0 y {MAX_CANTIDAD}; se recibió {0}")]
    CantidadFueraDeRango(i64),
    #[error("el precio debe ser un número entre 0 y {MAX_PRECIO}; se recibió {0}")]
    PrecioFueraDeRango(f64),
    #[error("el tipo de movimiento debe ser \"entrada\" o \"salida\"; se recibió {0:?}")]
    TipoDesconocido(String),
    #[error(
        "la cantidad de un movimiento debe ser un entero entre 1 y {MAX_CANTIDAD}; se recibió {0}"
    )]
    CantidadMovimiento(i64),
}

/// A producto as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(description = "Un producto tal como está guardado.")]
#[schema(example = json!({"id": 1, "nombre": "Arroz", "cantidad": 40, "precio": 1.25, "version": 3,
    "creado_en": "2026-01-05T10:00:00Z", "actualizado_en": "2026-01-05T10:00:00Z"}))]
pub struct Producto {
    pub id: i64,
    pub nombre: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub cantidad: i64,
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub precio: f64,
    // The field docs below are in Spanish: they are the API document's descriptions.
    /// Sube en uno con cada cambio del producto, movimientos incluidos: es el `ETag` de
    /// `GET /inventario/{id}`, que `If-Match` nombra para cambiar lo leído.
    pub version: i64,
    /// Fecha de alta, RFC 3339 en UTC.
    pub creado_en: String,
    /// Fecha del último cambio, RFC 3339 en UTC.
    pub actualizado_en: String,
}

/// The fields a client sets, validated: what `POST /inventario` creates and
/// `PUT /inventario/{id}` replaces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NuevoProducto {
    nombre: String,
    cantidad: i64,
    precio: f64,
}

impl NuevoProducto {
    /// Checks every field; the name is stored trimmed, so "  Arroz " and "Arroz" are the same.
    pub fn parse(nombre: &str, cantidad: i64, precio: f64) -> Result<Self, ValidacionError> {
        let nombre = nombre.trim();
        if nombre.is_empty() {
            return Err(ValidacionError::NombreVacio);
        }
        if nombre.chars().any(char::is_control) {
            return Err(ValidacionError::NombreConControl);
        }
        let largo = nombre.chars().count();
        if largo > MAX_NOMBRE {
            return Err(ValidacionError::NombreLargo { largo });
        }
        if !(0..=MAX_CANTIDAD).contains(&cantidad) {
            return Err(ValidacionError::CantidadFueraDeRango(cantidad));
        }
        // `contains` is false for NaN, so a NaN price is refused too.
        if !(0.0..=MAX_PRECIO).contains(&precio) {
            return Err(ValidacionError::PrecioFueraDeRango(precio));
        }
        Ok(NuevoProducto {
            nombre: nombre.to_owned(),
            cantidad,
            precio,
        })
    }

    pub fn nombre(&self) -> &str {
        &self.nombre
    }

    pub fn cantidad(&self) -> i64 {
        self.cantidad
    }

    pub fn precio(&self) -> f64 {
        self.precio
    }
}

/// Which way stock moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(description = "`entrada` sube el stock; `salida` lo baja, nunca por debajo de cero.")]
pub enum TipoMovimiento {
    /// Goods received: stock goes up.
    Entrada,
    /// Goods shipped: stock goes down, never below zero.
    Salida,
}

impl TipoMovimiento {
    pub fn as_str(self) -> &'static str {
        match self {
            TipoMovimiento::Entrada => "entrada",
            TipoMovimiento::Salida => "salida",
        }
    }
}

impl std::str::FromStr for TipoMovimiento {
    type Err = ValidacionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "entrada" => Ok(TipoMovimiento::Entrada),
            "salida" => Ok(TipoMovimiento::Salida),
            other => Err(ValidacionError::TipoDesconocido(other.to_owned())),
        }
    }
}

/// A valid stock movement: a direction and a positive number of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Movimiento {
    tipo: TipoMovimiento,
    cantidad: i64,
}

impl Movimiento {
    pub fn parse(tipo: &str, cantidad: i64) -> Result<Self, ValidacionError> {
        let tipo = tipo.parse()?;
        if !(1..=MAX_CANTIDAD).contains(&cantidad) {
            return Err(ValidacionError::CantidadMovimiento(cantidad));
        }
        Ok(Movimiento { tipo, cantidad })
    }

    pub fn tipo(&self) -> TipoMovimiento {
        self.tipo
    }

    pub fn cantidad(&self) -> i64 {
        self.cantidad
    }

    /// The signed change to the stock.
    pub fn delta(&self) -> i64 {
        match self.tipo {
            TipoMovimiento::Entrada => self.cantidad,
            TipoMovimiento::Salida => -self.cantidad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producto_rules() {
        let ok = NuevoProducto::parse("  Arroz 1 kg ", 0, 0.0).unwrap();
        assert_eq!(ok.nombre(), "Arroz 1 kg");
        assert_eq!(
            NuevoProducto::parse(" \t", 1, 1.0),
            Err(ValidacionError::NombreVacio)
        );
        let largo = "ñ".repeat(MAX_NOMBRE + 1);
        assert!(matches!(
            NuevoProducto::parse(&largo, 1, 1.0),
            Err(ValidacionError::NombreLargo { .. })
        ));
        // Exactly the limit, counted in characters rather than bytes.
        assert!(NuevoProducto::parse(&"ñ".repeat(MAX_NOMBRE), 1, 1.0).is_ok());
        assert!(NuevoProducto::parse("x", -1, 1.0).is_err());
        assert!(NuevoProducto::parse("x", MAX_CANTIDAD + 1, 1.0).is_err());
        assert!(NuevoProducto::parse("x", 1, -0.01).is_err());
        assert!(NuevoProducto::parse("x", 1, f64::NAN).is_err());
        for nombre in ["\0Arroz", "Arr\u{1b}[31moz", "Arroz\n1 kg", "Arroz\u{7f}"] {
            assert_eq!(
                NuevoProducto::parse(nombre, 1, 1.0),
                Err(ValidacionError::NombreConControl),
                "{nombre:?}"
            );
        }
        // Surrounding whitespace (line breaks included) is trimmed, not refused.
        assert!(NuevoProducto::parse("\nArroz\t", 1, 1.0).is_ok());
    }

    #[test]
    fn movimiento_rules() {
        assert_eq!(Movimiento::parse("entrada", 5).unwrap().delta(), 5);
        assert_eq!(Movimiento::parse("salida", 5).unwrap().delta(), -5);
        assert!(matches!(
            Movimiento::parse("robo", 5),
            Err(ValidacionError::TipoDesconocido(_))
        ));
        assert!(Movimiento::parse("salida", 0).is_err());
        assert!(Movimiento::parse("entrada", -3).is_err());
    }
}
