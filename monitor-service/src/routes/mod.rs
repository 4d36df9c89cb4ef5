//! The HTTP routes, one module per resource, so each handler sits with the types it answers
//! with: the watch itself (`monitor`: `/monitor`, `/monitor/historial`), the web dashboard
//! (`dashboard`: the page, its assets and `/monitor/stream`), and operations (`ops`: health,
//! metrics, and the JSON answers for requests no route takes). [`crate::app`] puts them
//! together.

pub mod colas;
pub mod cuarentena;
pub mod dashboard;
pub mod monitor;
pub mod openapi;
pub mod ops;
pub mod tareas;
