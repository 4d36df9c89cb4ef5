//! Every Redis key and channel the system uses, in one place, so the data layout can be read
//! in a single file (and Redis Insight users told what each key is). Names that Celery or
//! kombu also use are kept exactly as they spell them, so Python and Rust programs share them.
//!
//! [`CATALOGUE`] lists every key and channel with what it holds: it is the one description of
//! the layout, and the table of keys in `docs/REDIS_KEYS.md` is generated from it (a test in
//! `system-tests/tests/docs.rs` keeps the two equal).

/// kombu's separator between a queue name and its priority step.
pub const PRIORITY_SEP: &str = "\x06\x16";

/// kombu's priority steps on Redis; 0 is served first.
pub const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];

pub const UNACKED: &str = "unacked";
pub const UNACKED_INDEX: &str = "unacked_index";
pub const UNACKED_MUTEX: &str = "unacked_mutex";

pub const CONSUMERS: &str = "rcelery:consumers";
/// The monitor's history stream (the default; `HISTORY_STREAM` changes it).
pub const MONITOR_HISTORY: &str = "monitor:historial";
pub const QUARANTINE: &str = "rcelery:quarantine";
/// How many quarantine entries were dropped to keep the list to its cap.
pub const QUARANTINE_DROPPED: &str = "rcelery:quarantine:dropped";

/// The list that holds messages of `priority` (0–9) for `queue`: the largest step ≤ priority.
pub fn queue_list(queue: &str, priority: u8) -> String {
    let step = PRIORITY_STEPS
        .iter()
        .rev()
        .find(|s| **s <= priority.min(9))
        .copied()
        .unwrap_or(0);
    if step == 0 {
        queue.to_owned()
    } else {
        format!("{queue}{PRIORITY_SEP}{step}")
    }
}

/// All four lists of a queue, in the order they are served.
pub fn queue_lists(queue: &str) -> Vec<String> {
    PRIORITY_STEPS
        .iter()
        .map(|p| queue_list(queue, *p))
        .collect()
}

/// The queue a list belongs to (the list name without its priority suffix).
pub fn queue_of_list(list: &str) -> &str {
    list.rsplit_once(PRIORITY_SEP).map_or(list, |(q, _)| q)
}

/// kombu's binding set for the anonymous-exchange route to `queue`, and its member.
pub fn binding(queue: &str) -> (String, String) {
    (
        format!("_kombu.binding.{queue}"),
        format!("{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}"),
    )
}

/// Where a task's result is stored, and the channel it is published on.
pub fn result_key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

pub const RESULT_KEY_PREFIX: &str = "celery-task-meta-";

/// The pub/sub channel of an event routing key (`worker.heartbeat`) on database `db`.
pub fn event_channel(db: i64, routing_key: &str) -> String {
    format!("/{db}.celeryev/{routing_key}")
}

/// The pattern that matches every worker event on database `db`.
pub fn worker_events_pattern(db: i64) -> String {
    format!("/{db}.celeryev/worker.*")
}

/// Where Celery saves a group's result (`GroupResult.save`); the chord keys of the group are
/// this name with `.j`, `.t` and `.s` appended.
pub fn group_key(group_id: &str) -> String {
    format!("celery-taskset-meta-{group_id}")
}

/// A chord's counting keys, as Celery's Redis result backend names them: the header's part
/// records (`.j`, a sorted set by `group_index`), the size adjustment (`.t`) and the chord
/// size the client records (`.s`).
pub fn chord_keys(group_id: &str) -> [String; 3] {
    let group = group_key(group_id);
    [
        format!("{group}.j"),
        format!("{group}.t"),
        format!("{group}.s"),
    ]
}

/// The hash of messages held by one consumer.
pub fn inflight(consumer: &str) -> String {
    format!("rcelery:inflight:{consumer}")
}

/// Parked tasks (their eta is far, see `worker::parking`): each `[delivery tag, source list,
/// unacked_index score]` scored by when it goes back to its list (Redis clock, ms).
pub const PARKED: &str = "rcelery:parked";

/// Revoked task ids, scored by when the revocation expires (seconds, Unix time): what every
/// worker of ours loads at start and consults before running a task, so a revocation outlives
/// the workers that heard it (Celery keeps them in each worker's memory only).
pub const REVOKED: &str = "rcelery:revoked";

/// kombu's broadcast (fanout) exchange for remote control, and the binding set a worker joins.
pub const PIDBOX_EXCHANGE: &str = "celery.pidbox";
pub const PIDBOX_BINDING: &str = "_kombu.binding.celery.pidbox";
/// The exchange replies are sent through, and the binding set that routes them to the
/// client's own reply list.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";
pub const REPLY_BINDING: &str = "_kombu.binding.reply.celery.pidbox";

/// The pub/sub channel control messages are broadcast on (kombu's fanout on Redis).
pub fn pidbox_channel(db: i64) -> String {
    format!("/{db}.{PIDBOX_EXCHANGE}")
}

/// A worker's member of [`PIDBOX_BINDING`] (routing key and pattern empty, then its queue).
pub fn pidbox_member(hostname: &str) -> String {
    format!("{PRIORITY_SEP}{PRIORITY_SEP}{hostname}.{PIDBOX_EXCHANGE}")
}

/// A client's reply list for replies routed with `routing_key`, and its member of
/// [`REPLY_BINDING`], as kombu names them.
pub fn reply_queue(routing_key: &str) -> (String, String) {
    let queue = format!("{routing_key}.{REPLY_EXCHANGE}");
    let member = format!("{routing_key}{PRIORITY_SEP}{PRIORITY_SEP}{queue}");
    (queue, member)
}

/// One entry of [`CATALOGUE`]: a key or channel, with `<placeholders>` for its variable parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The name as Redis shows it, e.g. `rcelery:inflight:<consumer>`.
    pub pattern: &'static str,
    /// The Redis type (`list`, `hash`, `sorted set`, ...), or `channel` for pub/sub.
    pub kind: &'static str,
    /// What it holds, in one line.
    pub holds: &'static str,
}

/// Every key and channel the system uses, in the order a task meets them. The key table of
/// `docs/REDIS_KEYS.md` is generated from this list and a test keeps the two equal
/// (`UPDATE_DOCS=1 cargo test -p system-tests --test docs` rewrites that copy).
pub const CATALOGUE: &[KeyDoc] = &[
    KeyDoc {
        pattern: "<queue>",
        kind: "list",
        holds: "pending task messages of priority 0-2 (step 0, Celery's default priority), served first; LPUSH in, taken from the right (kombu); a health ping is RPUSHed, next in line",
    },
    KeyDoc {
        pattern: "<queue>\\x06\\x16<step>",
        kind: "list",
        holds: "pending task messages of priority steps 3, 6 and 9 (priorities 3-5, 6-8, 9; our business tasks at 6), served after step 0",
    },
    KeyDoc {
        pattern: "_kombu.binding.<queue>",
        kind: "set",
        holds: "kombu's route record, so Celery tools see the queue",
    },
    KeyDoc {
        pattern: UNACKED,
        kind: "hash",
        holds: "delivery tag → `[message, exchange, routing_key]` of every delivered, unacknowledged message (kombu's format, so a Python worker can restore it)",
    },
    KeyDoc {
        pattern: UNACKED_INDEX,
        kind: "sorted set",
        holds: "delivery tag scored by delivery time, in seconds (kombu); our workers refresh the scores of what they still run",
    },
    KeyDoc {
        pattern: UNACKED_MUTEX,
        kind: "string",
        holds: "kombu's lock for restoring stale unacknowledged messages (Python workers take it; ours recover through leases)",
    },
    KeyDoc {
        pattern: CONSUMERS,
        kind: "sorted set",
        holds: "consumer id → lease deadline (Redis clock, ms); a consumer past it is dead and its messages go back",
    },
    KeyDoc {
        pattern: PARKED,
        kind: "sorted set",
        holds: "tasks whose eta is far (beyond `ETA_HORIZON_SECS`) or that are over a worker's hold budget: `[delivery tag, source list, unacked_index score]` scored by when any worker of ours puts it back on its list (ms); the message itself stays in `unacked`",
    },
    KeyDoc {
        pattern: "rcelery:inflight:<consumer>",
        kind: "hash",
        holds: "delivery tag → source list, for each message a consumer holds",
    },
    KeyDoc {
        pattern: QUARANTINE,
        kind: "list",
        holds: "malformed or rejected messages, newest first, each `{\"reason\", \"list\", \"consumer\", \"quarantined_at\", \"message\"}`",
    },
    KeyDoc {
        pattern: QUARANTINE_DROPPED,
        kind: "string",
        holds: "how many quarantine entries were dropped, oldest first, to keep the list to `QUARANTINE_MAX` (1 000 by default)",
    },
    KeyDoc {
        pattern: "celery-task-meta-<id>",
        kind: "string + channel",
        holds: "a task's result (SETEX, kept a day by default) and the pub/sub channel it is announced on",
    },
    KeyDoc {
        pattern: "celery-taskset-meta-<group id>.j",
        kind: "sorted set",
        holds: "a chord's finished header parts, `[1, task id, state, result]` scored by `group_index` (Celery's Redis backend); the part that completes the header reads and deletes it",
    },
    KeyDoc {
        pattern: "celery-taskset-meta-<group id>.t",
        kind: "string",
        holds: "a chord's size adjustment (Celery's; read when counting, written by no program of ours)",
    },
    KeyDoc {
        pattern: "celery-taskset-meta-<group id>.s",
        kind: "string",
        holds: "a chord's size, recorded by the client that sends the chord",
    },
    KeyDoc {
        pattern: "celery-taskset-meta-<group id>",
        kind: "string",
        holds: "a saved GroupResult: Celery saves one for a chord whose header holds groups (our worker then stores a ChordError for the body)",
    },
    KeyDoc {
        pattern: "/<db>.celeryev/worker.<kind>",
        kind: "channel",
        holds: "worker events: `worker-online`, `worker-heartbeat` (every 2 s), `worker-offline`",
    },
    KeyDoc {
        pattern: "/<db>.celeryev/task.multi",
        kind: "channel",
        holds: "task events (`task-received`, `-started`, `-succeeded`, `-failed`, `-retried`, `-revoked`, `-rejected`) in lists of up to 24, when a worker sends them (`TASK_EVENTS`, Celery's `-E`); a client's single events (`task-sent`) come on `task.<kind>`. The monitor listens to `task.*` for its task metrics and lookup",
    },
    KeyDoc {
        pattern: "/<db>.celery.pidbox",
        kind: "channel",
        holds: "remote control requests (`celery inspect`, `celery control`), kombu's broadcast; each worker answers those meant for it",
    },
    KeyDoc {
        pattern: PIDBOX_BINDING,
        kind: "set",
        holds: "kombu's record of the workers listening for remote control (one member per worker)",
    },
    KeyDoc {
        pattern: REPLY_BINDING,
        kind: "set",
        holds: "kombu's routes for control replies: each waiting client's reply list, by routing key",
    },
    KeyDoc {
        pattern: "<reply id>.reply.celery.pidbox",
        kind: "list",
        holds: "a control client's replies, `{hostname: reply}` each, LPUSHed by the workers; the client deletes it when done",
    },
    KeyDoc {
        pattern: REVOKED,
        kind: "sorted set",
        holds: "revoked task ids scored by when the revocation lapses (Unix seconds; 3 hours, at most 50 000 ids): a revoked task never runs, on any worker, even one started later",
    },
    KeyDoc {
        pattern: MONITOR_HISTORY,
        kind: "stream",
        holds: "the monitor's pings and state changes (capped with `XADD MAXLEN ~`)",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_lists_follow_kombu() {
        assert_eq!(queue_list("inventario", 0), "inventario");
        assert_eq!(queue_list("inventario", 2), "inventario");
        assert_eq!(queue_list("inventario", 5), "inventario\x06\x163");
        assert_eq!(queue_list("inventario", 6), "inventario\x06\x166");
        assert_eq!(queue_list("inventario", 9), "inventario\x06\x169");
        assert_eq!(queue_list("inventario", 200), "inventario\x06\x169");
        assert_eq!(queue_of_list("inventario\x06\x163"), "inventario");
        assert_eq!(queue_of_list("inventario"), "inventario");
        assert_eq!(
            binding("inventario"),
            (
                "_kombu.binding.inventario".to_owned(),
                "inventario\x06\x16\x06\x16inventario".to_owned()
            )
        );
    }
}
