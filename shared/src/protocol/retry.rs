//! What a retry writes, as Celery 5.5 writes it: the message `Task.retry` re-sends and the
//! `RETRY` result it stores in between (`tests/fixtures/celery-5.5-redis-retry.txt` holds a
//! real worker's, and `fixtures.rs` compares ours with them field by field).
//!
//! Celery's `Task.retry` rebuilds the message from the request (`signature_from_request`, then
//! `apply_async` from inside the task): the same id, body, root, queue, priority, time limits
//! and expiry, `retries` one more, a new `eta`, and, since it is sent from inside the task,
//! the task itself as `parent_id` unless it already had one. We start from the envelope as
//! received instead of rebuilding it, so fields a newer Celery adds travel on too.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::datetime::format_datetime;
use super::envelope::Envelope;
use super::python_repr::{python_repr_dict, python_repr_tuple, python_repr_tuple_cut};
use super::result::{ExceptionInfo, ResultMeta, TaskState};
use super::task::TaskMessage;

impl TaskMessage {
    /// The message that runs this task again at `eta`, as Celery's `Task.retry` sends it: the
    /// JSON text to push onto the task's list.
    ///
    /// What changes, as in Celery's capture: `retries` + 1, `eta`, `parent_id` (the task itself
    /// when it had none), `argsrepr` (a tuple now: `(2,)`), a new `delivery_tag`, and
    /// `properties.origin` (Celery passes the request's origin on as a publish option, which
    /// kombu keeps as a property). A `redelivered` mark from an earlier recovery is dropped:
    /// this is a new publication.
    pub fn retried(&self, eta: DateTime<Utc>) -> String {
        self.retried_with(eta, None, None)
    }

    /// As [`TaskMessage::retried`], with the arguments replaced where given (Celery's
    /// `self.retry(args=..., kwargs=...)`): the body is rewritten, its embed kept.
    pub fn retried_with(
        &self,
        eta: DateTime<Utc>,
        args: Option<&[Value]>,
        kwargs: Option<&Map<String, Value>>,
    ) -> String {
        let replaced = args.is_some() || kwargs.is_some();
        let args = args.unwrap_or(&self.args);
        let kwargs = kwargs.unwrap_or(&self.kwargs);
        let mut headers = self.envelope.headers.clone();
        headers.insert("retries".into(), json!(self.retries.saturating_add(1)));
        headers.insert("eta".into(), json!(format_datetime(eta)));
        let me = || json!(self.id);
        if !headers.get("parent_id").is_some_and(Value::is_string) {
            headers.insert("parent_id".into(), me());
        }
        if !headers.get("root_id").is_some_and(Value::is_string) {
            headers.insert("root_id".into(), me());
        }
        headers.insert("argsrepr".into(), json!(python_repr_tuple_cut(args)));
        headers.insert("kwargsrepr".into(), json!(python_repr_dict(kwargs)));
        headers.remove("redelivered");
        let origin = headers.get("origin").cloned();

        // Celery's order: origin comes right after reply_to.
        let mut properties = Map::new();
        for (key, value) in &self.envelope.properties {
            match key.as_str() {
                "origin" => continue,
                "delivery_tag" => {
                    properties.insert(key.clone(), json!(uuid::Uuid::new_v4().to_string()));
                }
                "delivery_info" => {
                    let mut info = value.clone();
                    if let Some(info) = info.as_object_mut() {
                        info.remove("redelivered");
                    }
                    properties.insert(key.clone(), info);
                }
                _ => {
                    properties.insert(key.clone(), value.clone());
                }
            }
            if key == "reply_to" {
                if let Some(origin) = &origin {
                    properties.insert("origin".into(), origin.clone());
                }
            }
        }
        if !properties.contains_key("delivery_tag") {
            properties.insert(
                "delivery_tag".into(),
                json!(uuid::Uuid::new_v4().to_string()),
            );
        }
        let body = if replaced {
            let payload = json!([args, kwargs, self.embed.to_value()]);
            let text = super::python_json::to_python_json(&payload);
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)
        } else {
            self.envelope.body.clone()
        };
        Envelope {
            body,
            content_encoding: self.envelope.content_encoding.clone(),
            content_type: self.envelope.content_type.clone(),
            headers,
            properties,
            extra: self.envelope.extra.clone(),
        }
        .to_json()
    }
}

impl ExceptionInfo {
    /// The `MaxRetriesExceededError` Celery stores when a task's retries are used up, with its
    /// text: `Can't retry reintentar[<id>] args:(4,) kwargs:{}` (the arguments as the tuple and
    /// dict Python prints).
    pub fn max_retries_exceeded(message: &TaskMessage) -> Self {
        ExceptionInfo::new(
            "MaxRetriesExceededError",
            "celery.exceptions",
            format!(
                "Can't retry {}[{}] args:{} kwargs:{}",
                message.task,
                message.id,
                python_repr_tuple(&message.args),
                python_repr_dict(&message.kwargs)
            ),
        )
    }
}

impl ResultMeta {
    /// The `RETRY` result Celery stores while a task waits to run again: the exception given
    /// to `retry` (or null), not ready (`date_done` null), and the re-sent task, which has the
    /// same id, as its one child (`[[id, null], null]`, an `AsyncResult` as a tuple). Celery
    /// stores `parent_id` whenever the request has one (from the second attempt on, the task
    /// itself). Celery's `traceback` is the Python stack of the `Retry` raised; we have none
    /// and write null, as for our failures.
    pub fn retry(task_id: &str, exc: Option<&ExceptionInfo>, parent_id: Option<&str>) -> Self {
        let mut meta = Self::pending(task_id);
        meta.status = TaskState::Retry;
        meta.result = exc
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or(Value::Null);
        meta.children = vec![json!([[task_id, null], null])];
        if let Some(parent) = parent_id {
            meta.extra.insert("parent_id".into(), json!(parent));
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::super::task::NewTask;
    use super::*;

    #[test]
    fn a_retry_with_new_arguments_rewrites_the_body_and_keeps_the_embed() {
        let mut m = TaskMessage::build(
            "contar",
            vec![json!(0)],
            Map::new(),
            "inventario",
            "gen1@vm",
            "r",
            NewTask::default(),
        );
        m.embed.callbacks = json!([{"task": "noop", "args": [], "kwargs": {}, "options": {},
                                    "subtask_type": null, "immutable": false}]);
        // The embed travels in the body: rebuild the message with it there.
        let body = super::super::python_json::to_python_json(&json!([
            m.args,
            m.kwargs,
            m.embed.to_value()
        ]));
        m.envelope.body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body);
        let mut kwargs = Map::new();
        kwargs.insert("visto".into(), json!("sí"));
        let again = TaskMessage::decode(
            m.retried_with(Utc::now(), Some(&[json!(1), json!(2)]), Some(&kwargs))
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(again.args, vec![json!(1), json!(2)]);
        assert_eq!(again.kwargs, kwargs);
        assert_eq!(again.embed, m.embed);
        assert_eq!(again.envelope.headers["argsrepr"], "(1, 2)");
        assert_eq!(again.envelope.headers["kwargsrepr"], "{'visto': 'sí'}");
        // Without replacements the body is the one received, byte for byte.
        let same = TaskMessage::decode(m.retried(Utc::now()).as_bytes()).unwrap();
        assert_eq!(same.envelope.body, m.envelope.body);
    }

    #[test]
    fn retried_message_keeps_the_id_and_counts_the_attempt() {
        let m = TaskMessage::build(
            "reintentar",
            vec![json!(2)],
            Map::new(),
            "inventario",
            "gen1@vm",
            "r",
            NewTask::default(),
        );
        let eta = Utc::now();
        let again = TaskMessage::decode(m.retried(eta).as_bytes()).unwrap();
        assert_eq!(again.id, m.id);
        assert_eq!(again.retries, 1);
        assert_eq!(again.parent_id.as_deref(), Some(m.id.as_str()));
        assert_eq!(again.root_id, m.root_id);
        assert_eq!(again.args, m.args);
        assert_ne!(again.delivery_tag, m.delivery_tag);
        assert_eq!(again.eta.map(format_datetime), Some(format_datetime(eta)));
        assert_eq!(again.envelope.headers["argsrepr"], "(2,)");
        assert_eq!(again.envelope.properties["origin"], "gen1@vm");
        let keys: Vec<&str> = again
            .envelope
            .properties
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys[..3], ["correlation_id", "reply_to", "origin"]);
        // A second retry counts on and keeps the parent it now has.
        let third = TaskMessage::decode(again.retried(eta).as_bytes()).unwrap();
        assert_eq!(third.retries, 2);
        assert_eq!(third.parent_id.as_deref(), Some(m.id.as_str()));
    }
}
