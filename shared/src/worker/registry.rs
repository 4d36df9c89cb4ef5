//! Task handlers by name, with their options: what a worker can run, and how it retries it.
//!
//! A handler is an async function of a [`Task`]. It ends with a value, or a [`TaskError`]:
//! a failure (stored as Celery stores an exception), a rejection, or a request to run again
//! later ([`Retry`], Celery's `self.retry(...)`). What a retry may do (how many times, how long
//! to wait, which failures retry by themselves) is set per task when it is registered
//! ([`TaskOptions`], Celery's task attributes); the rules that apply them are in `retry.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::rate::RateLimit;
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
    /// When the soft time limit runs out (Celery's `soft_time_limit`, the second number of the
    /// `timelimit` header), if the message has one. Celery interrupts the task there with
    /// `SoftTimeLimitExceeded`; an async handler cannot be interrupted at an arbitrary point,
    /// so it watches this (or awaits [`Task::soft_limit_reached`]) and returns
    /// [`TaskError::soft_time_limit_exceeded`]. A handler that ignores it is stopped at the
    /// hard limit.
    pub soft_deadline: Option<Instant>,
}

impl Task {
    /// `soft` is the soft time limit in seconds (the message's, or one set at run time).
    pub(crate) fn from_message(
        m: &TaskMessage,
        hostname: &str,
        started: Instant,
        soft: Option<f64>,
    ) -> Self {
        Task {
            id: m.id.clone(),
            name: m.task.clone(),
            args: m.args.clone(),
            kwargs: m.kwargs.clone(),
            retries: m.retries,
            redelivered: m.redelivered,
            hostname: hostname.to_owned(),
            soft_deadline: soft
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .and_then(|limit| started.checked_add(limit)),
        }
    }

    /// A request to run this task again later, as Celery's `self.retry()`: return it as the
    /// task's error (`return Err(task.retry().countdown(d).into())`).
    pub fn retry(&self) -> Retry {
        Retry::default()
    }

    /// Completes when the soft time limit runs out; never, if there is none. Race it with the
    /// work (`tokio::select!`) and return [`TaskError::soft_time_limit_exceeded`] when it wins.
    pub fn soft_limit_reached(&self) -> impl Future<Output = ()> + Send + 'static {
        let deadline = self.soft_deadline;
        async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Whether the soft time limit has run out (for handlers that work in steps and can look).
    pub fn soft_limit_exceeded(&self) -> bool {
        self.soft_deadline.is_some_and(|at| Instant::now() >= at)
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
    /// Run again later (Celery's `Task.retry`): the worker stores `RETRY` and re-sends the
    /// task with the same id, or, when the task's retries are used up, stores a FAILURE
    /// (the retry's exception if it has one, else `MaxRetriesExceededError`). Boxed: it is
    /// larger than the other variants, and every task's result has the size of the largest.
    Retry(Box<Retry>),
}

impl From<Retry> for TaskError {
    fn from(retry: Retry) -> Self {
        TaskError::Retry(Box::new(retry))
    }
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

    /// `SoftTimeLimitExceeded()`, as Celery stores it (billiard's exception, no arguments):
    /// what a task returns when it stops at its soft time limit.
    pub fn soft_time_limit_exceeded() -> Self {
        TaskError::Failed(ExceptionInfo {
            exc_type: "SoftTimeLimitExceeded".into(),
            exc_message: Value::Array(Vec::new()),
            exc_module: Some("billiard.exceptions".into()),
        })
    }
}

/// A request to run the task again later: Celery's `self.retry(countdown=..., eta=...,
/// max_retries=..., exc=...)`, built with [`Task::retry`] and returned as the task's error.
/// Without `countdown` or `eta` it waits the task's `default_retry_delay`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retry {
    /// Run again this long from now.
    pub countdown: Option<Duration>,
    /// Run again at this time (used when no countdown is given, as Celery does).
    pub eta: Option<DateTime<Utc>>,
    /// Overrides the task's `max_retries` for this call: `Some(None)` is unlimited.
    pub max_retries: Option<Option<u32>>,
    /// Why: stored as the `RETRY` result, and as the FAILURE once retries are used up (in
    /// place of `MaxRetriesExceededError`), as Celery does with `retry(exc=...)`.
    pub exc: Option<ExceptionInfo>,
    /// Run again with these positional arguments instead (Celery's `retry(args=...)`).
    pub args: Option<Vec<Value>>,
    /// Run again with these keyword arguments instead (Celery's `retry(kwargs=...)`).
    pub kwargs: Option<Map<String, Value>>,
}

impl Retry {
    pub fn countdown(mut self, countdown: Duration) -> Self {
        self.countdown = Some(countdown);
        self
    }

    pub fn eta(mut self, eta: DateTime<Utc>) -> Self {
        self.eta = Some(eta);
        self
    }

    /// At most this many retries (`None`: no limit) for this call.
    pub fn max_retries(mut self, max: impl Into<Option<u32>>) -> Self {
        self.max_retries = Some(max.into());
        self
    }

    pub fn exc(mut self, exc: ExceptionInfo) -> Self {
        self.exc = Some(exc);
        self
    }

    pub fn args(mut self, args: Vec<Value>) -> Self {
        self.args = Some(args);
        self
    }

    pub fn kwargs(mut self, kwargs: Map<String, Value>) -> Self {
        self.kwargs = Some(kwargs);
        self
    }
}

/// How a task retries, set when it is registered: Celery's task attributes of the same names,
/// with Celery's defaults (`TaskOptions::default()`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    /// Retries allowed before a retry fails instead (`None`: unlimited). Celery's default 3.
    pub max_retries: Option<u32>,
    /// How long a retry without `countdown` or `eta` waits. Celery's default 180 s.
    pub default_retry_delay: Duration,
    /// Failures retried without the handler asking: a [`TaskError::Failed`] whose `exc_type`
    /// is one of these (Celery's `autoretry_for`, matched by the exception's class name).
    pub autoretry_for: Vec<String>,
    /// Exponential backoff for automatic retries (Celery's `retry_backoff`): the factor in
    /// seconds, `Some(1)` being Celery's `True`. The n-th retry waits `factor * 2^n` seconds,
    /// at most `retry_backoff_max`; `None` waits `default_retry_delay`.
    pub retry_backoff: Option<u32>,
    /// The longest backoff, in seconds (Celery's `retry_backoff_max`, 600).
    pub retry_backoff_max: u32,
    /// Full jitter on the backoff: a random wait between 0 and the computed one (Celery's
    /// `retry_jitter`, on by default), so that retries of many tasks spread out.
    pub retry_jitter: bool,
    /// At most this many tasks of this name start per second in this worker (Celery's
    /// `rate_limit`, `"10/m"`); `None`: no limit. The worker's `RATE_LIMITS` overrides it.
    pub rate_limit: Option<RateLimit>,
    /// Store no result when it succeeds, whatever the message says (Celery's task attribute
    /// `ignore_result`; a message's own `ignore_result` header is honoured either way).
    pub ignore_result: bool,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            max_retries: Some(3),
            default_retry_delay: Duration::from_secs(180),
            autoretry_for: Vec::new(),
            retry_backoff: None,
            retry_backoff_max: 600,
            retry_jitter: true,
            rate_limit: None,
            ignore_result: false,
        }
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

/// A registered task: its handler and its options.
#[derive(Clone)]
pub(crate) struct Registered {
    pub handler: Arc<dyn Handler>,
    pub options: Arc<TaskOptions>,
    /// Tasks of this name received (Celery's `total` in `inspect stats`).
    pub total: Arc<std::sync::atomic::AtomicU64>,
}

/// The handlers a worker runs, by task name.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<String, Registered>,
    /// Whether any task was registered with `ignore_result`: when none was, storing a result
    /// does not look the task up again.
    any_ignore_result: bool,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name` (replacing any earlier one), with Celery's default
    /// options.
    pub fn register(&mut self, name: &str, handler: impl Handler) -> &mut Self {
        self.register_with(name, handler, TaskOptions::default())
    }

    /// Registers `handler` under `name` with its own retry options.
    pub fn register_with(
        &mut self,
        name: &str,
        handler: impl Handler,
        options: TaskOptions,
    ) -> &mut Self {
        let task = Registered {
            handler: Arc::new(handler),
            options: Arc::new(options),
            total: Arc::default(),
        };
        self.handlers.insert(name.to_owned(), task);
        self.any_ignore_result = self.handlers.values().any(|t| t.options.ignore_result);
        self
    }

    /// Whether task `name` was registered with `ignore_result`.
    pub(crate) fn ignores_result(&self, name: &str) -> bool {
        self.any_ignore_result && self.options(name).is_some_and(|o| o.ignore_result)
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(name).map(|t| t.handler.clone())
    }

    /// The options `name` was registered with.
    pub fn options(&self, name: &str) -> Option<&TaskOptions> {
        self.handlers.get(name).map(|t| &*t.options)
    }

    pub(crate) fn task(&self, name: &str) -> Option<&Registered> {
        self.handlers.get(name)
    }

    /// How many tasks of each name were received, for names received at least once.
    pub(crate) fn totals(&self) -> serde_json::Map<String, Value> {
        let mut names: Vec<(&String, u64)> = self
            .handlers
            .iter()
            .map(|(n, t)| (n, t.total.load(std::sync::atomic::Ordering::Relaxed)))
            .filter(|(_, total)| *total > 0)
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|(n, total)| (n.clone(), Value::from(total)))
            .collect()
    }

    /// Every task's own rate limit, as registered.
    pub(crate) fn rate_limits(&self) -> impl Iterator<Item = (&str, RateLimit)> {
        self.handlers
            .iter()
            .filter_map(|(name, t)| Some((name.as_str(), t.options.rate_limit?)))
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
