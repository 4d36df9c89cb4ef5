//! Celery worker events (`worker-online`, `worker-heartbeat`, `worker-offline`): what a worker
//! broadcasts so that Celery tools (Flower, `celery events`) and our monitor can tell which
//! workers are alive. They travel in kombu's envelope on the pub/sub channel
//! `/<db>.celeryev/worker.<kind>`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::envelope::Envelope;
use super::error::ProtocolError;
use super::python_json::to_python_json;

/// The event body. `freq` is the heartbeat interval in seconds: Celery counts a worker alive
/// while its last heartbeat is younger than `2 × freq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    pub hostname: String,
    #[serde(default)]
    pub utcoffset: i64,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub clock: u64,
    #[serde(default = "default_freq")]
    pub freq: f64,
    #[serde(default)]
    pub active: u64,
    #[serde(default)]
    pub processed: u64,
    #[serde(default)]
    pub loadavg: Vec<f64>,
    #[serde(default)]
    pub sw_ident: String,
    #[serde(default)]
    pub sw_ver: String,
    #[serde(default)]
    pub sw_sys: String,
    #[serde(default)]
    pub timestamp: f64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The envelope Celery's event dispatcher PUBLISHes an event (or, for tasks, a list of them)
/// in: the payload as body, the sender's hostname as only header, the `celeryev` exchange and
/// the event's routing key.
pub fn envelope(payload_json: &str, hostname: &str, routing_key: &str) -> Envelope {
    let mut headers = Map::new();
    headers.insert("hostname".into(), json!(hostname));
    let mut properties = Map::new();
    properties.insert("delivery_mode".into(), json!(1));
    properties.insert(
        "delivery_info".into(),
        json!({"exchange": "celeryev", "routing_key": routing_key}),
    );
    properties.insert("priority".into(), json!(0));
    properties.insert("body_encoding".into(), json!("base64"));
    properties.insert(
        "delivery_tag".into(),
        json!(uuid::Uuid::new_v4().to_string()),
    );
    Envelope::new(payload_json, headers, properties)
}

/// Celery's default when a heartbeat does not say (its `Worker` state object uses 60 s).
fn default_freq() -> f64 {
    60.0
}

pub const WORKER_ONLINE: &str = "worker-online";
pub const WORKER_HEARTBEAT: &str = "worker-heartbeat";
pub const WORKER_OFFLINE: &str = "worker-offline";

impl WorkerEvent {
    /// The routing key kombu derives from the type: `worker-heartbeat` → `worker.heartbeat`.
    pub fn routing_key(&self) -> String {
        self.kind.replace('-', ".")
    }

    /// The envelope to PUBLISH, as Celery's event dispatcher writes it.
    pub fn to_envelope(&self) -> Envelope {
        envelope(&to_python_json(self), &self.hostname, &self.routing_key())
    }

    /// Decodes an event from a pub/sub message payload.
    pub fn decode(raw: &[u8]) -> Result<Self, ProtocolError> {
        let payload = Envelope::parse(raw)?.payload()?;
        serde_json::from_value(payload).map_err(|e| ProtocolError::Body(e.to_string()))
    }
}
