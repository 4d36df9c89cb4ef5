//! A task's stored result, as Celery's Redis backend writes it at `celery-task-meta-<id>`:
//! `{status, result, traceback, children, date_done, task_id}`. Failures carry
//! `{exc_type, exc_message, exc_module}` as the result so Python can rebuild the exception.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::datetime::format_datetime;
use super::error::ProtocolError;
use super::python_json::to_python_json;

/// Celery's task states. PENDING is never stored: a missing key reads as PENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    Pending,
    Received,
    Started,
    Success,
    Failure,
    Retry,
    Revoked,
    Rejected,
    Ignored,
    /// A state of the task's own (Celery's `update_state(state="PROGRESS")`): not ready.
    #[serde(other)]
    Custom,
}

impl TaskState {
    /// The states after which nothing more will happen (Celery's READY_STATES).
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Retry => "RETRY",
            TaskState::Revoked => "REVOKED",
            TaskState::Rejected => "REJECTED",
            TaskState::Ignored => "IGNORED",
            TaskState::Custom => "CUSTOM",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exception as Celery serializes it in JSON. `exc_message` is the exception's args.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    pub exc_message: Value,
    pub exc_module: Option<String>,
}

impl ExceptionInfo {
    pub fn new(exc_type: &str, exc_module: &str, message: impl Into<String>) -> Self {
        ExceptionInfo {
            exc_type: exc_type.to_owned(),
            exc_message: Value::Array(vec![Value::String(message.into())]),
            exc_module: Some(exc_module.to_owned()),
        }
    }

    /// The unknown-task failure Celery stores: `NotRegistered('<name>')`.
    pub fn not_registered(task: &str) -> Self {
        Self::new("NotRegistered", "celery.exceptions", task)
    }

    /// The first message argument as text, for logs and errors.
    pub fn message(&self) -> String {
        match &self.exc_message {
            Value::Array(a) if a.len() == 1 => a[0]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| a[0].to_string()),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Python's `repr` of the exception rebuilt from this stored form, `ValueError('mal')`:
    /// what Celery's events and errors show of an exception. Celery rebuilds it as
    /// `cls(*exc_message)` from a list and `cls(exc_message)` from anything else, and Python
    /// prints the class name and the arguments' reprs (the module is not shown).
    pub fn python_repr(&self) -> String {
        use super::python_repr::python_repr;
        let args: Vec<String> = match &self.exc_message {
            Value::Array(a) => a.iter().map(python_repr).collect(),
            other => vec![python_repr(other)],
        };
        format!("{}({})", self.exc_type, args.join(", "))
    }
}

impl std::fmt::Display for ExceptionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.message())
    }
}

/// The stored result document. Fields Celery may add (`name`, `args`, … with
/// `result_extended`; `group_id`, `parent_id`) are kept in `extra`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultMeta {
    pub status: TaskState,
    /// The name of a state of the task's own (`PROGRESS`), which `status` can only call
    /// `Custom`: read from the document and written back, so it is shown and kept as stored.
    pub custom_status: Option<String>,
    pub result: Value,
    pub traceback: Option<String>,
    pub children: Vec<Value>,
    pub date_done: Option<String>,
    pub task_id: String,
    pub extra: Map<String, Value>,
}

/// The document as read: the status still a name.
#[derive(Deserialize)]
struct Stored {
    status: String,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    children: Vec<Value>,
    #[serde(default)]
    date_done: Option<String>,
    task_id: String,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The document as written, in Celery's field order, borrowed from the meta: what Celery adds
/// (`group_id`, `parent_id`, `result_extended`'s fields) comes before `task_id`, which
/// `_store_result` appends last.
#[derive(Serialize)]
struct Written<'a> {
    status: &'a str,
    result: &'a Value,
    traceback: &'a Option<String>,
    children: &'a [Value],
    date_done: &'a Option<String>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
    task_id: &'a str,
}

impl From<Stored> for ResultMeta {
    fn from(d: Stored) -> Self {
        let status = TaskState::deserialize(serde::de::value::StrDeserializer::<
            serde::de::value::Error,
        >::new(&d.status))
        .unwrap_or(TaskState::Custom);
        ResultMeta {
            status,
            custom_status: (status == TaskState::Custom).then_some(d.status),
            result: d.result,
            traceback: d.traceback,
            children: d.children,
            date_done: d.date_done,
            task_id: d.task_id,
            extra: d.extra,
        }
    }
}

impl<'de> Deserialize<'de> for ResultMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Stored::deserialize(d).map(ResultMeta::from)
    }
}

impl Serialize for ResultMeta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Written {
            status: self.status_name(),
            result: &self.result,
            traceback: &self.traceback,
            children: &self.children,
            date_done: &self.date_done,
            extra: &self.extra,
            task_id: &self.task_id,
        }
        .serialize(s)
    }
}

impl ResultMeta {
    fn ready(task_id: &str, status: TaskState, result: Value, traceback: Option<String>) -> Self {
        ResultMeta {
            status,
            custom_status: None,
            result,
            traceback,
            children: Vec::new(),
            date_done: Some(format_datetime(chrono::Utc::now())),
            task_id: task_id.to_owned(),
            extra: Map::new(),
        }
    }

    pub fn success(task_id: &str, result: Value) -> Self {
        Self::ready(task_id, TaskState::Success, result, None)
    }

    pub fn failure(task_id: &str, exc: &ExceptionInfo, traceback: Option<String>) -> Self {
        let result = serde_json::to_value(exc).unwrap_or(Value::Null);
        Self::ready(task_id, TaskState::Failure, result, traceback)
    }

    /// A REVOKED result; `reason` is `revoked`, `expired` or `terminated`.
    pub fn revoked(task_id: &str, reason: &str) -> Self {
        let exc = ExceptionInfo::new("TaskRevokedError", "celery.exceptions", reason);
        let result = serde_json::to_value(&exc).unwrap_or(Value::Null);
        Self::ready(task_id, TaskState::Revoked, result, None)
    }

    /// STARTED, stored before a task runs when the worker tracks it (Celery's
    /// `task_track_started`): the result names the process and the worker.
    pub fn started(task_id: &str, hostname: &str) -> Self {
        let mut meta = Self::pending(task_id);
        meta.status = TaskState::Started;
        meta.result = serde_json::json!({"pid": std::process::id(), "hostname": hostname});
        meta
    }

    /// What a missing key means.
    pub fn pending(task_id: &str) -> Self {
        ResultMeta {
            status: TaskState::Pending,
            custom_status: None,
            result: Value::Null,
            traceback: None,
            children: Vec::new(),
            date_done: None,
            task_id: task_id.to_owned(),
            extra: Map::new(),
        }
    }

    /// The state as Celery names it: `SUCCESS`, …, or a custom state's own name.
    pub fn status_name(&self) -> &str {
        match (self.status, &self.custom_status) {
            (TaskState::Custom, Some(name)) => name,
            (state, _) => state.as_str(),
        }
    }

    pub fn parse(raw: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(raw).map_err(|e| ProtocolError::NotJson(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        to_python_json(self)
    }

    /// The exception of a FAILURE or REVOKED result.
    pub fn exception(&self) -> Option<ExceptionInfo> {
        match self.status {
            TaskState::Failure | TaskState::Revoked | TaskState::Retry => {
                serde_json::from_value(self.result.clone()).ok()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn python_repr_rebuilds_the_exception() {
        let exc = ExceptionInfo::new("ValueError", "builtins", "sin stock");
        assert_eq!(exc.python_repr(), "ValueError('sin stock')");
        assert_eq!(
            ExceptionInfo::not_registered("no_such_task").python_repr(),
            "NotRegistered('no_such_task')"
        );
        let with = |message: Value| ExceptionInfo {
            exc_type: "KeyError".into(),
            exc_message: message,
            exc_module: None,
        };
        assert_eq!(with(json!([])).python_repr(), "KeyError()");
        assert_eq!(
            with(json!(["a", 1, null])).python_repr(),
            "KeyError('a', 1, None)"
        );
        // Not a list: one argument, as `cls(exc_message)`.
        assert_eq!(with(json!("it's")).python_repr(), r"KeyError('it\'s')");
        assert_eq!(with(Value::Null).python_repr(), "KeyError(None)");
    }
}
