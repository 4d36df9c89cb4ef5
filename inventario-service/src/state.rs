//! What every handler shares: the store, the queue client, the metrics, and how writes are
//! authenticated.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use inventario::Store;
use shared::{Client, Redis};

use crate::auth::Autenticacion;
use crate::metrics::Metrics;

/// One allocation shared by every request: axum clones the router's state for each request it
/// routes, so the state is a single `Arc` rather than a struct of handles (the queue client
/// alone holds three `String`s). Handlers may extract a part on its own (`State<Store>`,
/// `State<Metrics>`) or reach the fields through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

/// What the state holds, reached through `Deref` (`state.client`, `state.redis_timeout`).
pub struct Parts {
    pub store: Store,
    pub redis: Redis,
    pub client: Client,
    /// Behind its own `Arc` because the metrics layer, which axum clones for each request it
    /// times, holds only this.
    pub metrics: Arc<Metrics>,
    /// The longest a request waits on Redis: with Redis down, queue routes answer 503 within
    /// this, and the CRUD routes do not depend on it at all.
    pub redis_timeout: Duration,
    /// Who may write (see [`crate::auth`]).
    pub auth: Autenticacion,
}

impl AppState {
    /// `client` sends the movements' tasks (on `redis`, with its default queue).
    pub fn new(
        store: Store,
        redis: Redis,
        client: Client,
        redis_timeout: Duration,
        auth: Autenticacion,
    ) -> Self {
        AppState(Arc::new(Parts {
            client,
            store,
            redis,
            metrics: Arc::new(Metrics::new()),
            redis_timeout,
            auth,
        }))
    }
}

impl Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Metrics {
        Metrics::clone(&state.metrics)
    }
}

impl FromRef<AppState> for Autenticacion {
    fn from_ref(state: &AppState) -> Autenticacion {
        state.auth.clone()
    }
}
