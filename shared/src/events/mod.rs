//! Celery worker events on Redis pub/sub, both sides: what our workers send
//! ([`EventPublisher`]), and what a listener makes of everyone's events, ours and Python
//! Celery's ([`EventListener`] keeping a [`WorkerTable`]).
//!
//! - [`publisher`]: building and PUBLISHing events with Celery's fields and Lamport clock.
//! - [`workers`]: the live-worker table and its liveness rule (Celery's expire window).
//! - [`listener`]: the subscription that feeds the table, reconnecting after outages.

pub mod listener;
pub mod publisher;
pub mod workers;

pub use listener::EventListener;
pub use publisher::{EventPublisher, WorkerCounts};
pub use workers::{WorkerStatus, WorkerTable};
