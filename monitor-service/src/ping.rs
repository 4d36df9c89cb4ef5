//! One ping-echo: send the target's health task through Redis and time the answer with
//! `std::time::Instant`, from before the publish to the arrival of the result. Used by the
//! background loop and by `GET /monitor` alike (through one [`Pinger`]), so both measure the
//! same thing and both leave nothing behind in Redis, whatever their rate:
//!
//! - the result a ping read is deleted at once: it is the monitor's alone, and Celery's result
//!   expiry would keep it for a day (four pings a second left ~345 000 keys a day);
//! - a ping that timed out is taken back off its queue if no worker has taken it yet
//!   ([`shared::Client::withdraw`]), so it never runs and never stores a result, and a worker
//!   that comes back after an outage finds no pile of stale pings;
//! - if a worker had taken it, its late result is awaited (as long as the ping could still run)
//!   and deleted when it comes; at most [`LATE_WATCHES`] such waits at once.
//!
//! Staleness is the monitor's to judge, on its own clock, by withdrawing what it gave up on.
//! The ping's `expires`, which the worker compares with *its* clock, is only a safety net for
//! pings left queued by a monitor that died: minutes ([`PING_EXPIRES`]), not the timeout, or a
//! worker whose clock runs ahead of the monitor's would discard every ping as expired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use shared::client::Prepared;
use shared::protocol::TaskState;
use shared::shutdown::CancellationToken;
use shared::{Client, QueueError, SendOptions};
use tokio::sync::Semaphore;

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

    /// The log line, in the seed's words. While the target is `starting` (INICIANDO: no answer
    /// yet since the monitor started, within the start-up grace), a failure is expected rather
    /// than news of an outage, so it reads `[INICIANDO] ... aún no responde` instead of
    /// `[FALLA] ... no disponible`: what a log-based alert matches on stays quiet while a
    /// system starts, and the line still says each ping failed, and why.
    pub fn log_line(&self, starting: bool) -> String {
        let secs = self.latency.as_secs_f64();
        let (tag, verdict) = if starting {
            ("[INICIANDO]", "aún no responde")
        } else {
            ("[FALLA]", "no disponible")
        };
        let servicio = &self.servicio;
        match &self.result {
            PingResult::Ok { respuesta, .. } => {
                format!("[OK] Ping recibido en {secs:.3} s. Respuesta: {respuesta}")
            }
            PingResult::Timeout => {
                format!("{tag} Sin respuesta en {secs:.3} s (timeout). {servicio} {verdict}")
            }
            PingResult::Fallo { detalle } => {
                format!("{tag} Error en {secs:.3} s ({detalle}). {servicio} {verdict}")
            }
        }
    }

    /// Logs the line: OK, and failures while `starting`, at info; other failures at warn.
    pub fn log(&self, starting: bool) {
        let line = self.log_line(starting);
        let target = self.servicio.as_str();
        if self.is_ok() || starting {
            tracing::info!(target_service = target, "{line}");
        } else {
            tracing::warn!(target_service = target, "{line}");
        }
    }
}

/// How long a queued ping stays runnable: a safety net only (see the module doc).
pub const PING_EXPIRES: Duration = Duration::from_secs(300);

/// How long the result of a timed-out ping that a worker had taken is awaited, to delete it:
/// while the ping can still run, and a minute more for a worker that took it just before it
/// expired (one that reaches it later stores REVOKED at once, and that is awaited too).
pub const LATE_WATCH: Duration = Duration::from_secs(PING_EXPIRES.as_secs() + 60);

/// Timed-out pings whose late results are awaited at once, at most. Only pings a worker took
/// and did not answer in time are awaited (those still queued are withdrawn), so this is
/// reached only by a worker that holds many pings without answering them; beyond it, a late
/// result stays until the worker's result expiry.
pub const LATE_WATCHES: usize = 256;

/// Sends pings and cleans up after them. Cheap to clone; every clone shares the bound on late
/// waits, which end with the monitor (`shutdown`).
#[derive(Clone)]
pub struct Pinger {
    client: Client,
    late: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Pinger {
    pub fn new(client: Client, shutdown: CancellationToken) -> Self {
        Pinger {
            client,
            late: Arc::new(Semaphore::new(LATE_WATCHES)),
            shutdown,
        }
    }

    /// Sends one ping to `target` and waits at most `timeout` for its echo.
    ///
    /// The ping is put at the end of the plain queue list that workers take from (`RPUSH`,
    /// [`SendOptions::next_in_line`]), so any worker, ours or a Python Celery one, takes it
    /// next, ahead of any backlog of whatever priority; ours also keep slots for it while all
    /// others run long tasks.
    pub async fn ping(&self, target: &Target, timeout: Duration) -> PingOutcome {
        let enviado = Utc::now();
        let start = Instant::now();
        let options = SendOptions {
            queue: Some(target.queue.clone()),
            expires: Some(PING_EXPIRES),
            next_in_line: true,
            ..Default::default()
        };
        // Built before the clock runs out, so a send cut short can still be taken back.
        let task = self
            .client
            .prepare(&target.task, vec![], Default::default(), options);
        let mut sent = false;
        let exchange = async {
            let pending = self.client.apply_prepared(&task).await?;
            sent = true;
            pending.wait(timeout).await
        };
        let answer = tokio::time::timeout(timeout, exchange).await;
        let latency = start.elapsed();
        let result = match &answer {
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
        let task_id = sent.then(|| task.id().to_owned());
        match answer {
            // Read, by its only reader.
            Ok(Ok(_)) => {
                if let Err(error) = self.client.result(task.id()).forget().await {
                    tracing::debug!(%error, task_id = task.id(), "ping result not deleted");
                }
            }
            // Refused by Redis: nothing was sent.
            Ok(Err(_)) if !sent => {}
            // Timed out, or the wait broke off: the ping may be queued or running.
            _ => self.clean_up_later(task),
        }
        PingOutcome {
            servicio: target.name.clone(),
            task_id,
            enviado,
            latencia_ms: round_ms(latency),
            result,
            latency,
        }
    }

    /// Withdraws a ping given up on from its queue or, if a worker has taken it, deletes its
    /// result when it comes; in the background, so the outcome is not held up.
    fn clean_up_later(&self, task: Prepared) {
        let Ok(permit) = self.late.clone().try_acquire_owned() else {
            tracing::debug!(
                task_id = task.id(),
                "too many late pings awaited: this one's result may stay until it expires"
            );
            return;
        };
        let client = self.client.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let work = async {
                match client.withdraw(&task).await {
                    Ok(true) => return,
                    Ok(false) => {}
                    // Redis did not answer: the ping may still be queued, and run later.
                    Err(error) => {
                        tracing::debug!(%error, task_id = task.id(), "ping not withdrawn")
                    }
                }
                let late = client.result(task.id());
                if late.wait(LATE_WATCH).await.is_ok() {
                    if let Err(error) = client.result(task.id()).forget().await {
                        tracing::debug!(%error, task_id = task.id(), "late ping result not deleted");
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = work => {}
            }
        });
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
            ok.log_line(false),
            "[OK] Ping recibido en 0.005 s. Respuesta: InventarioService responde correctamente - OK"
        );
        assert_eq!(
            outcome(PingResult::Timeout, 750).log_line(false),
            "[FALLA] Sin respuesta en 0.750 s (timeout). InventarioService no disponible"
        );
        assert_eq!(
            outcome(PingResult::Timeout, 750).log_line(true),
            "[INICIANDO] Sin respuesta en 0.750 s (timeout). InventarioService aún no responde"
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
