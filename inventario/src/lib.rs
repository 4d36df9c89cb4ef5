//! # inventario: the inventory domain
//!
//! What the REST service and the worker share: productos and stock
//! movements as types that can only hold valid values ([`model`]), and the store every process
//! opens on the same database, a SQLite file or PostgreSQL ([`store`], seeded once from
//! `seeds/productos.json` by [`seed`]; its full listing served from memory while the database
//! is unchanged by [`cache`]), and
//! the names and arguments of the inventory tasks ([`tareas`]).
//!
//! It knows nothing of HTTP or of the queue: the service turns requests into these types, and
//! the worker's task handlers turn task arguments into them.

pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
pub mod model;
pub mod seed;
pub mod store;
pub mod tareas;

pub use model::{
    Movimiento, NuevoProducto, Producto, TipoMovimiento, ValidacionError, MAX_CANTIDAD, MAX_NOMBRE,
    MAX_PRECIO,
};
pub use seed::{parse_semilla, SEMILLA_PRODUCTOS};
pub use store::{
    Backend, MovimientoAplicado, Pagina, Pedido, PoolConfig, Precondicion, Store, StoreError,
};
pub use tareas::{PedidoMovimiento, APLICAR_MOVIMIENTO, OBTENER_ESTADO};
