//! The producer side: `send_task` as Celery's `app.send_task`, and `AsyncResult`-style waiting.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde_json::{Map, Value};

use crate::backend::{Backend, ResultWaiter, Subscription};
use crate::broker::Broker;
use crate::connection::Redis;
use crate::error::{QueueError, Result};
use crate::events::tasks::TaskEvents;
use crate::keys;
use crate::protocol::task::NewTask;
use crate::protocol::{ResultMeta, TaskMessage, TaskState, TimeLimit};

/// Per-message options of `send_task`, named as in Celery's `apply_async`.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// The queue (Redis list); the client's default queue if `None`.
    pub queue: Option<String>,
    /// 0–9; on Redis 0 is served first. `None` is Celery's default (0).
    pub priority: Option<u8>,
    /// Run no earlier than this long from now (sets `eta`).
    pub countdown: Option<Duration>,
    /// Run no earlier than this time (overrides `countdown`).
    pub eta: Option<DateTime<Utc>>,
    /// Do not run after this long from now (the worker stores REVOKED `expired` instead).
    pub expires: Option<Duration>,
    /// Use this id instead of a fresh uuid4.
    pub task_id: Option<String>,
    /// Hard time limit, seconds.
    pub time_limit: Option<f64>,
    /// Soft time limit, seconds.
    pub soft_time_limit: Option<f64>,
    /// Ask the worker not to store the result.
    pub ignore_result: bool,
    /// Put the message at the end of its list that workers take from (`RPUSH`), so that it is
    /// served next, before whatever waits on that list; by default it goes behind them
    /// (`LPUSH`, as Celery sends). For health pings (the monitor's), which must not wait behind
    /// a backlog sent at the same priority. Works with kombu's workers too.
    pub next_in_line: bool,
}

impl SendOptions {
    pub fn queue(queue: impl Into<String>) -> Self {
        SendOptions {
            queue: Some(queue.into()),
            ..Default::default()
        }
    }
}

/// Sends tasks and waits for their results. Cheap to clone; one pub/sub connection per
/// client, whatever the number of concurrent waits.
#[derive(Clone)]
pub struct Client {
    broker: Broker,
    backend: Backend,
    waiter: ResultWaiter,
    default_queue: String,
    origin: String,
    reply_to: String,
    /// `task-sent` events, when the client sends them ([`Client::with_sent_events`]).
    events: Option<Arc<TaskEvents>>,
}

impl Client {
    /// Must be called inside a tokio runtime (it starts the result waiter's connection task).
    pub fn new(redis: Redis, default_queue: impl Into<String>) -> Self {
        let backend = Backend::new(redis.clone(), crate::backend::DEFAULT_RESULT_TTL);
        Client {
            broker: Broker::new(redis),
            waiter: ResultWaiter::start(backend.clone()),
            backend,
            default_queue: default_queue.into(),
            origin: format!("gen{}@{}", std::process::id(), crate::hostname()),
            reply_to: uuid::Uuid::new_v4().to_string(),
            events: None,
        }
    }

    /// Sends a `task-sent` event for every task this client publishes, as Celery's
    /// `task_send_sent_event` does, through `events` (made with
    /// [`TaskEvents::for_client`] under [`Client::origin`], its flusher run by the caller).
    /// Best effort, never on the send's path: an event that cannot go is dropped and counted.
    pub fn with_sent_events(mut self, events: Arc<TaskEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// The name this client signs its messages with (`gen<pid>@<host>`, Celery's `origin`),
    /// and the hostname of its events.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn waiter(&self) -> &ResultWaiter {
        &self.waiter
    }

    /// Publishes a task and returns its id, without waiting for anything.
    pub async fn send_task(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<String> {
        let next = options.next_in_line;
        let (queue, message) = self.build(name, args, kwargs, options);
        self.publish(&queue, &message, next).await?;
        Ok(message.id)
    }

    /// Sends one task per element of `args`, all in one round trip (one `LPUSH` per thousand
    /// messages), in order: they are served in the order given (`next_in_line` is not
    /// applied: they go behind what waits). Returns their ids. `Err` means none or only some
    /// were sent.
    pub async fn send_many(
        &self,
        name: &str,
        args: impl IntoIterator<Item = Vec<Value>>,
        options: SendOptions,
    ) -> Result<Vec<String>> {
        let mut queue = None;
        let messages: Vec<TaskMessage> = args
            .into_iter()
            .map(|a| {
                let (q, m) = self.build(name, a, Map::new(), options.clone());
                queue.get_or_insert(q);
                m
            })
            .collect();
        let Some(queue) = queue else {
            return Ok(Vec::new());
        };
        self.broker.publish_many(&queue, &messages).await?;
        if let Some(events) = &self.events {
            for m in &messages {
                events.sent(m, &queue);
            }
        }
        Ok(messages.into_iter().map(|m| m.id).collect())
    }

    /// Publishes a task with its result already awaited: when this returns, the task is queued
    /// and its result channel subscribed, so the result cannot be missed. `Err` means the task
    /// was not sent.
    pub async fn apply(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<AsyncResult> {
        self.apply_prepared(&self.prepare(name, args, kwargs, options))
            .await
    }

    /// Builds a task without sending it, so that the sender holds, before anything can go
    /// wrong on the way, what it needs to take the task back: its id, and the message exactly
    /// as its queue will hold it ([`Client::withdraw`]). Send it with [`Client::apply_prepared`].
    pub fn prepare(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Prepared {
        let next_in_line = options.next_in_line;
        let (queue, message) = self.build(name, args, kwargs, options);
        Prepared {
            queue,
            message,
            next_in_line,
        }
    }

    /// [`Client::apply`] of a task built with [`Client::prepare`].
    pub async fn apply_prepared(&self, task: &Prepared) -> Result<AsyncResult> {
        let message = &task.message;
        // The subscription and the send go out together, one round trip instead of two. The
        // result cannot slip between them: the wait reads the stored key only after Redis has
        // confirmed the subscription, and a worker stores a result before it publishes it.
        let (subscription, sent) = tokio::join!(
            self.waiter.subscribe(&message.id),
            self.publish(&task.queue, message, task.next_in_line)
        );
        sent?;
        Ok(AsyncResult {
            task_id: message.id.clone(),
            // The task is out: a failed subscription is retried by the wait, which reports it
            // if it fails again, rather than reported here as a send that did not happen.
            subscription: subscription.ok(),
            client: self.clone(),
        })
    }

    /// Takes a sent task's message back off its queue if no worker has taken it yet (`LREM` of
    /// the exact message): `true` when it was still waiting, so it will never run and never
    /// store a result; `false` when a worker had taken it (its result may still come), or it
    /// was never sent. Celery has no such call; a sender that gives up on a task it alone
    /// awaits (the monitor's ping that timed out) uses it so that nothing of it is left.
    pub async fn withdraw(&self, task: &Prepared) -> Result<bool> {
        self.broker
            .withdraw(&task.queue, &task.message, task.next_in_line)
            .await
    }

    async fn publish(&self, queue: &str, message: &TaskMessage, next: bool) -> Result<()> {
        if next {
            self.broker.publish_next(queue, message).await?;
        } else {
            self.broker.publish(queue, message).await?;
        }
        if let Some(events) = &self.events {
            events.sent(message, queue);
        }
        Ok(())
    }

    /// A handle on a task sent earlier (by anyone).
    pub fn result(&self, task_id: &str) -> AsyncResult {
        AsyncResult {
            task_id: task_id.to_owned(),
            subscription: None,
            client: self.clone(),
        }
    }

    fn build(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        o: SendOptions,
    ) -> (String, TaskMessage) {
        let queue = o.queue.unwrap_or_else(|| self.default_queue.clone());
        let eta = o.eta.or_else(|| {
            o.countdown
                .map(|c| Utc::now() + chrono::Duration::from_std(c).unwrap_or_default())
        });
        let expires = o
            .expires
            .map(|e| Utc::now() + chrono::Duration::from_std(e).unwrap_or_default());
        let opts = NewTask {
            id: o.task_id,
            eta,
            expires,
            priority: o.priority,
            timelimit: TimeLimit {
                hard: o.time_limit,
                soft: o.soft_time_limit,
            },
            ignore_result: o.ignore_result,
            ..Default::default()
        };
        let message = TaskMessage::build(
            name,
            args,
            kwargs,
            &queue,
            &self.origin,
            &self.reply_to,
            opts,
        );
        (queue, message)
    }
}

/// A task built by [`Client::prepare`] and not necessarily sent yet.
#[derive(Debug, Clone)]
pub struct Prepared {
    queue: String,
    message: TaskMessage,
    next_in_line: bool,
}

impl Prepared {
    /// The task's id, under which its result will be stored.
    pub fn id(&self) -> &str {
        &self.message.id
    }
}

/// A task's result, to read now or wait for (Celery's `AsyncResult`).
pub struct AsyncResult {
    task_id: String,
    subscription: Option<Subscription>,
    client: Client,
}

impl AsyncResult {
    pub fn id(&self) -> &str {
        &self.task_id
    }

    /// The stored state now (PENDING if nothing is stored).
    pub async fn state(&self) -> Result<ResultMeta> {
        self.client.backend.get(&self.task_id).await
    }

    /// Waits for a ready state (SUCCESS, FAILURE or REVOKED) up to `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<ResultMeta> {
        let subscription = match self.subscription {
            Some(s) => s,
            None => self.client.waiter.subscribe(&self.task_id).await?,
        };
        subscription.wait(timeout).await
    }

    /// Deletes the stored result, as Celery's `AsyncResult.forget()` does: for a sender that
    /// has read it and is its only reader, so that it does not stay for the result expiry.
    pub async fn forget(&self) -> Result<()> {
        let key = keys::result_key(&self.task_id);
        self.client
            .broker
            .redis()
            .run(|mut c| {
                let key = &key;
                async move { c.del::<_, ()>(key).await }
            })
            .await
    }

    /// Like Celery's `get()`: the result value, or the task's exception as an error.
    pub async fn get(self, timeout: Duration) -> Result<Value> {
        let meta = self.wait(timeout).await?;
        match meta.status {
            TaskState::Success => Ok(meta.result),
            _ => Err(QueueError::TaskFailed {
                task_id: meta.task_id.clone(),
                exception: Box::new(meta.exception().unwrap_or_else(|| {
                    crate::protocol::ExceptionInfo::new(
                        "Exception",
                        "builtins",
                        meta.result.to_string(),
                    )
                })),
            }),
        }
    }
}
