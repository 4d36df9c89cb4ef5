//! Queue-level figures for monitoring: how many messages wait in each queue (every priority
//! list summed), how old the oldest of them is, and the counts of the other places a message
//! can be (delivered and unacknowledged, parked, quarantined). One read-only script call per
//! sample (`lua/stats.lua`), whose cost does not grow with the number of waiting messages.
//!
//! # The age of the oldest waiting message
//!
//! A Celery message carries no send time (its id is a uuid4, its headers hold `eta` but no
//! timestamp), so the age must be observed. [`QueueClocks`] remembers, for each list, the
//! message at its head (the end kombu pushes to) at each sample where the head changed: a
//! *mark*, with the time of that sample. A mark that is the head at sample `t` was pushed
//! after the previous sample `t'` (else a newer message would be the head) and before `t`.
//! The list is FIFO: a mark still in the list means every message older than it is too, and
//! the oldest mark still present bounds the oldest waiting message, which was pushed
//! before that mark's sample and after the sample before it. So the age is known within one
//! sample interval: [`Age::at_least`] is the lower bound, [`Age::at_most`] the upper.
//!
//! Whether a mark is still present is told without scanning the backlog: `LPOS` finds the
//! previous head among the messages pushed since (its index is how many were pushed), so each
//! mark's index from the head is known, and `LINDEX` at that index (walked from the nearer
//! end) with the mark's SHA-1 confirms it. Exceptions, where only a lower bound remains
//! (`at_most` is `None`): the messages that were already waiting when sampling began (they
//! are at least as old as the first sample), a head larger than [`MAX_HEAD_BYTES`] or more
//! than [`SCAN_CAP`] messages pushed between two samples (the chain of marks starts again).
//! Messages pushed at the consuming end (`RPUSH`: health pings, requeues to the front) are
//! served next and never become marks; a message requeued at the back waits again from then.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::{Script, Value};

use super::Broker;
use crate::error::{QueueError, Result};
use crate::keys;

static STATS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/stats.lua")));

/// `LPOS` looks at most at this many messages from the head for the previous head: more
/// pushed between two samples and the age starts again from a lower bound.
pub const SCAN_CAP: u64 = 200_000;

/// A head larger than this is not sent back to be found by `LPOS` next time (task messages
/// are usually under a few KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Marks checked by `LINDEX` per list and sample, oldest first.
const CHECKED: usize = 32;

/// Marks kept per list; beyond it every second one is dropped (the bounds stay true, the
/// upper one looser). An hour of one-second samples fits.
const MAX_MARKS: usize = 4096;

/// How long the oldest waiting message of a queue has waited, as far as can be told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Age {
    /// It has waited at least this long.
    pub at_least: Duration,
    /// And at most this long; `None` when only the lower bound is known.
    pub at_most: Option<Duration>,
}

/// One queue at one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSample {
    /// Messages waiting, every priority list summed.
    pub waiting: u64,
    /// The oldest waiting message's age; `None` when nothing waits.
    pub oldest: Option<Age>,
}

/// One sample of the queues, read in one script call.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub queues: BTreeMap<String, QueueSample>,
    /// Delivered and not acknowledged (kombu's `unacked`, parked messages included).
    pub unacked: u64,
    /// Tasks parked until their eta (`rcelery:parked`).
    pub parked: u64,
    /// Quarantine entries, and how many were dropped to keep it to its cap.
    pub quarantined: u64,
    pub quarantine_dropped: u64,
}

/// What is remembered between samples to tell the age of the oldest message: one clock per
/// priority list. Lists no longer sampled are forgotten.
#[derive(Debug, Default)]
pub struct QueueClocks {
    lists: HashMap<String, ListClock>,
}

/// A head seen at a sample.
#[derive(Debug, Clone)]
struct Mark {
    /// Messages pushed to the list, counted from the start of the chain, when it was the head.
    seq: u64,
    sha: String,
    /// The sample (its reply) where it was first the head.
    seen: Instant,
    /// It was pushed after this instant (a sample's request), when known.
    after: Option<Instant>,
    /// The message itself, to be found by `LPOS` (only if small).
    raw: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct ListClock {
    /// Oldest first.
    marks: VecDeque<Mark>,
    /// Messages pushed since the chain began.
    pushed: u64,
    /// When the previous sample was requested, and whether the list was empty then.
    last: Option<(Instant, bool)>,
}

/// What the script read of one list.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    len: u64,
    head_sha: Option<String>,
    head: Option<Vec<u8>>,
    /// The anchor's index from the head now (`Found`), or why it is not known.
    anchor: Anchor,
    /// 1-based number of the first checked mark found in place; 0 none.
    present: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Found(u64),
    NotAsked,
    Gone,
    TooFar,
}

/// What is sent about one list: the anchor (newest mark whose message is kept) and the marks
/// to check, each as its offset from the anchor.
struct Probe {
    anchor: Option<(Vec<u8>, u64)>,
    checked: Vec<(u64, String)>,
}

impl ListClock {
    fn probe(&self) -> Probe {
        let anchor = self
            .marks
            .iter()
            .rev()
            .find_map(|m| m.raw.clone().map(|raw| (raw, m.seq)));
        let checked = match &anchor {
            Some((_, seq)) => self
                .marks
                .iter()
                .take(CHECKED)
                .filter(|m| m.seq <= *seq)
                .map(|m| (seq - m.seq, m.sha.clone()))
                .collect(),
            None => Vec::new(),
        };
        Probe { anchor, checked }
    }

    /// Takes a sample requested at `sent` and answered at `received`; returns the age of the
    /// oldest waiting message at `received`.
    fn observe(
        &mut self,
        seen: Observed,
        probe: &Probe,
        sent: Instant,
        received: Instant,
    ) -> Option<Age> {
        let last = self.last.replace((sent, seen.len == 0));
        let (Some(head_sha), true) = (seen.head_sha, seen.len > 0) else {
            self.marks.clear();
            self.pushed = 0;
            return None;
        };
        // Whether the head is new since the last sample, and from when it was surely pushed.
        let (new_head, after) = match seen.anchor {
            Anchor::Found(index) => {
                let anchor_seq = probe.anchor.as_ref().map_or(0, |(_, seq)| *seq);
                let pushed = anchor_seq + index;
                let moved = pushed > self.pushed;
                self.pushed = pushed;
                if seen.present > 0 {
                    self.marks.drain(..seen.present - 1);
                } else {
                    // The checked marks are gone; of the others, those whose index is past
                    // the end are too.
                    let checked = probe.checked.len().min(self.marks.len());
                    self.marks.drain(..checked);
                    while self
                        .marks
                        .front()
                        .is_some_and(|m| self.pushed - m.seq >= seen.len)
                    {
                        self.marks.pop_front();
                    }
                }
                // A head found again after its mark was dropped is re-marked, from now.
                (
                    moved || self.marks.is_empty(),
                    last.map(|(at, _)| at).filter(|_| moved),
                )
            }
            // The anchor was consumed: everything waiting came after the last sample.
            Anchor::Gone => {
                self.marks.clear();
                self.pushed = 0;
                (true, last.map(|(at, _)| at))
            }
            Anchor::NotAsked | Anchor::TooFar => {
                self.marks.clear();
                self.pushed = 0;
                let after_empty = last.filter(|(_, empty)| *empty).map(|(at, _)| at);
                (true, after_empty)
            }
        };
        if new_head {
            self.marks.push_back(Mark {
                seq: self.pushed,
                sha: head_sha,
                seen: received,
                after,
                raw: seen.head,
            });
            if self.marks.len() > MAX_MARKS {
                self.thin();
            }
        }
        let oldest = self.marks.front()?;
        Some(Age {
            at_least: received.saturating_duration_since(oldest.seen),
            at_most: oldest.after.map(|a| received.saturating_duration_since(a)),
        })
    }

    /// Drops every second mark but the first and the last. A kept mark takes the `after` of
    /// the oldest one dropped just before it, which still bounds what is older than the mark.
    fn thin(&mut self) {
        let n = self.marks.len();
        let mut kept = VecDeque::with_capacity(n / 2 + 2);
        let mut dropped_after: Option<Option<Instant>> = None;
        for (i, mut m) in std::mem::take(&mut self.marks).into_iter().enumerate() {
            if i == 0 || i == n - 1 || i % 2 == 0 {
                if let Some(after) = dropped_after.take() {
                    m.after = after;
                }
                kept.push_back(m);
            } else if dropped_after.is_none() {
                dropped_after = Some(m.after);
            }
        }
        self.marks = kept;
    }
}

impl Broker {
    /// Samples `queues` (every priority list of each) and the unacked, parked and quarantine
    /// counts, in one script call. `clocks` carries what the age of the oldest message needs
    /// from one sample to the next: pass the same one every time.
    pub async fn queue_stats(
        &self,
        clocks: &mut QueueClocks,
        queues: &[String],
    ) -> Result<QueueStats> {
        let lists: Vec<(String, String)> = queues
            .iter()
            .flat_map(|q| {
                keys::queue_lists(q)
                    .into_iter()
                    .map(move |l| (q.clone(), l))
            })
            .collect();
        clocks
            .lists
            .retain(|name, _| lists.iter().any(|(_, l)| l == name));
        let probes: Vec<Probe> = lists
            .iter()
            .map(|(_, l)| clocks.lists.get(l).map(ListClock::probe))
            .map(|p| {
                p.unwrap_or(Probe {
                    anchor: None,
                    checked: Vec::new(),
                })
            })
            .collect();
        let mut inv = STATS.prepare_invoke();
        inv.key(keys::UNACKED)
            .key(keys::PARKED)
            .key(keys::QUARANTINE)
            .key(keys::QUARANTINE_DROPPED)
            .arg(SCAN_CAP)
            .arg(MAX_HEAD_BYTES);
        for ((_, list), probe) in lists.iter().zip(&probes) {
            inv.key(list);
            match &probe.anchor {
                Some((raw, _)) => inv.arg(raw.as_slice()),
                None => inv.arg(""),
            };
            inv.arg(probe.checked.len());
            for (offset, sha) in &probe.checked {
                inv.arg(*offset).arg(sha);
            }
        }
        let sent = Instant::now();
        let reply: Vec<Value> = self.invoke(&inv).await?;
        let received = Instant::now();
        let mut it = reply.into_iter();
        let mut count = || -> Result<u64> { int(it.next()).map(|n| n.max(0) as u64) };
        let (unacked, parked, quarantined, quarantine_dropped) =
            (count()?, count()?, count()?, count()?);
        let mut stats = QueueStats {
            queues: queues
                .iter()
                .map(|q| {
                    let empty = QueueSample {
                        waiting: 0,
                        oldest: None,
                    };
                    (q.clone(), empty)
                })
                .collect(),
            unacked,
            parked,
            quarantined,
            quarantine_dropped,
        };
        for (((queue, list), probe), value) in lists.iter().zip(&probes).zip(it) {
            let seen = observed(value)?;
            let waiting = seen.len;
            let clock = clocks.lists.entry(list.clone()).or_default();
            let age = clock.observe(seen, probe, sent, received);
            let sample = stats.queues.get_mut(queue).expect("every queue is listed");
            sample.waiting += waiting;
            sample.oldest = older(sample.oldest, age);
        }
        Ok(stats)
    }
}

/// The older of two ages (the larger lower bound; an unknown upper bound stays unknown).
fn older(a: Option<Age>, b: Option<Age>) -> Option<Age> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Age {
            at_least: a.at_least.max(b.at_least),
            at_most: a.at_most.zip(b.at_most).map(|(x, y)| x.max(y)),
        }),
        (a, b) => a.or(b),
    }
}

fn bad(what: &str) -> QueueError {
    QueueError::Redis(redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply of stats.lua",
        what.to_owned(),
    )))
}

fn int(v: Option<Value>) -> Result<i64> {
    match v {
        Some(Value::Int(n)) => Ok(n),
        _ => Err(bad("a number")),
    }
}

fn bytes(v: Option<Value>) -> Result<Option<Vec<u8>>> {
    match v {
        Some(Value::BulkString(b)) => Ok(Some(b)),
        Some(Value::Nil) => Ok(None),
        _ => Err(bad("a string or nil")),
    }
}

fn observed(v: Value) -> Result<Observed> {
    let Value::Array(parts) = v else {
        return Err(bad("a table per list"));
    };
    let mut it = parts.into_iter();
    let len = int(it.next())?.max(0) as u64;
    let head_sha = bytes(it.next())?.map(|b| String::from_utf8_lossy(&b).into_owned());
    let head = bytes(it.next())?;
    let anchor = match int(it.next())? {
        n if n >= 0 => Anchor::Found(n as u64),
        -2 => Anchor::Gone,
        -3 => Anchor::TooFar,
        _ => Anchor::NotAsked,
    };
    let present = int(it.next())?.max(0) as usize;
    Ok(Observed {
        len,
        head_sha,
        head,
        anchor,
        present,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn obs(len: u64, head: &str, anchor: Anchor, present: usize) -> Observed {
        Observed {
            len,
            head_sha: (len > 0).then(|| format!("sha-{head}")),
            head: (len > 0).then(|| head.as_bytes().to_vec()),
            anchor,
            present,
        }
    }

    /// One sample at second `t` (requested then, answered a millisecond later).
    fn step(clock: &mut ListClock, t: u64, seen: Observed) -> Option<Age> {
        let probe = clock.probe();
        let t0 = *BASE;
        clock.observe(
            seen,
            &probe,
            t0 + S * t as u32,
            t0 + S * t as u32 + S / 1000,
        )
    }

    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

    #[test]
    fn a_backlog_found_at_start_is_at_least_as_old_as_the_first_sample() {
        let mut c = ListClock::default();
        let age = step(&mut c, 0, obs(1000, "a", Anchor::NotAsked, 0)).unwrap();
        assert_eq!(age.at_least, Duration::ZERO);
        assert_eq!(age.at_most, None);
        // Nothing pushed or taken: the head is found where it was, the age grows.
        let age = step(&mut c, 5, obs(1000, "a", Anchor::Found(0), 1)).unwrap();
        assert_eq!(age.at_least, 5 * S);
        assert_eq!(age.at_most, None);
    }

    #[test]
    fn messages_pushed_while_sampling_are_known_within_one_interval() {
        let mut c = ListClock::default();
        // Empty at 0: whatever comes next was pushed after it.
        assert_eq!(step(&mut c, 0, obs(0, "", Anchor::NotAsked, 0)), None);
        let age = step(&mut c, 1, obs(3, "a", Anchor::NotAsked, 0)).unwrap();
        assert_eq!(age.at_least, Duration::ZERO);
        assert_eq!(age.at_most, Some(S + S / 1000));
        // Two more pushed by 2 (the old head is now at index 2), none taken.
        let age = step(&mut c, 2, obs(5, "b", Anchor::Found(2), 1)).unwrap();
        assert_eq!(age.at_least, S);
        assert_eq!(age.at_most, Some(2 * S + S / 1000));
        // By 4 the first three (up to mark a) were taken: b's mark is the oldest present.
        let age = step(&mut c, 4, obs(2, "b", Anchor::Found(0), 2)).unwrap();
        assert_eq!(age.at_least, 2 * S);
        assert_eq!(age.at_most, Some(3 * S + S / 1000));
    }

    #[test]
    fn a_consumed_anchor_means_everything_waiting_is_recent() {
        let mut c = ListClock::default();
        step(&mut c, 0, obs(10, "a", Anchor::NotAsked, 0));
        step(&mut c, 10, obs(10, "a", Anchor::Found(0), 1));
        let age = step(&mut c, 11, obs(4, "z", Anchor::Gone, 0)).unwrap();
        assert_eq!(age.at_least, Duration::ZERO);
        assert_eq!(age.at_most, Some(S + S / 1000));
    }

    #[test]
    fn checked_marks_not_found_are_dropped_and_the_rest_judged_by_index() {
        let mut c = ListClock::default();
        step(&mut c, 0, obs(1, "a", Anchor::NotAsked, 0));
        step(&mut c, 1, obs(2, "b", Anchor::Found(1), 1));
        step(&mut c, 2, obs(3, "c", Anchor::Found(1), 1));
        assert_eq!(c.marks.len(), 3);
        // None of the checked marks is in place: all taken to be gone, and the head, which
        // was not pushed since, is marked again from now (a lower bound).
        let age = step(&mut c, 3, obs(1, "c", Anchor::Found(0), 0)).unwrap();
        assert_eq!(c.marks.len(), 1);
        assert_eq!(age.at_least, Duration::ZERO);
        assert_eq!(age.at_most, None);
    }

    #[test]
    fn thinning_keeps_the_ends_and_true_bounds() {
        let mut c = ListClock::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            c.marks.push_back(Mark {
                seq: i,
                sha: i.to_string(),
                seen: t0 + S * i as u32,
                after: Some(t0 + S * i as u32 - S / 2),
                raw: None,
            });
        }
        c.thin();
        let seqs: Vec<u64> = c.marks.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [0, 2, 4, 6, 8, 9]);
        // Mark 2 now bounds what lies between 0 and 2 too: pushed after mark 1's bound.
        assert_eq!(c.marks[1].after, Some(t0 + S / 2));
    }
}
