//! Task handlers by name: what a worker can run.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::{ExceptionInfo, TaskMessage};

/// What a handler receives: the task's arguments and its identity.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// How many times it ran before (Celery's `retries`).
    pub retries: u32,
    /// Whether the broker delivered it before (its consumer died or it was requeued).
    pub redelivered: bool,
    /// The worker's node name (`name@host`).
    pub hostname: String,
}

impl Task {
    pub(crate) fn from_message(m: &TaskMessage, hostname: &str) -> Self {
        Task {
            id: m.id.clone(),
            name: m.task.clone(),
            args: m.args.clone(),
            kwargs: m.kwargs.clone(),
            retries: m.retries,
            redelivered: m.redelivered,
            hostname: hostname.to_owned(),
        }
    }

    /// Positional argument `i` or keyword argument `name`, whichever is given.
    pub fn arg(&self, i: usize, name: &str) -> Option<&Value> {
        self.args.get(i).or_else(|| self.kwargs.get(name))
    }
}

/// How a task can end other than with a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    /// Stored as a FAILURE result with this exception.
    Failed(ExceptionInfo),
    /// Not run: put back on the queue (`requeue`) or, with the reason, into quarantine.
    Reject { requeue: bool, reason: String },
}

impl TaskError {
    /// A failure Python rebuilds as `<module>.<exc_type>(message)`.
    pub fn new(exc_type: &str, exc_module: &str, message: impl Into<String>) -> Self {
        TaskError::Failed(ExceptionInfo::new(exc_type, exc_module, message))
    }

    /// `ValueError(message)`: the arguments are wrong.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", "builtins", message)
    }

    /// `RuntimeError(message)`: something the task depends on failed.
    pub fn runtime_error(message: impl Into<String>) -> Self {
        Self::new("RuntimeError", "builtins", message)
    }
}

pub type TaskResult = Result<Value, TaskError>;
pub type TaskFuture = Pin<Box<dyn Future<Output = TaskResult> + Send>>;

/// An async task handler. Any `Fn(Task) -> impl Future<Output = TaskResult>` is one.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, task: Task) -> TaskFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Task) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    fn call(&self, task: Task) -> TaskFuture {
        Box::pin(self(task))
    }
}

/// The handlers a worker runs, by task name.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name` (replacing any earlier one).
    pub fn register(&mut self, name: &str, handler: impl Handler) -> &mut Self {
        self.handlers.insert(name.to_owned(), Arc::new(handler));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
