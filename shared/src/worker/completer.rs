//! Stores results and acknowledges messages. Whatever finished while the previous batch was
//! being written goes out together in one script call, so under load the cost per task falls
//! to a fraction of a Redis round trip.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Held;
use crate::broker::{Broker, Completion};
use crate::connection::Outage;

/// A larger batch saves little more per task and keeps Redis busy longer in one atomic step,
/// which every other client (a ping among them) waits behind.
const MAX_BATCH: usize = 32;

/// Runs until `drain` is cancelled and the channel is empty. A batch that cannot be written
/// (Redis down) is retried until it is, or until `give_up`: then its messages stay held and
/// return to the queue when this consumer's lease runs out (at-least-once).
pub(crate) async fn run(
    broker: Broker,
    consumer: String,
    mut rx: mpsc::Receiver<Completion>,
    held: Held,
    result_ttl: Duration,
    drain: CancellationToken,
    give_up: CancellationToken,
) {
    let mut outage = Outage::new("completer");
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            c = rx.recv() => c,
            _ = drain.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        loop {
            match broker.complete(&consumer, &batch, result_ttl).await {
                Ok(_) => {
                    outage.ok();
                    let mut held = held.lock().expect("held lock");
                    for tag in batch.iter().filter_map(|c| c.tag.as_ref()) {
                        held.remove(tag);
                    }
                    break;
                }
                Err(e) => {
                    let pause = outage.failed(&e);
                    tokio::select! {
                        _ = give_up.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        batch.clear();
    }
}
