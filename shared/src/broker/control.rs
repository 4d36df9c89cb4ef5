//! The broker's part of remote control: delivering a worker's reply to the client that asked
//! (`lua/reply.lua`), routed through kombu's binding set as a Python worker's reply is.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::Broker;
use crate::error::Result;
use crate::keys;

static REPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        include_str!("lua/reply.lua")
    ))
});

/// How long a reply list lives if its client never reads it (a client deletes its list when
/// it stops waiting; one that died would otherwise leave it for ever).
const REPLY_TTL: Duration = Duration::from_secs(300);

impl Broker {
    /// LPUSHes a control reply onto the reply list bound under `routing_key`; returns how many
    /// lists received it (0: nobody waits for it any more).
    pub async fn reply(&self, routing_key: &str, envelope: &str) -> Result<u32> {
        let mut inv = REPLY.prepare_invoke();
        inv.key(keys::REPLY_BINDING)
            .arg(routing_key)
            .arg(envelope)
            .arg(REPLY_TTL.as_secs());
        self.invoke(&inv).await
    }
}
