//! The broker's part of a retry: swapping a held message for the one that runs its task
//! again, in one atomic script call (`lua/retry.lua`), so that a crash at any instant leaves
//! exactly one of the two queued or held.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Broker, Delivery};
use crate::error::Result;
use crate::keys;

static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/retry.lua")
    ))
});

impl Broker {
    /// Retries a held message: pushes `message` (the task sent again) onto the list the
    /// delivery came from, stores and publishes `retry_result` (`(task id, RETRY result
    /// JSON)`, unless a SUCCESS is stored) and acknowledges the delivery, all at once. Returns
    /// false, having pushed and stored nothing, if `consumer` no longer held the delivery.
    pub async fn retry(
        &self,
        consumer: &str,
        delivery: &Delivery,
        message: &str,
        retry_result: Option<(&str, &str)>,
        result_ttl: Duration,
    ) -> Result<bool> {
        let (key, payload) = match retry_result {
            Some((task_id, payload)) => (keys::result_key(task_id), payload),
            None => (keys::RESULT_KEY_PREFIX.to_owned(), ""),
        };
        let mut inv = RETRY.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::UNACKED_INDEX)
            .key(keys::inflight(consumer))
            .key(&delivery.list)
            .key(key)
            .arg(&delivery.tag)
            .arg(message)
            .arg(payload)
            .arg(result_ttl.as_secs().max(1));
        let moved: i64 = self.invoke(&inv).await?;
        Ok(moved == 1)
    }
}
