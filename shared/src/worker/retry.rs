//! Celery's retry rules, apart from Redis: whether a task that asked to run again (or failed
//! with an exception its options retry by themselves) is re-sent or fails, when it runs
//! again, and with what exception it fails once its retries are used up.
//!
//! The rules are `Task.retry` and `add_autoretry_behaviour` of Celery 5.5 (`celery/app/task.py`,
//! `celery/app/autoretry.py`), and the backoff is `get_exponential_backoff_interval`
//! (`celery/utils/time.py`). The executor applies the outcome: a re-send and the `RETRY`
//! result in one atomic step (`broker/lua/retry.lua`), or a FAILURE like any other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::registry::{Retry, TaskOptions};
use crate::protocol::{ExceptionInfo, TaskMessage};

/// What becomes of a retry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Store `RETRY` (with `exc`, if any) and send the task again to run at `eta`.
    Again {
        eta: DateTime<Utc>,
        exc: Option<ExceptionInfo>,
    },
    /// Retries used up: store this FAILURE.
    GiveUp(ExceptionInfo),
}

/// Celery's `Task.retry`, for a task whose message is `message`: the retry counts as attempt
/// `retries + 1`; past the limit (the call's, else the task's) it fails with the retry's
/// exception or `MaxRetriesExceededError`; otherwise it runs again after its countdown, at its
/// eta, or after the task's `default_retry_delay`, in that order of preference.
pub(crate) fn decide(
    retry: Retry,
    options: &TaskOptions,
    message: &TaskMessage,
    now: DateTime<Utc>,
) -> Outcome {
    let attempt = message.retries.saturating_add(1);
    let max = retry.max_retries.unwrap_or(options.max_retries);
    if max.is_some_and(|max| attempt > max) {
        return Outcome::GiveUp(
            retry
                .exc
                .unwrap_or_else(|| ExceptionInfo::max_retries_exceeded(message)),
        );
    }
    let after = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let eta = match (retry.countdown, retry.eta) {
        (Some(countdown), _) => after(countdown),
        (None, Some(eta)) => eta,
        (None, None) => after(options.default_retry_delay),
    };
    Outcome::Again {
        eta,
        exc: retry.exc,
    }
}

/// Celery's `autoretry_for`: a failure whose exception type is one the task retries by
/// itself becomes a retry with that exception, waiting the backoff if the task has one (the
/// task's `default_retry_delay` otherwise).
pub(crate) fn autoretry(exc: &ExceptionInfo, options: &TaskOptions, retries: u32) -> Option<Retry> {
    if !options.autoretry_for.contains(&exc.exc_type) {
        return None;
    }
    let mut retry = Retry::default().exc(exc.clone());
    if let Some(factor) = options.retry_backoff {
        let secs = backoff_countdown(
            factor.max(1),
            retries,
            options.retry_backoff_max,
            options.retry_jitter,
        );
        retry = retry.countdown(Duration::from_secs(secs.into()));
    }
    Some(retry)
}

/// Celery's exponential backoff in whole seconds (`get_exponential_backoff_interval`):
/// `factor * 2^retries`, at most `maximum`; with `full_jitter`, a uniformly random number of
/// seconds from 0 to that.
pub fn backoff_countdown(factor: u32, retries: u32, maximum: u32, full_jitter: bool) -> u32 {
    backoff_with(factor, retries, maximum, |cap| {
        if full_jitter {
            rand::rng().random_range(0..=cap)
        } else {
            cap
        }
    })
}

/// The backoff with the jitter chosen by `pick` (given the capped countdown, returns the wait).
fn backoff_with(factor: u32, retries: u32, maximum: u32, pick: impl FnOnce(u32) -> u32) -> u32 {
    let growth = 1u64.checked_shl(retries).unwrap_or(u64::MAX);
    let capped = u64::from(factor)
        .saturating_mul(growth)
        .min(u64::from(maximum)) as u32;
    pick(capped).min(capped)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::protocol::task::NewTask;

    fn message(retries: u32) -> TaskMessage {
        TaskMessage::build(
            "reintentar",
            vec![json!(4)],
            Map::new(),
            "inventario",
            "gen1@vm",
            "r",
            NewTask {
                id: Some("81c5feb2-7e6f-4c0d-bbbc-6e161a51f5e2".into()),
                retries,
                ..NewTask::default()
            },
        )
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let exact = |retries| backoff_with(1, retries, 600, |cap| cap);
        let waits: Vec<u32> = (0..12).map(exact).collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600],
            "Celery: min(600, 2^n)"
        );
        assert_eq!(backoff_with(3, 2, 600, |cap| cap), 12);
        assert_eq!(
            backoff_with(0, 5, 600, |cap| cap),
            0,
            "a zero factor never waits"
        );
        // Far past any shift or multiplication a u64 holds: the cap, not an overflow.
        assert_eq!(backoff_with(u32::MAX, 200, 600, |cap| cap), 600);
        assert_eq!(backoff_countdown(5, 1, 600, false), 10);
    }

    #[test]
    fn jitter_is_between_zero_and_the_capped_wait() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let wait = backoff_countdown(1, 3, 600, true);
            assert!(wait <= 8, "{wait}");
            seen.insert(wait);
        }
        assert_eq!(seen.len(), 9, "every value 0..=8 turns up: {seen:?}");
        // The jitter is drawn below the cap, never above it.
        assert_eq!(backoff_with(1, 20, 600, |cap| cap + 5), 600);
        assert_eq!(backoff_with(1, 20, 600, |_| 0), 0);
    }

    #[test]
    fn retry_waits_its_countdown_its_eta_or_the_default_delay() {
        let now = Utc::now();
        let opts = TaskOptions::default();
        let again = |r: Retry| match decide(r, &opts, &message(0), now) {
            Outcome::Again { eta, .. } => eta,
            other => panic!("{other:?}"),
        };
        let ms200 = Duration::from_millis(200);
        assert_eq!(
            again(Retry::default().countdown(ms200)),
            now + chrono::Duration::milliseconds(200)
        );
        let at = now + chrono::Duration::seconds(30);
        assert_eq!(again(Retry::default().eta(at)), at);
        assert_eq!(
            again(Retry::default().eta(at).countdown(ms200)),
            now + chrono::Duration::milliseconds(200)
        );
        assert_eq!(
            again(Retry::default()),
            now + chrono::Duration::seconds(180)
        );
    }

    #[test]
    fn retries_run_out_as_celery_says() {
        let now = Utc::now();
        let opts = TaskOptions::default();
        assert!(matches!(
            decide(Retry::default(), &opts, &message(2), now),
            Outcome::Again { .. }
        ));
        let Outcome::GiveUp(exc) = decide(Retry::default(), &opts, &message(3), now) else {
            panic!("a fourth retry is past Celery's default of 3");
        };
        assert_eq!(exc.exc_type, "MaxRetriesExceededError");
        assert_eq!(exc.exc_module.as_deref(), Some("celery.exceptions"));
        // The text of the capture (celery-5.5-redis-retry.txt).
        assert_eq!(
            exc.message(),
            "Can't retry reintentar[81c5feb2-7e6f-4c0d-bbbc-6e161a51f5e2] args:(4,) kwargs:{}"
        );
        // With an exception, that exception is the failure.
        let why = ExceptionInfo::new("ConnectionError", "builtins", "sin red");
        let given = Retry::default().exc(why.clone());
        assert_eq!(decide(given, &opts, &message(3), now), Outcome::GiveUp(why));
        // The call's limit beats the task's; None is unlimited.
        assert!(matches!(
            decide(Retry::default().max_retries(1), &opts, &message(1), now),
            Outcome::GiveUp(_)
        ));
        assert!(matches!(
            decide(
                Retry::default().max_retries(None),
                &opts,
                &message(1000),
                now
            ),
            Outcome::Again { .. }
        ));
        let unlimited = TaskOptions {
            max_retries: None,
            ..TaskOptions::default()
        };
        assert!(matches!(
            decide(Retry::default(), &unlimited, &message(u32::MAX), now),
            Outcome::Again { .. }
        ));
    }

    #[test]
    fn autoretry_takes_only_the_listed_exceptions() {
        let opts = TaskOptions {
            autoretry_for: vec!["ConnectionError".into()],
            retry_backoff: Some(2),
            retry_jitter: false,
            ..TaskOptions::default()
        };
        let net = ExceptionInfo::new("ConnectionError", "builtins", "sin red");
        let retry = autoretry(&net, &opts, 3).expect("listed");
        assert_eq!(retry.exc, Some(net));
        assert_eq!(retry.countdown, Some(Duration::from_secs(16)), "2 * 2^3");
        let value = ExceptionInfo::new("ValueError", "builtins", "mal");
        assert_eq!(autoretry(&value, &opts, 0), None);
        // Without backoff: the default delay (no countdown of its own).
        let plain = TaskOptions {
            retry_backoff: None,
            ..opts
        };
        let net = ExceptionInfo::new("ConnectionError", "builtins", "sin red");
        assert_eq!(autoretry(&net, &plain, 0).unwrap().countdown, None);
    }
}
