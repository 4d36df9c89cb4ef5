//! Which tasks waiting for an eta a worker keeps in memory, and which it *parks* in Redis.
//!
//! Celery's worker holds every task it has taken until its eta, in memory, however far away
//! the eta and however many such tasks arrive; a flood of `countdown=86400` tasks (or a few
//! huge ones) grows the worker without bound. Ours holds a task only when its eta is near
//! (within [`EtaLimits::horizon`]) and while the tasks it holds stay under a count and a byte
//! budget. Any other is parked: it stays recorded in kombu's `unacked`/`unacked_index` (so it
//! is never lost, and a Python worker's `restore_visible` would return it too), leaves this
//! worker's own records and memory, and is listed in `rcelery:parked` with the time it should
//! come back. Every worker's recoverer puts due parked tasks back at the front of their lists
//! ([`crate::broker::Broker::unpark_due`]), a while before their eta; the worker that takes one
//! then holds it until the eta as any other.
//!
//! The decision is a pure function of the instant, the task and what is held, so its rules are
//! tested here without Redis.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A task due sooner than this is always held: parking it would bring it back before the
/// recoverer could (it looks every second), and a worker must hold what is about to run.
pub const MIN_PARK: Duration = Duration::from_secs(3);

/// Defaults: how far ahead a worker holds tasks, and how much it holds at most.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_TASKS: usize = 10_000;
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// How much of the future a worker keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtaLimits {
    /// Tasks whose eta is further than this are parked.
    pub horizon: Duration,
    /// Most tasks held waiting for their eta at once.
    pub max_tasks: usize,
    /// Most message bytes held waiting for their eta at once. A held task costs the worker a
    /// few times its message (the text, the decoded message, its future; the figure is in
    /// docs/RELIABILITY.md), so the default of 16 MiB keeps it to tens of megabytes.
    pub max_bytes: usize,
}

impl Default for EtaLimits {
    fn default() -> Self {
        EtaLimits {
            horizon: DEFAULT_HORIZON,
            max_tasks: DEFAULT_MAX_TASKS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What to do with a task that must wait `wait` for its eta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep it in memory until its eta.
    Hold,
    /// Park it; it comes back to its queue after `back_in`, still ahead of its eta.
    Park { back_in: Duration },
}

/// The rule. Beyond the horizon a task comes back half a horizon before its eta, so a worker
/// holds it for that long at most. Within it but over budget, it comes back halfway to its
/// eta: tried again while there is still time, and held for good once under [`MIN_PARK`].
pub fn decide(wait: Duration, size: usize, held: Load, limits: &EtaLimits) -> Decision {
    if wait <= MIN_PARK {
        return Decision::Hold;
    }
    if wait > limits.horizon {
        let lead = (limits.horizon / 2).max(MIN_PARK);
        return Decision::Park {
            back_in: wait - lead,
        };
    }
    if held.tasks >= limits.max_tasks || held.bytes.saturating_add(size) > limits.max_bytes {
        return Decision::Park { back_in: wait / 2 };
    }
    Decision::Hold
}

/// What a worker holds waiting for etas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub tasks: usize,
    pub bytes: usize,
}

/// The running count behind [`Load`], shared by the executors of one worker.
#[derive(Debug, Default)]
pub(crate) struct Held {
    tasks: AtomicUsize,
    bytes: AtomicUsize,
}

impl Held {
    pub fn load(&self) -> Load {
        Load {
            tasks: self.tasks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts a task of `size` bytes as held until the returned guard drops.
    pub fn hold(&self, size: usize) -> Holding<'_> {
        self.tasks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        Holding { held: self, size }
    }
}

pub(crate) struct Holding<'a> {
    held: &'a Held,
    size: usize,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.held.tasks.fetch_sub(1, Ordering::Relaxed);
        self.held.bytes.fetch_sub(self.size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits() -> EtaLimits {
        EtaLimits {
            horizon: 600 * S,
            max_tasks: 10,
            max_bytes: 1000,
        }
    }

    #[test]
    fn near_tasks_are_held_far_ones_parked_until_half_a_horizon_before() {
        let none = Load::default();
        assert_eq!(decide(60 * S, 10, none, &limits()), Decision::Hold);
        assert_eq!(decide(600 * S, 10, none, &limits()), Decision::Hold);
        assert_eq!(
            decide(86_400 * S, 10, none, &limits()),
            Decision::Park {
                back_in: (86_400 - 300) * S
            }
        );
    }

    #[test]
    fn over_budget_tasks_come_back_halfway_and_imminent_ones_are_always_held() {
        let full = Load {
            tasks: 10,
            bytes: 0,
        };
        assert_eq!(
            decide(100 * S, 10, full, &limits()),
            Decision::Park { back_in: 50 * S }
        );
        let heavy = Load {
            tasks: 1,
            bytes: 900,
        };
        assert_eq!(
            decide(100 * S, 200, heavy, &limits()),
            Decision::Park { back_in: 50 * S }
        );
        assert_eq!(decide(100 * S, 100, heavy, &limits()), Decision::Hold);
        assert_eq!(decide(MIN_PARK, 10_000, full, &limits()), Decision::Hold);
    }

    #[test]
    fn a_tiny_horizon_still_leaves_time_to_come_back() {
        let tiny = EtaLimits {
            horizon: S,
            ..limits()
        };
        assert_eq!(
            decide(10 * S, 1, Load::default(), &tiny),
            Decision::Park {
                back_in: 10 * S - MIN_PARK
            }
        );
    }

    #[test]
    fn the_count_follows_its_guards() {
        let held = Held::default();
        let a = held.hold(100);
        let b = held.hold(50);
        assert_eq!(
            held.load(),
            Load {
                tasks: 2,
                bytes: 150
            }
        );
        drop(a);
        assert_eq!(
            held.load(),
            Load {
                tasks: 1,
                bytes: 50
            }
        );
        drop(b);
        assert_eq!(held.load(), Load::default());
    }
}
