//! Revocations that outlive the workers that heard them.
//!
//! Celery keeps revoked task ids in each worker's memory (bounded, for three hours): a worker
//! that restarts, or starts after the revoke was broadcast, runs the task anyway. Here every
//! revocation is also written to Redis ([`keys::REVOKED`], a sorted set scored by when it
//! lapses): a worker loads it when it starts, and adds to its own copy what it hears on the
//! control channel afterwards (it subscribes before it loads, so nothing falls in between).
//! The same limits as Celery's apply: a revocation lapses after [`REVOKE_EXPIRES`], and at
//! most [`REVOKES_MAX`] are kept, the oldest dropped first.
//!
//! A worker consults its copy before it runs a task; a worker without any revocation pays one
//! atomic load for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::connection::Redis;
use crate::error::Result;
use crate::keys;

/// How long a revocation lasts (Celery's `REVOKE_EXPIRES`, 10 800 s).
pub const REVOKE_EXPIRES: Duration = Duration::from_secs(10_800);
/// Most revocations kept (Celery's `REVOKES_MAX`, 50 000).
pub const REVOKES_MAX: usize = 50_000;

fn now_secs() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Writes revocations of `ids` to Redis, lapsing [`REVOKE_EXPIRES`] from now, and drops
/// lapsed ones and those past [`REVOKES_MAX`], in one MULTI. Idempotent: every worker that
/// hears a revoke writes it, which is how it is kept when some of them are not ours.
pub async fn record(redis: &Redis, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = now_secs();
    let until = now + REVOKE_EXPIRES.as_secs_f64();
    let members: Vec<(f64, &str)> = ids.iter().map(|id| (until, id.as_str())).collect();
    redis
        .run(|mut c| {
            let members = &members;
            async move {
                redis::pipe()
                    .atomic()
                    .zadd_multiple(keys::REVOKED, members)
                    .ignore()
                    .zrembyscore(keys::REVOKED, "-inf", now)
                    .ignore()
                    .zremrangebyrank(keys::REVOKED, 0, -(REVOKES_MAX as isize) - 1)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
}

/// Every revocation in force in Redis, with when it lapses.
pub async fn load(redis: &Redis) -> Result<Vec<(String, f64)>> {
    let now = now_secs();
    redis
        .run(|mut c| async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(keys::REVOKED)
                .arg(now)
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async::<Vec<(String, f64)>>(&mut c)
                .await
        })
        .await
}

/// One process's copy of the revocations in force.
#[derive(Debug, Default)]
pub struct Revocations {
    any: AtomicBool,
    /// Task id → when its revocation lapses (Unix seconds).
    ids: Mutex<HashMap<String, f64>>,
}

impl Revocations {
    /// Adds revocations (from Redis, or just heard), lapsing at `until` (Unix seconds).
    pub fn add(&self, revoked: impl IntoIterator<Item = (String, f64)>) {
        let mut ids = self.ids.lock().expect("revocations lock");
        ids.extend(revoked);
        if ids.len() > REVOKES_MAX {
            // Drop the lapsed, then the oldest, as Redis does.
            let now = now_secs();
            ids.retain(|_, until| *until > now);
            if ids.len() > REVOKES_MAX {
                let mut by_age: Vec<(String, f64)> = ids.drain().collect();
                by_age.sort_by(|a, b| b.1.total_cmp(&a.1));
                by_age.truncate(REVOKES_MAX);
                ids.extend(by_age);
            }
        }
        self.any.store(!ids.is_empty(), Ordering::Release);
    }

    /// Revokes `ids` from now, for [`REVOKE_EXPIRES`].
    pub fn revoke_now(&self, ids: &[String]) {
        let until = now_secs() + REVOKE_EXPIRES.as_secs_f64();
        self.add(ids.iter().map(|id| (id.clone(), until)));
    }

    /// Whether task `id` is revoked (and its revocation has not lapsed).
    pub fn contains(&self, id: &str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let ids = self.ids.lock().expect("revocations lock");
        ids.get(id).is_some_and(|until| *until > now_secs())
    }

    /// The ids in force, sorted (Celery's `inspect revoked`).
    pub fn ids(&self) -> Vec<String> {
        let now = now_secs();
        let ids = self.ids.lock().expect("revocations lock");
        let mut out: Vec<String> = ids
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, _)| id.clone())
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_is_kept_until_it_lapses() {
        let r = Revocations::default();
        assert!(!r.contains("a"));
        r.revoke_now(&["a".to_owned()]);
        assert!(r.contains("a"));
        assert!(!r.contains("b"));
        r.add([("old".to_owned(), now_secs() - 1.0)]);
        assert!(!r.contains("old"), "lapsed");
        assert_eq!(r.ids(), vec!["a".to_owned()]);
    }

    #[test]
    fn at_most_revokes_max_are_kept_newest_first() {
        let r = Revocations::default();
        let base = now_secs() + 60.0;
        r.add((0..REVOKES_MAX + 10).map(|i| (format!("t{i}"), base + i as f64)));
        assert_eq!(r.ids().len(), REVOKES_MAX);
        assert!(!r.contains("t0"), "the oldest is dropped");
        assert!(r.contains(&format!("t{}", REVOKES_MAX + 9)));
    }
}
