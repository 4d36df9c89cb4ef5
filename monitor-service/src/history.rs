//! The monitor's memory: recent pings and state changes, kept three ways. In this process, two
//! bounded rings (changes have their own, so a flood of pings never pushes them out) serve
//! `GET /monitor/historial`. In Redis, a capped stream (`XADD monitor:historial MAXLEN ~ n`)
//! outlives the process and can be browsed in Redis Insight. Optionally, a file of JSON lines.
//!
//! Writing to Redis and to the file happens in a background task fed by a bounded channel, so
//! a slow or absent Redis never delays the ping loop; if the channel is full, entries are
//! dropped from the stream (they are still in memory) and counted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use shared::connection::Outage;
use shared::shutdown::CancellationToken;
use shared::Redis;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where the history goes besides memory.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub stream: String,
    pub stream_maxlen: usize,
    pub file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    pings: Mutex<VecDeque<Value>>,
    changes: Mutex<VecDeque<Value>>,
    out: mpsc::Sender<Value>,
    dropped: AtomicU64,
}

/// Entries waiting for Redis or the file; beyond this they are dropped there.
const BACKLOG: usize = 4096;

impl History {
    /// Starts the writer, which drains what is queued and stops when `shutdown` is cancelled.
    pub fn start(
        capacity: usize,
        redis: Redis,
        sinks: Sinks,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (out, rx) = mpsc::channel(BACKLOG);
        let writer = tokio::spawn(write(rx, redis, sinks, shutdown));
        let history = History {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                pings: Mutex::default(),
                changes: Mutex::default(),
                out,
                dropped: AtomicU64::new(0),
            }),
        };
        (history, writer)
    }

    pub fn record_ping(&self, entry: Value) {
        self.push(&self.inner.pings, entry);
    }

    pub fn record_change(&self, entry: Value) {
        self.push(&self.inner.changes, entry);
    }

    fn push(&self, ring: &Mutex<VecDeque<Value>>, entry: Value) {
        {
            let mut ring = ring.lock().expect("history lock");
            if ring.len() == self.inner.capacity {
                ring.pop_front();
            }
            ring.push_back(entry.clone());
        }
        if self.inner.out.try_send(entry).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The newest `limit` pings and changes, newest first.
    pub fn recent(&self, limit: usize) -> (Vec<Value>, Vec<Value>) {
        let newest = |ring: &Mutex<VecDeque<Value>>| -> Vec<Value> {
            ring.lock()
                .expect("history lock")
                .iter()
                .rev()
                .take(limit)
                .cloned()
                .collect()
        };
        (newest(&self.inner.pings), newest(&self.inner.changes))
    }

    /// Entries that could not be queued for Redis or the file.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

async fn write(
    mut rx: mpsc::Receiver<Value>,
    redis: Redis,
    sinks: Sinks,
    shutdown: CancellationToken,
) {
    let mut outage = Outage::new("history");
    let mut file = match &sinks.file {
        Some(path) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
        {
            Ok(f) => Some(f),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot open HISTORY_FILE; history goes to memory and Redis only");
                None
            }
        },
        None => None,
    };
    loop {
        let entry = tokio::select! {
            biased;
            entry = rx.recv() => entry,
            _ = shutdown.cancelled() => None,
        };
        let Some(entry) = entry else { break };
        // Take whatever else is queued, to write it in one round trip.
        let mut batch = vec![entry];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if let Some(f) = file.as_mut() {
            let mut lines = String::new();
            for e in &batch {
                lines.push_str(&e.to_string());
                lines.push('\n');
            }
            if let Err(error) = f.write_all(lines.as_bytes()).await {
                tracing::warn!(%error, "could not append to HISTORY_FILE");
            }
        }
        // While Redis is down the stream misses entries (memory and the file keep them); the
        // outage is logged once, not per entry.
        let result = redis
            .run(|mut c| {
                let mut pipe = redis::pipe();
                for e in &batch {
                    let tipo = e.get("tipo").and_then(Value::as_str).unwrap_or("");
                    let servicio = e.get("servicio").and_then(Value::as_str).unwrap_or("");
                    pipe.cmd("XADD")
                        .arg(&sinks.stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(sinks.stream_maxlen)
                        .arg("*")
                        .arg("tipo")
                        .arg(tipo)
                        .arg("servicio")
                        .arg(servicio)
                        .arg("datos")
                        .arg(e.to_string())
                        .ignore();
                }
                async move { pipe.query_async::<()>(&mut c).await }
            })
            .await;
        match result {
            Ok(()) => outage.ok(),
            Err(error) => {
                outage.failed(&error);
            }
        }
    }
    if let Some(mut f) = file {
        let _ = f.flush().await;
    }
}
