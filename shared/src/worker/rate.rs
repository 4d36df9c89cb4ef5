//! Celery's per-task rate limits (`rate_limit="10/m"`): at most so many tasks of one name start
//! per second, minute or hour, in this worker (Celery's limits are per worker too, not global).
//!
//! Celery keeps a token bucket of capacity one per task name (kombu's `TokenBucket`), so after
//! an idle spell one task starts at once and the next ones are spaced evenly. The same is kept
//! here as the time the next task may start: a task reserves a start time (the later of now and
//! that time) and pushes it on by one interval, so waiting tasks start in the order they asked.
//! A waiting task keeps its place in the lane's prefetch but not a slot, as in Celery, where it
//! waits in the consumer's timer, not in the pool.
//!
//! Limits come from the task's registration ([`super::TaskOptions::rate_limit`]) and the
//! worker's configuration (`RATE_LIMITS`, like Celery's `task_annotations`), and can be changed
//! while the worker runs (Celery's `control rate_limit`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tasks of one name that may start per second. Written as Celery writes it: `"100/s"`,
/// `"10/m"`, `"5/h"`, or a bare number (per second). `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
}

/// A rate that Celery's `rate()` would not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid rate limit {0:?}: expected a number of tasks, optionally per s, m or h (\"10/m\")"
)]
pub struct InvalidRateLimit(pub String);

impl RateLimit {
    pub fn per_second(n: f64) -> Self {
        RateLimit { per_second: n }
    }

    /// The time between two starts, or `None` for no limit.
    pub fn interval(&self) -> Option<Duration> {
        (self.per_second > 0.0)
            .then(|| Duration::try_from_secs_f64(1.0 / self.per_second).ok())
            .flatten()
    }

    /// How Celery's `inspect stats` and `rate_limit` replies show it (`"10/m"` stays as given
    /// there; this is the per-second form).
    pub fn tasks_per_second(&self) -> f64 {
        self.per_second
    }
}

impl FromStr for RateLimit {
    type Err = InvalidRateLimit;

    /// Celery's `celery.utils.time.rate`: `ops[/modifier]`, the modifier `s` (the default),
    /// `m` or `h`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidRateLimit(s.to_owned());
        let (ops, modifier) = s.split_once('/').unwrap_or((s, "s"));
        let ops: f64 = ops.trim().parse().map_err(|_| invalid())?;
        let divisor = match modifier.trim() {
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        if !ops.is_finite() || ops < 0.0 {
            return Err(invalid());
        }
        Ok(RateLimit::per_second(ops / divisor))
    }
}

/// The start times reserved so far, per limited task name.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    /// Whether any limit is set: a worker without limits skips the lock on every task.
    any: AtomicBool,
    limits: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    interval: Duration,
    /// The earliest a task of this name may start.
    next: Instant,
}

impl Buckets {
    pub fn new<'a>(limits: impl IntoIterator<Item = (&'a str, RateLimit)>) -> Self {
        let buckets = Buckets::default();
        for (name, limit) in limits {
            buckets.set(name, Some(limit));
        }
        buckets
    }

    /// Sets (or with `None` or a zero rate, lifts) the limit of task `name`.
    pub fn set(&self, name: &str, limit: Option<RateLimit>) {
        let mut limits = self.limits.lock().expect("rate limits lock");
        match limit.and_then(|l| l.interval()) {
            Some(interval) => {
                let next = limits
                    .get(name)
                    .map_or_else(Instant::now, |b| b.next.min(Instant::now() + interval));
                limits.insert(name.to_owned(), Bucket { interval, next });
            }
            None => {
                limits.remove(name);
            }
        }
        self.any.store(!limits.is_empty(), Ordering::Release);
    }

    /// When a task of `name` that wants to start now may start: `None` if at once (no limit,
    /// or its turn is now). The time is reserved for it. Without any limit set this reads one
    /// atomic, not even the clock.
    pub fn reserve(&self, name: &str) -> Option<Instant> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.reserve_at(name, Instant::now())
    }

    /// [`Buckets::reserve`] as if it were `now`.
    fn reserve_at(&self, name: &str, now: Instant) -> Option<Instant> {
        let mut limits = self.limits.lock().expect("rate limits lock");
        let bucket = limits.get_mut(name)?;
        let at = bucket.next.max(now);
        bucket.next = at + bucket.interval;
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_celerys_forms() {
        let per_second = |s: &str| s.parse::<RateLimit>().map(|r| r.tasks_per_second());
        assert_eq!(per_second("100/s"), Ok(100.0));
        assert_eq!(per_second("100"), Ok(100.0));
        assert_eq!(per_second("10/m"), Ok(10.0 / 60.0));
        assert_eq!(per_second("36/h"), Ok(0.01));
        assert_eq!(per_second(" 2.5 /s"), Ok(2.5));
        assert_eq!(per_second("0"), Ok(0.0));
        for bad in ["", "fast", "10/d", "-1/s", "inf", "NaN/m", "10/s/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
        assert_eq!("0".parse::<RateLimit>().unwrap().interval(), None);
    }

    #[test]
    fn one_starts_at_once_then_they_are_spaced_by_the_interval() {
        let buckets = Buckets::new([("t", "10/s".parse().unwrap())]);
        let now = Instant::now();
        let step = Duration::from_millis(100);
        assert_eq!(buckets.reserve_at("t", now), None);
        assert_eq!(buckets.reserve_at("t", now), Some(now + step));
        assert_eq!(buckets.reserve_at("t", now), Some(now + 2 * step));
        assert_eq!(
            buckets.reserve_at("other", now),
            None,
            "other names are not limited"
        );
        // After an idle spell the bucket is full again: one starts at once.
        let later = now + Duration::from_secs(5);
        assert_eq!(buckets.reserve_at("t", later), None);
        assert_eq!(buckets.reserve_at("t", later), Some(later + step));
    }

    #[test]
    fn a_limit_can_be_changed_and_lifted_while_running() {
        let buckets = Buckets::default();
        let now = Instant::now();
        assert_eq!(buckets.reserve_at("t", now), None);
        buckets.set("t", Some("1/s".parse().unwrap()));
        let _ = buckets.reserve_at("t", Instant::now());
        assert!(buckets.reserve_at("t", Instant::now()).is_some());
        buckets.set("t", Some("0".parse().unwrap()));
        assert_eq!(buckets.reserve_at("t", Instant::now()), None);
    }
}
