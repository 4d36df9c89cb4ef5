//! Returns the messages of dead consumers to their queues. Every worker runs one; the broker's
//! scripts make sure each message moves once however many run.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::connection::Outage;

pub(crate) async fn run(
    broker: Broker,
    every: Duration,
    lease_ttl: Duration,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("recoverer");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After Redis has been unreachable every lease looks expired, ours included. Judge others
    // only once Redis has answered for a whole lease period: by then every live consumer has
    // renewed its lease.
    let mut reachable_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = broker.redis().ping().await {
            outage.failed(&e);
            reachable_since = None;
            continue;
        }
        outage.ok();
        if reachable_since.get_or_insert_with(Instant::now).elapsed() < lease_ttl {
            continue;
        }
        match broker.recover_dead().await {
            Ok(r) if r.requeued > 0 || r.dead_consumers > 0 => {
                tracing::warn!(
                    requeued = r.requeued,
                    dead_consumers = r.dead_consumers,
                    "recovered the messages of dead consumers"
                );
            }
            Ok(_) => {}
            Err(e) => {
                outage.failed(&e);
            }
        }
    }
}
