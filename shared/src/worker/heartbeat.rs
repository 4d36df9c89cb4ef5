//! Keeps the worker visible: renews its consumer lease and sends Celery's worker events
//! (`worker-online` first, then `worker-heartbeat` every interval, `worker-offline` last).
//!
//! Every quarter of the visibility timeout, the renewal also scores what this worker holds as
//! delivered now in `unacked_index` (one script call): kombu's workers restore any entry older
//! than their visibility timeout (`restore_visible` in kombu's Redis transport, at start-up and
//! every 100 s or so), which would run a task twice that a live worker of ours holds longer than
//! that (a long task, a far eta). Our own recovery goes by leases and needs none of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::connection::Outage;
use crate::events::EventPublisher;
use crate::protocol::event::{WORKER_HEARTBEAT, WORKER_OFFLINE, WORKER_ONLINE};

/// Since when this worker's lease renewals have succeeded without a break. The recoverer judges
/// other consumers by their leases only once its own have held for a whole lease: Redis may
/// answer (a PING) while refusing writes (full, under `maxmemory`), and then every lease runs
/// out, live workers' too; judging by the PING alone had every worker take the others' held
/// tasks back and run them again.
#[derive(Debug, Default)]
pub(crate) struct Streak(Mutex<Option<Instant>>);

impl Streak {
    pub fn renewed(&self) {
        self.0
            .lock()
            .expect("streak lock")
            .get_or_insert_with(Instant::now);
    }

    pub fn broken(&self) {
        *self.0.lock().expect("streak lock") = None;
    }

    /// Renewals have succeeded for at least `d` without a break.
    pub fn held_for(&self, d: Duration) -> bool {
        self.0
            .lock()
            .expect("streak lock")
            .is_some_and(|since| since.elapsed() >= d)
    }
}

pub(crate) async fn run(ctx: Arc<Context>, events: EventPublisher, stop: CancellationToken) {
    let mut outage = Outage::new("heartbeat");
    let mut tick = tokio::time::interval(ctx.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut online = false;
    let refresh_every = ctx.config.visibility_timeout / 4;
    let mut refreshed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            // `control heartbeat` (Flower asks for one when it starts): beat now.
            _ = ctx.beat_now.notified() => {}
        }
        let kind = if online {
            WORKER_HEARTBEAT
        } else {
            WORKER_ONLINE
        };
        let refresh = refreshed.elapsed() >= refresh_every;
        let beat = async {
            let renewal = if refresh {
                ctx.broker
                    .renew_lease_and_refresh(&ctx.consumer, ctx.config.lease_ttl)
                    .await
            } else {
                ctx.broker
                    .renew_lease(&ctx.consumer, ctx.config.lease_ttl)
                    .await
            };
            match renewal {
                Ok(()) => ctx.lease_streak.renewed(),
                Err(e) => {
                    ctx.lease_streak.broken();
                    return Err(e);
                }
            }
            if refresh {
                refreshed = tokio::time::Instant::now();
            }
            events.publish(kind, ctx.stats.counts()).await
        };
        match beat.await {
            Ok(()) => {
                online = true;
                outage.ok();
            }
            Err(e) => {
                outage.failed(&e);
            }
        }
    }
    if let Err(error) = events.publish(WORKER_OFFLINE, ctx.stats.counts()).await {
        tracing::warn!(%error, "could not send worker-offline");
    }
    match ctx.broker.release(&ctx.consumer).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "messages still held at exit; they return to the queue when the lease runs out"
        ),
        Err(error) => {
            tracing::warn!(%error, "could not release the consumer lease; it will run out")
        }
    }
}
