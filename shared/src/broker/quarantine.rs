//! Reading the quarantine and putting one of its messages back: what an operator needs once
//! the cause of a quarantine is fixed (a worker that now accepts larger messages, a task that
//! now exists), without hand-editing Redis.
//!
//! An entry is named by its id, the SHA-1 (hex) of the entry exactly as stored, which Redis
//! computes in both scripts: the id is stable while the entry sits in the list (entries shift
//! as new ones are pushed, so an index would not be), and an entry that was requeued or trimmed
//! away is simply not found. Two identical entries share an id; each requeue takes one.

use std::sync::LazyLock;

use redis::Script;

use super::{Broker, QuarantineEntry};
use crate::error::Result;
use crate::keys;

static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/quarantine_read.lua")));
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/quarantine_requeue.lua")
    ))
});

/// One stored quarantine entry.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedItem {
    /// SHA-1 (hex) of `raw`.
    pub id: String,
    /// The entry as stored.
    pub raw: String,
    /// The entry read, `None` if it is not a readable record (someone pushed something else
    /// onto the list).
    pub entry: Option<QuarantineEntry>,
}

/// A page of the quarantine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuarantinePage {
    /// Entries in the list now.
    pub total: u64,
    /// Entries dropped so far to keep the list to its cap.
    pub dropped: u64,
    /// The newest entries asked for, newest first.
    pub items: Vec<QuarantinedItem>,
}

/// What a requeue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// The message is back on `list`, next to be served, and its entry gone.
    Done { list: String },
    /// No entry has that id (never had, or already requeued or trimmed).
    Unknown,
    /// The entry exists but does not say where its message came from, so it stays.
    Unreadable,
}

impl Broker {
    /// The newest `n` quarantine entries with their ids, the list's length and the dropped
    /// count, read in one step. Reads only.
    pub async fn quarantine_page(&self, n: usize) -> Result<QuarantinePage> {
        self.read_quarantine(n, "").await
    }

    /// The quarantine entry with this id, if there is one. Reads only.
    pub async fn quarantined_item(&self, id: &str) -> Result<Option<QuarantinedItem>> {
        if id.is_empty() {
            return Ok(None);
        }
        Ok(self.read_quarantine(0, id).await?.items.pop())
    }

    async fn read_quarantine(&self, n: usize, id: &str) -> Result<QuarantinePage> {
        let mut inv = READ.prepare_invoke();
        inv.key(keys::QUARANTINE)
            .key(keys::QUARANTINE_DROPPED)
            .arg(n)
            .arg(id);
        let (total, dropped, flat): (u64, u64, Vec<Vec<u8>>) = self.invoke(&inv).await?;
        let mut items = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(id), Some(raw)) = (it.next(), it.next()) {
            let raw = String::from_utf8_lossy(&raw).into_owned();
            items.push(QuarantinedItem {
                id: String::from_utf8_lossy(&id).into_owned(),
                entry: serde_json::from_str(&raw).ok(),
                raw,
            });
        }
        Ok(QuarantinePage {
            total,
            dropped,
            items,
        })
    }

    /// Puts the message of the entry `id` back on the list it came from, at the end workers
    /// take from (served next, as a requeue after a fix should be), and removes the entry, in
    /// one script: of two requeues of the same entry, one requeues and the other finds nothing.
    pub async fn requeue_quarantined(&self, id: &str) -> Result<Requeue> {
        // Where the message goes is read first, so the script can name every key it writes;
        // the script checks again that the entry is there and says so.
        let Some(item) = self.quarantined_item(id).await? else {
            return Ok(Requeue::Unknown);
        };
        let Some(list) = item.entry.map(|e| e.list).filter(|l| !l.is_empty()) else {
            return Ok(Requeue::Unreadable);
        };
        let mut inv = REQUEUE.prepare_invoke();
        inv.key(keys::QUARANTINE).key(&list).arg(id);
        let done: i64 = self.invoke(&inv).await?;
        Ok(match done {
            1 => Requeue::Done { list },
            0 => Requeue::Unknown,
            _ => Requeue::Unreadable,
        })
    }
}
