//! Celery worker events on Redis pub/sub, both sides: what our workers send
//! ([`EventPublisher`], and [`TaskEvents`] for their tasks), and what a listener makes of
//! everyone's events, ours and Python Celery's ([`EventListener`] keeping a [`WorkerTable`]).
//!
//! - [`publisher`]: building and PUBLISHing events with Celery's fields and Lamport clock.
//! - [`tasks`]: task events (`task-received` ... `task-revoked`), batched on `task.multi`.
//! - [`workers`]: the live-worker table and its liveness rule (Celery's expire window).
//! - [`listener`]: the subscription that feeds the table (and, when asked, a handler of task
//!   events), reconnecting after outages.
//! - [`task_feed`]: task events as a listener reads them, anyone's, leniently and bounded.

pub mod listener;
pub mod publisher;
pub mod task_feed;
pub mod tasks;
pub mod workers;

pub use listener::EventListener;
pub use publisher::{EventPublisher, WorkerCounts};
pub use task_feed::{TaskEvent, TaskEventHandler, TaskEventKind};
pub use tasks::TaskEvents;
pub use workers::{WorkerStatus, WorkerTable};
