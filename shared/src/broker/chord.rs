//! The broker's part of a chord: counting a finished header part in Celery's Redis-backend
//! keys (`lua/chord.lua`), in one atomic step, so that exactly one worker, Python or ours,
//! sees the header complete and sends the body.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::Broker;
use crate::error::Result;
use crate::keys;

static CHORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/chord.lua")
    ))
});

/// What counting one header part found.
pub struct ChordPart {
    /// `lua/chord.lua`'s code: 1 the header is complete (`records` hold its results in
    /// order), 2 the records cannot be joined (`reason` says why), 3 the header holds groups;
    /// anything else: the header is not complete yet, or was completed before.
    pub code: i64,
    pub records: Vec<String>,
    pub reason: String,
}

impl Broker {
    /// Celery's `on_chord_part_return` on Redis: adds `record` (a part's `[1, id, state,
    /// result]`, scored by its `group_index`, `score`) to the chord of `group`, counts it
    /// against the chord's size and, for the part that completes the header, reads and
    /// deletes the records.
    pub async fn chord_part_return(
        &self,
        group: &str,
        record: &str,
        score: &str,
        ttl: Duration,
    ) -> Result<ChordPart> {
        let [j, t, s] = keys::chord_keys(group);
        let mut inv = CHORD.prepare_invoke();
        inv.key(j)
            .key(t)
            .key(s)
            .key(keys::group_key(group))
            .arg(record)
            .arg(score)
            .arg(ttl.as_secs());
        let (code, records, reason) = self.invoke(&inv).await?;
        Ok(ChordPart {
            code,
            records,
            reason,
        })
    }
}
