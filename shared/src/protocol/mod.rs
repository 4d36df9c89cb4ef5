//! The Celery wire format (protocol v2 over kombu's Redis transport), with no Redis in it.
//!
//! Everything that crosses Redis is one of three JSON documents, each with its own module:
//! a task message ([`task`]), a stored task result ([`result`]) and a worker event ([`event`]).
//! Task messages and events share kombu's envelope ([`envelope`]): a JSON object whose `body`
//! is base64 of the payload. Decoding is tolerant of fields we do not use and strict about the
//! ones we need: a malformed document is a [`ProtocolError`], never a panic. The decoders a
//! worker runs for every task (the envelope, and the task body inside it) have a fast path in
//! `fast.rs`, held by tests to the checked one: the same documents accepted, the same values
//! built, the same errors.
//!
//! We write JSON the way Python's `json.dumps` does (`", "` and `": "` separators), so what our
//! programs leave in Redis reads exactly like what Celery leaves there.
//!
//! The other files hold what the documents share: the error (`error.rs`), Celery's timestamps
//! (`datetime.rs`), Python's JSON text (`python_json.rs`) and `repr` (`python_repr.rs`), a
//! task body's parts (`body.rs`), and what a retry re-sends and stores (`retry.rs`). This file
//! only names the modules and what they export.

mod body;
pub mod control;
mod datetime;
pub mod envelope;
pub(crate) mod error;
pub mod event;
mod fast;
#[cfg(test)]
mod mutants;
mod python_json;
pub(crate) mod python_repr;
pub mod result;
mod retry;
pub mod task;

pub use datetime::{format_datetime, parse_datetime};
pub use envelope::{DeliveryInfo, Envelope};
pub use error::ProtocolError;
pub use event::WorkerEvent;
pub use python_json::to_python_json;
pub use result::{ExceptionInfo, ResultMeta, TaskState};
pub use task::{Embed, TaskMessage, TimeLimit};
