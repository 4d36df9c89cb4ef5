//! The tasks a worker holds, and where each is: waiting for its eta (*scheduled*), waiting for
//! a slot or its rate limit (*reserved*), or running (*active*). Celery's `inspect active`,
//! `reserved` and `scheduled` read it, and a revoke finds what it must stop through it.
//!
//! An executor puts its task on the board when it starts and takes it off when it ends (two
//! short locks per task); what changes in between (the state, the start time) is in atomics of
//! the entry the executor holds, so the board is not locked again. A revoke flags the entry
//! and wakes its executor: a task that waits is stored `REVOKED` at once; a running one is
//! stopped only when the revoke says `terminate`. The flags and their wake-up live in the
//! entry itself (no allocation beyond the entry's own).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::task::AtomicWaker;
use serde_json::{json, Value};

use crate::protocol::{format_datetime, TaskMessage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Where {
    Scheduled = 0,
    Reserved = 1,
    Active = 2,
}

/// One task on the board.
#[derive(Debug)]
pub(crate) struct Entry {
    pub message: Arc<TaskMessage>,
    /// The queue it was taken from, kept only for a message whose `delivery_info` does not
    /// say (what `inspect` shows as its routing key).
    queue: Option<String>,
    state: AtomicU8,
    /// When it started running, in microseconds since the epoch (0: not yet).
    started_us: AtomicU64,
    /// A revoke named this task.
    revoked: AtomicBool,
    /// The revoke said `terminate`: a running task stops too.
    terminate: AtomicBool,
    /// The executor's waker, woken when either flag is set. Only the executor ever waits on
    /// its entry, so one slot is enough, and registering is a few atomic operations (no lock):
    /// every task registers while it waits for a slot and while it runs.
    wake: AtomicWaker,
}

impl Entry {
    pub fn set(&self, state: Where) {
        if state == Where::Active {
            let now = chrono::Utc::now().timestamp_micros().max(0) as u64;
            self.started_us.store(now, Ordering::Relaxed);
        }
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> Where {
        match self.state.load(Ordering::Relaxed) {
            0 => Where::Scheduled,
            1 => Where::Reserved,
            _ => Where::Active,
        }
    }

    /// Completes once a revoke names this task.
    pub fn revoked(&self) -> Flagged<'_> {
        Flagged {
            entry: self,
            flag: &self.revoked,
        }
    }

    /// Completes once a revoke with `terminate` names this task.
    pub fn terminated(&self) -> Flagged<'_> {
        Flagged {
            entry: self,
            flag: &self.terminate,
        }
    }

    /// The request as Celery's `inspect active/reserved` shows it (`Request.info()`).
    pub fn info(&self, hostname: &str) -> Value {
        let m = &self.message;
        let active = self.state() == Where::Active;
        let started = self.started_us.load(Ordering::Relaxed);
        let routing_key = match m.delivery_info.routing_key.as_str() {
            "" => self.queue.as_deref().unwrap_or_default(),
            key => key,
        };
        json!({
            "id": m.id,
            "name": m.task,
            "args": m.args,
            "kwargs": m.kwargs,
            "type": m.task,
            "hostname": hostname,
            "time_start": (active && started > 0).then(|| started as f64 / 1e6),
            "acknowledged": false,
            "delivery_info": {
                "exchange": m.delivery_info.exchange,
                "routing_key": routing_key,
                "priority": m.priority.unwrap_or(0),
                "redelivered": m.redelivered,
            },
            "worker_pid": active.then(std::process::id),
        })
    }

    /// As Celery's `inspect scheduled` shows a task waiting for its eta.
    pub fn scheduled_info(&self, hostname: &str) -> Value {
        json!({
            "eta": self.message.eta.map(format_datetime),
            "priority": self.message.priority.unwrap_or(0),
            "request": self.info(hostname),
        })
    }
}

/// A future that completes once one of an entry's flags is set.
pub(crate) struct Flagged<'a> {
    entry: &'a Entry,
    flag: &'a AtomicBool,
}

impl std::future::Future for Flagged<'_> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // Registered before the flag is read, so a wake-up in between is not lost.
        self.entry.wake.register(cx.waker());
        if self.flag.load(Ordering::Acquire) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// Every task the worker holds, keyed by its entry's address (no key to allocate per task).
#[derive(Debug, Default)]
pub(crate) struct Board {
    entries: Mutex<HashMap<usize, Arc<Entry>, BuildHasherDefault<AddressHasher>>>,
}

/// Hashes an entry's address with one multiplication: addresses of live entries are distinct
/// and chosen by the allocator, so SipHash's protection against chosen keys buys nothing here
/// and costs on every task.
#[derive(Debug, Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: spreads the address's varying low bits over the high ones, which
        // the table uses too.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = n as u64;
    }
}

fn key(entry: &Arc<Entry>) -> usize {
    Arc::as_ptr(entry) as usize
}

impl Board {
    /// Puts a task on the board (taken from `list`), in state `state`.
    pub fn put(&self, list: &str, message: Arc<TaskMessage>, state: Where) -> Arc<Entry> {
        let queue = message
            .delivery_info
            .routing_key
            .is_empty()
            .then(|| crate::keys::queue_of_list(list).to_owned());
        let entry = Arc::new(Entry {
            message,
            queue,
            state: AtomicU8::new(state as u8),
            started_us: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            terminate: AtomicBool::new(false),
            wake: AtomicWaker::new(),
        });
        self.entries
            .lock()
            .expect("board lock")
            .insert(key(&entry), entry.clone());
        entry
    }

    pub fn remove(&self, entry: &Arc<Entry>) {
        self.entries.lock().expect("board lock").remove(&key(entry));
    }

    /// The entries in `state`, oldest first.
    pub fn in_state(&self, state: Where) -> Vec<Arc<Entry>> {
        let entries = self.entries.lock().expect("board lock");
        let mut out: Vec<Arc<Entry>> = entries
            .values()
            .filter(|e| e.state() == state)
            .cloned()
            .collect();
        out.sort_by_key(|e| e.started_us.load(Ordering::Relaxed));
        out
    }

    /// Wakes every entry of a revoked id (and, with `terminate`, stops it if it runs). Returns
    /// the ids found running.
    pub fn revoke(&self, ids: &[String], terminate: bool) -> Vec<String> {
        let entries = self.entries.lock().expect("board lock");
        let mut running = Vec::new();
        for entry in entries.values() {
            if ids.iter().any(|id| *id == entry.message.id) {
                if entry.state() == Where::Active {
                    running.push(entry.message.id.clone());
                }
                if terminate {
                    entry.terminate.store(true, Ordering::Release);
                }
                entry.revoked.store(true, Ordering::Release);
                entry.wake.wake();
            }
        }
        running
    }

    /// What the board holds of task `id`: its state name as Celery's `query_task` gives it,
    /// and its request.
    pub fn query(&self, id: &str, hostname: &str) -> Option<(&'static str, Value)> {
        let entries = self.entries.lock().expect("board lock");
        entries.values().find(|e| e.message.id == id).map(|e| {
            let state = match e.state() {
                Where::Active => "active",
                Where::Reserved => "reserved",
                Where::Scheduled => "scheduled",
            };
            (state, e.info(hostname))
        })
    }
}
