//! Returns messages to their queues when nobody works on them: those of dead consumers (every
//! worker runs one recoverer; the broker's scripts make sure each message moves once however
//! many run), and this worker's own orphans: messages recorded as held by it that it does not
//! know it holds, because the reply of the fetch that took them never arrived. It also puts
//! parked tasks (far etas, `parking.rs`) back on their lists when they are due back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::connection::Outage;

/// This worker, for the orphan sweep.
pub(crate) struct Own {
    pub consumer: String,
    pub held: super::Held,
    pub sweep: Duration,
    /// Whether this worker's own lease renewals succeed, and since when.
    pub streak: std::sync::Arc<super::heartbeat::Streak>,
}

pub(crate) async fn run(
    broker: Broker,
    own: Own,
    every: Duration,
    lease_ttl: Duration,
    stop: CancellationToken,
) {
    let mut outage = Outage::new("recoverer");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After Redis has been unreachable, or full and refusing writes, every lease looks
    // expired, ours included. Judge others only once our own renewals have succeeded for a
    // whole lease period: by then every live consumer has renewed its lease too.
    let mut last_sweep = Instant::now();
    let mut suspects = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = broker.redis().ping().await {
            outage.failed(&e);
            continue;
        }
        outage.ok();
        // Parked tasks are nobody's: any worker may put them back, and at once (their time
        // does not depend on any lease).
        if let Err(e) = unpark(&broker).await {
            outage.failed(&e);
            continue;
        }
        if !own.streak.held_for(lease_ttl) {
            continue;
        }
        if last_sweep.elapsed() >= own.sweep {
            last_sweep = Instant::now();
            match sweep_orphans(&broker, &own, &suspects).await {
                Ok(next) => suspects = next,
                Err(e) => {
                    outage.failed(&e);
                }
            }
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

/// Entries moved per script call, and calls per tick at most: a backlog of due tasks is put
/// back at up to this rate per worker, without one tick holding Redis for long.
const UNPARK_BATCH: usize = 200;
const UNPARK_CALLS: usize = 25;

async fn unpark(broker: &Broker) -> crate::Result<()> {
    for _ in 0..UNPARK_CALLS {
        let moved = broker.unpark_due(UNPARK_BATCH).await?;
        if moved > 0 {
            tracing::debug!(moved, "parked tasks due back put on their queues");
        }
        if moved < UNPARK_BATCH {
            break;
        }
    }
    Ok(())
}

/// Gives back the orphans seen on the previous sweep too (two sweeps apart, a fetch that just
/// returned has long been recorded as held); returns this sweep's suspects.
async fn sweep_orphans(
    broker: &Broker,
    own: &Own,
    suspects: &HashSet<String>,
) -> crate::Result<HashSet<String>> {
    let recorded = broker.held(&own.consumer).await?;
    let orphans: Vec<(String, String)> = {
        let held = own.held.lock().expect("held lock");
        recorded
            .into_iter()
            .filter(|(tag, _)| !held.contains(tag))
            .collect()
    };
    let mut next = HashSet::new();
    for (tag, list) in orphans {
        if suspects.contains(&tag) {
            if broker.give_back(&own.consumer, &tag, &list).await? {
                tracing::warn!(%tag, %list, "returned a message this worker held without knowing it (a lost fetch reply)");
            }
        } else {
            next.insert(tag);
        }
    }
    Ok(next)
}
