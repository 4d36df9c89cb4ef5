//! One ping-echo: send the target's health task through Redis and time the answer with
//! `std::time::Instant`, from before the publish to the arrival of the result. Used by the
//! background loop and by `GET /monitor` alike, so both measure the same thing.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use shared::protocol::TaskState;
use shared::{Client, QueueError, SendOptions};

use crate::detector::Echo;
use crate::targets::Target;

/// How a ping ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "resultado", rename_all = "lowercase")]
pub enum PingResult {
    /// The task succeeded; `respuesta` is its message.
    Ok {
        respuesta: String,
        /// The worker that answered, when the answer says (ours does; Python's bare string
        /// does not).
        #[serde(skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
    },
    /// The task failed or was revoked, or the ping could not be sent.
    Fallo { detalle: String },
    /// No answer within the timeout.
    Timeout,
}

/// One ping's record: what the log, the history and the API show.
#[derive(Debug, Clone, Serialize)]
pub struct PingOutcome {
    pub servicio: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// When it was sent (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub enviado: DateTime<Utc>,
    /// Round trip (or time waited before giving up), milliseconds.
    pub latencia_ms: f64,
    #[serde(flatten)]
    pub result: PingResult,
    #[serde(skip)]
    pub latency: Duration,
}

pub fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// [`rfc3339`] for an optional time (`null` when absent).
pub fn rfc3339_opt<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl PingOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self.result, PingResult::Ok { .. })
    }

    pub fn respuesta(&self) -> Option<&str> {
        match &self.result {
            PingResult::Ok { respuesta, .. } => Some(respuesta),
            _ => None,
        }
    }

    pub fn echo(&self) -> Echo {
        match self.result {
            PingResult::Ok { .. } => Echo::Answered(self.latency),
            _ => Echo::Failed,
        }
    }

    /// The log line, in the seed's words.
    pub fn log_line(&self) -> String {
        let secs = self.latency.as_secs_f64();
        match &self.result {
            PingResult::Ok { respuesta, .. } => {
                format!("[OK] Ping recibido en {secs:.3} s. Respuesta: {respuesta}")
            }
            PingResult::Timeout => format!(
                "[FALLA] Sin respuesta en {secs:.3} s (timeout). {} no disponible",
                self.servicio
            ),
            PingResult::Fallo { detalle } => format!(
                "[FALLA] Error en {secs:.3} s ({detalle}). {} no disponible",
                self.servicio
            ),
        }
    }

    /// Logs the line: OK at info, failures at warn.
    pub fn log(&self) {
        let line = self.log_line();
        let target = self.servicio.as_str();
        if self.is_ok() {
            tracing::info!(target_service = target, "{line}");
        } else {
            tracing::warn!(target_service = target, "{line}");
        }
    }
}

/// Sends one ping to `target` and waits at most `timeout` for its echo.
///
/// The ping is put at the end of the plain queue list that workers take from (`RPUSH`,
/// [`SendOptions::next_in_line`]), so any worker, ours or a Python Celery one, takes it next,
/// ahead of any backlog of whatever priority; ours also keep slots for it while all others run
/// long tasks. It expires after `timeout`, so a worker that comes back after an outage discards
/// the stale pings (storing REVOKED) instead of running a flood.
pub async fn ping(client: &Client, target: &Target, timeout: Duration) -> PingOutcome {
    let enviado = Utc::now();
    let start = Instant::now();
    let mut task_id = None;
    let options = SendOptions {
        queue: Some(target.queue.clone()),
        priority: None,
        expires: Some(timeout),
        next_in_line: true,
        ..Default::default()
    };
    let exchange = async {
        let pending = client
            .apply(&target.task, vec![], Default::default(), options)
            .await?;
        task_id = Some(pending.id().to_owned());
        pending.wait(timeout).await
    };
    let result = match tokio::time::timeout(timeout, exchange).await {
        Err(_) | Ok(Err(QueueError::Timeout { .. })) => PingResult::Timeout,
        Ok(Err(error)) => PingResult::Fallo {
            detalle: error.to_string(),
        },
        Ok(Ok(meta)) if meta.status == TaskState::Success => PingResult::Ok {
            respuesta: respuesta(&meta.result),
            worker: meta
                .result
                .get("hostname")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        Ok(Ok(meta)) => PingResult::Fallo {
            detalle: meta
                .exception()
                .map(|e| e.to_string())
                .unwrap_or_else(|| meta.status.to_string()),
        },
    };
    let latency = start.elapsed();
    PingOutcome {
        servicio: target.name.clone(),
        task_id,
        enviado,
        latencia_ms: round_ms(latency),
        result,
        latency,
    }
}

/// Milliseconds with microsecond precision, for JSON.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What the health task said: our worker's `{"mensaje": ...}`, a Python seed worker's bare
/// string, or anything else as JSON text.
pub fn respuesta(result: &Value) -> String {
    match result {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("mensaje").or_else(|| o.get("estado")) {
            Some(Value::String(s)) => s.clone(),
            _ => result.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(result: PingResult, ms: u64) -> PingOutcome {
        PingOutcome {
            servicio: "InventarioService".into(),
            task_id: None,
            enviado: Utc::now(),
            latencia_ms: ms as f64,
            result,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn log_lines_use_the_seeds_words() {
        let ok = outcome(
            PingResult::Ok {
                respuesta: "InventarioService responde correctamente - OK".into(),
                worker: None,
            },
            5,
        );
        assert_eq!(
            ok.log_line(),
            "[OK] Ping recibido en 0.005 s. Respuesta: InventarioService responde correctamente - OK"
        );
        assert_eq!(
            outcome(PingResult::Timeout, 750).log_line(),
            "[FALLA] Sin respuesta en 0.750 s (timeout). InventarioService no disponible"
        );
    }

    #[test]
    fn accepts_object_and_bare_string_answers() {
        let ours =
            json!({"estado": "OK", "mensaje": "InventarioService responde correctamente - OK"});
        assert_eq!(
            respuesta(&ours),
            "InventarioService responde correctamente - OK"
        );
        assert_eq!(respuesta(&json!("hola")), "hola");
        assert_eq!(respuesta(&json!(42)), "42");
    }
}
