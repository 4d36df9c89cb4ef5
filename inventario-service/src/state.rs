//! What every handler shares: the store, the queue client, and the metrics.

use std::time::Duration;

use axum::extract::FromRef;

use shared::inventory::Store;
use shared::{Client, Redis};

use crate::metrics::Metrics;

/// Cheap to clone; every field is a handle. Handlers may extract any field on its own
/// (`State<Store>`, `State<Metrics>`, …).
#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub redis: Redis,
    pub client: Client,
    pub metrics: Metrics,
    /// The longest a request waits on Redis: with Redis down, queue routes answer 503 within
    /// this, and the CRUD routes do not depend on it at all.
    pub redis_timeout: Duration,
}

impl AppState {
    /// Must be called inside a tokio runtime (the client starts its result connection).
    pub fn new(store: Store, redis: Redis, queue: &str, redis_timeout: Duration) -> Self {
        AppState {
            client: Client::new(redis.clone(), queue),
            store,
            redis,
            metrics: Metrics::new(),
            redis_timeout,
        }
    }
}
