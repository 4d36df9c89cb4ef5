//! The failure detector of one target, as a pure state machine: it is told when pings are sent
//! and how they ended, and says when the state changes. No clock or Redis of its own (times
//! are passed in), so every rule is unit-tested here with exact instants.
//!
//! The rules:
//! - **INICIANDO** from the detector's creation until the first good echo, or until the
//!   start-up grace (`startup_grace`, at least `timeout`) has passed without one. A monitor
//!   started with (or before) the worker it watches sees failed pings while that worker is still
//!   starting; they are expected, not an outage, so they raise no alarm. The first echo makes
//!   the target OK (a start, not a recovery); a grace passed in silence makes it CAIDO, so a
//!   target that never answers is still reported.
//! - **CAIDO** when some ping is unanswered and no good echo has arrived for `timeout`
//!   ("silence"), or at once when a ping is unanswered and every worker known to serve the
//!   target has gone (`worker-offline`, or heartbeats missed: the second signal). An echo that
//!   arrives after the workers were declared gone outweighs that signal until the heartbeat
//!   table says so again: after a Redis outage every worker has missed its heartbeats, and
//!   their next ones come seconds after the pings are answered again, so a stale "gone" would
//!   turn the first ping still in flight into a false CAIDO right after the recovery. Silence is
//!   measured from the last good echo, not from the first lost ping: echoes normally arrive
//!   every interval, so after a SIGKILL the detector fires `timeout` after the last echo the
//!   worker sent, i.e. within `timeout` of the kill (750 ms with the defaults), whereas waiting
//!   for a ping sent after the kill to time out could take `interval + timeout` (1 s).
//!   A slow but living worker still answers every interval, so slowness alone never looks
//!   like silence unless echoes take longer than `timeout`.
//! - **DEGRADADO** when it answers, but the median latency of the recent window exceeds the
//!   threshold, or some recent ping failed (timed out, or the health task reported failure).
//! - **OK** otherwise.
//!
//! After a recovery from CAIDO (and after the start), the window restarts at the moment of the
//! recovery: pings sent during the outage either are lost (their timeouts may still be
//! arriving) or waited in the queue while the worker was starting, and neither says how the
//! recovered worker answers now. The pings sent from then on do, and a slow worker is DEGRADADO
//! again within a few.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A target's health, in the contract's words. Ordered from best to worst: the order in which
/// several targets' states make the overall one, and a change to a worse state is an alert.
/// INICIANDO ranks above OK (the whole is not known to be fine yet) and below the failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Estado {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "INICIANDO")]
    Iniciando,
    #[serde(rename = "DEGRADADO")]
    Degradado,
    #[serde(rename = "CAIDO")]
    Caido,
}

impl Estado {
    pub fn as_str(self) -> &'static str {
        match self {
            Estado::Ok => "OK",
            Estado::Iniciando => "INICIANDO",
            Estado::Degradado => "DEGRADADO",
            Estado::Caido => "CAIDO",
        }
    }

    /// The value of the Prometheus state gauge: 0 OK, 1 DEGRADADO, 2 CAIDO, -1 INICIANDO.
    /// INICIANDO is below zero so that rules on `> 0` (or `>= 1`, `== 2`) stay quiet while a
    /// target starts, and the values the gauge had before it existed keep their meaning.
    pub fn gauge(self) -> i64 {
        match self {
            Estado::Ok => 0,
            Estado::Degradado => 1,
            Estado::Caido => 2,
            Estado::Iniciando => -1,
        }
    }
}

impl fmt::Display for Estado {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one ping ended, as far as the detector cares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Echo {
    /// The health task answered successfully after this long.
    Answered(Duration),
    /// Timed out, the task failed, or it could not be sent.
    Failed,
}

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub timeout: Duration,
    /// How long the target may stay silent after the detector starts before it is CAIDO (at
    /// least `timeout`).
    pub startup_grace: Duration,
    pub degraded_threshold: Duration,
    /// Completed pings judged for DEGRADADO.
    pub window: usize,
}

/// A change of state, reported once when it happens.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub from: Estado,
    pub to: Estado,
    /// From the first sign of the new state (the first unanswered ping's send, the first slow
    /// or failed ping, the good ping's send) to the decision.
    pub detected_in: Duration,
    /// How long the target was in `from`.
    pub after: Duration,
    /// Why, in words, for the log and the history.
    pub reason: String,
}

impl Change {
    /// A change to a worse state is an alert; to a better one, a recovery (or, from
    /// INICIANDO, the start).
    pub fn is_alert(&self) -> bool {
        self.to > self.from
    }
}

/// One ping of the recent window: when it was sent, and its latency if it was answered.
#[derive(Debug, Clone, Copy)]
struct Judged {
    sent: Instant,
    latency: Option<Duration>,
}

#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    state: Estado,
    entered: Instant,
    /// When the last good echo arrived (the detector's creation before the first).
    last_good: Instant,
    /// When the newest answered ping had been sent.
    last_good_sent: Option<Instant>,
    /// Pings sent and not yet ended: sequence number → send time.
    outstanding: BTreeMap<u64, Instant>,
    /// The earliest send time of a failed ping sent after the newest answered one.
    first_failed: Option<Instant>,
    /// Pings sent before this are not judged for DEGRADADO (see the module doc).
    window_start: Instant,
    recent: VecDeque<Judged>,
    /// Since when every worker known to serve the target has been gone (second signal).
    workers_gone_since: Option<Instant>,
}

impl Detector {
    pub fn new(config: DetectorConfig, now: Instant) -> Self {
        Detector {
            config,
            state: Estado::Iniciando,
            entered: now,
            last_good: now,
            last_good_sent: None,
            outstanding: BTreeMap::new(),
            first_failed: None,
            window_start: now,
            recent: VecDeque::new(),
            workers_gone_since: None,
        }
    }

    pub fn state(&self) -> Estado {
        self.state
    }

    /// Since when the target has been in its state.
    pub fn entered(&self) -> Instant {
        self.entered
    }

    pub fn sent(&mut self, seq: u64, at: Instant) {
        self.outstanding.insert(seq, at);
    }

    /// Records how ping `seq` ended, at `now`.
    pub fn completed(&mut self, seq: u64, echo: Echo, now: Instant) -> Option<Change> {
        let Some(sent) = self.outstanding.remove(&seq) else {
            return self.evaluate(now);
        };
        let newer_than_good = self.last_good_sent.is_none_or(|g| sent > g);
        match echo {
            Echo::Answered(latency) => {
                self.last_good = now;
                if newer_than_good {
                    self.last_good_sent = Some(sent);
                    if self.first_failed.is_some_and(|f| f <= sent) {
                        self.first_failed = None;
                    }
                }
                self.judge(sent, Some(latency));
            }
            Echo::Failed => {
                if newer_than_good {
                    self.first_failed = Some(self.first_failed.map_or(sent, |f| f.min(sent)));
                }
                self.judge(sent, None);
            }
        }
        self.evaluate(now)
    }

    /// The second signal: whether every worker known to serve the target has gone.
    pub fn workers_gone(&mut self, gone: bool, now: Instant) -> Option<Change> {
        self.workers_gone_since = match (gone, self.workers_gone_since) {
            (false, _) => None,
            (true, since) => Some(since.unwrap_or(now)),
        };
        self.evaluate(now)
    }

    /// The second signal, unless an echo has arrived since it was raised (see the module doc).
    fn workers_gone_now(&self) -> bool {
        self.workers_gone_since
            .is_some_and(|since| since >= self.last_good)
    }

    /// When, without news, the silence rule (or, while starting, the end of the grace) would
    /// fire: the caller re-evaluates then.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_unanswered()?;
        match self.state {
            Estado::Caido => None,
            Estado::Iniciando => Some(self.entered + self.grace()),
            _ => Some(self.last_good + self.config.timeout),
        }
    }

    /// The start-up grace: never shorter than a ping's timeout, or a target would be CAIDO
    /// before any ping could have been answered.
    fn grace(&self) -> Duration {
        self.config.startup_grace.max(self.config.timeout)
    }

    /// Re-judges the state at `now`.
    pub fn evaluate(&mut self, now: Instant) -> Option<Change> {
        let (to, since, reason) = self.judgement(now);
        if to == self.state {
            return None;
        }
        let change = Change {
            from: self.state,
            to,
            detected_in: now.saturating_duration_since(since),
            after: now.saturating_duration_since(self.entered),
            reason,
        };
        if matches!(change.from, Estado::Caido | Estado::Iniciando) {
            // Judge only pings sent from the recovery (or the start) on (see the module doc).
            self.window_start = now;
            self.recent.clear();
        }
        self.state = to;
        self.entered = now;
        Some(change)
    }

    /// The state the facts call for, since when they have called for it, and why.
    fn judgement(&self, now: Instant) -> (Estado, Instant, String) {
        if self.state == Estado::Iniciando && self.last_good_sent.is_none() {
            let waited = now.saturating_duration_since(self.entered);
            return match self.first_unanswered() {
                Some(first) if waited >= self.grace() => {
                    let reason = format!(
                        "sin respuesta desde el arranque, hace {:.3} s",
                        waited.as_secs_f64()
                    );
                    (Estado::Caido, first, reason)
                }
                _ => (Estado::Iniciando, now, "aún sin respuesta".to_owned()),
            };
        }
        if let Some(first) = self.first_unanswered() {
            let silence = now.saturating_duration_since(self.last_good);
            if silence >= self.config.timeout {
                let reason = format!("sin respuesta desde hace {:.3} s", silence.as_secs_f64());
                return (Estado::Caido, first, reason);
            }
            if self.workers_gone_now() {
                let reason =
                    "sus workers dejaron de emitir heartbeats (worker-offline o heartbeat perdido)"
                        .to_owned();
                return (Estado::Caido, first, reason);
            }
        }
        // Just recovered (or started): the window is judged as it will be after the reset.
        let start = if matches!(self.state, Estado::Caido | Estado::Iniciando) {
            now
        } else {
            self.window_start
        };
        let judged: Vec<&Judged> = self.recent.iter().filter(|j| j.sent >= start).collect();
        let failures = judged.iter().filter(|j| j.latency.is_none()).count();
        let mut latencies: Vec<Duration> = judged.iter().filter_map(|j| j.latency).collect();
        latencies.sort();
        let median = latencies
            .get(latencies.len().saturating_sub(1) / 2)
            .copied();
        let threshold = self.config.degraded_threshold;
        let first_bad = || {
            judged
                .iter()
                .find(|j| j.latency.is_none_or(|l| l > threshold))
                .map_or(now, |j| j.sent)
        };
        if failures > 0 {
            let reason = format!("{failures} de los últimos {} pings fallaron", judged.len());
            return (Estado::Degradado, first_bad(), reason);
        }
        if let Some(median) = median.filter(|m| *m > threshold) {
            let reason = format!(
                "latencia mediana {:.3} s sobre el umbral de {:.3} s",
                median.as_secs_f64(),
                threshold.as_secs_f64()
            );
            return (Estado::Degradado, first_bad(), reason);
        }
        let since = self.last_good_sent.unwrap_or(now);
        (Estado::Ok, since, "responde a tiempo".to_owned())
    }

    /// The send time of the earliest ping that has not been answered and was sent after the
    /// newest answered one.
    fn first_unanswered(&self) -> Option<Instant> {
        let pending = self
            .outstanding
            .values()
            .filter(|s| self.last_good_sent.is_none_or(|g| **s > g))
            .min()
            .copied();
        match (pending, self.first_failed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn judge(&mut self, sent: Instant, latency: Option<Duration>) {
        if sent < self.window_start {
            return;
        }
        self.recent.push_back(Judged { sent, latency });
        while self.recent.len() > self.config.window.max(1) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> DetectorConfig {
        DetectorConfig {
            timeout: 750 * MS,
            startup_grace: 30_000 * MS,
            degraded_threshold: 300 * MS,
            window: 8,
        }
    }

    /// A detector that started a second before `t0` and has had its first echo since: OK.
    fn detector(t0: Instant) -> Detector {
        let start = t0 - 1000 * MS;
        let mut d = Detector::new(config(), start);
        d.sent(u64::MAX, start);
        let change = d.completed(u64::MAX, Echo::Answered(MS), start + MS);
        assert_eq!(change.map(|c| c.to), Some(Estado::Ok));
        d
    }

    /// Pings every 250 ms from `from`, each answered after `latency`, for `n` pings; returns
    /// the changes and the next sequence number.
    fn steady(d: &mut Detector, t0: Instant, seq: u64, n: u64, latency: Duration) -> Vec<Change> {
        let mut changes = Vec::new();
        for i in 0..n {
            let sent = t0 + 250 * MS * i as u32;
            d.sent(seq + i, sent);
            changes.extend(d.completed(seq + i, Echo::Answered(latency), sent + latency));
        }
        changes
    }

    #[test]
    fn healthy_stays_ok() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        assert!(steady(&mut d, t0, 0, 20, 5 * MS).is_empty());
        assert_eq!(d.state(), Estado::Ok);
    }

    #[test]
    fn silence_is_caido_within_the_timeout_of_the_last_echo() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        steady(&mut d, t0, 0, 4, 5 * MS); // last echo at 755 ms
        let last_echo = t0 + 755 * MS;
        // Killed right after; pings go on every 250 ms, unanswered.
        d.sent(4, t0 + 1000 * MS);
        assert_eq!(d.deadline(), Some(last_echo + 750 * MS));
        assert!(d.evaluate(t0 + 1250 * MS).is_none());
        d.sent(5, t0 + 1250 * MS);
        let change = d.evaluate(last_echo + 750 * MS).expect("CAIDO");
        assert_eq!(change.to, Estado::Caido);
        assert!(change.is_alert());
        // From the first unanswered ping's send (1000 ms) to the decision (1505 ms).
        assert_eq!(change.detected_in, 505 * MS);
        // Once only.
        assert!(d.completed(4, Echo::Failed, t0 + 1750 * MS).is_none());
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn recovery_is_ok_not_degraded_by_the_lost_pings() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        d.sent(0, t0);
        d.sent(1, t0 + 250 * MS);
        d.sent(2, t0 + 500 * MS);
        assert_eq!(d.evaluate(t0 + 750 * MS).unwrap().to, Estado::Caido);
        assert!(d.completed(0, Echo::Failed, t0 + 750 * MS).is_none());
        d.sent(3, t0 + 2000 * MS);
        let change = d
            .completed(3, Echo::Answered(5 * MS), t0 + 2005 * MS)
            .expect("recovered");
        assert_eq!((change.from, change.to), (Estado::Caido, Estado::Ok));
        assert_eq!(change.after, 1255 * MS);
        assert!(!change.is_alert());
        // Pings lost during the outage time out after the recovery: still OK.
        assert!(d.completed(1, Echo::Failed, t0 + 2010 * MS).is_none());
        assert!(d.completed(2, Echo::Failed, t0 + 2020 * MS).is_none());
        assert_eq!(d.state(), Estado::Ok);
    }

    #[test]
    fn slow_answers_are_degraded_never_caido() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        let changes = steady(&mut d, t0, 0, 20, 450 * MS);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to, Estado::Degradado);
        assert_eq!(d.state(), Estado::Degradado);
        // Fast again: back to OK once the median is under the threshold.
        let changes = steady(&mut d, t0 + 5000 * MS, 20, 8, 5 * MS);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to, Estado::Ok);
    }

    #[test]
    fn a_lost_ping_among_answers_is_degraded() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        steady(&mut d, t0, 0, 4, 5 * MS);
        d.sent(4, t0 + 1000 * MS);
        steady(&mut d, t0 + 1250 * MS, 5, 3, 5 * MS);
        let change = d.completed(4, Echo::Failed, t0 + 1750 * MS).unwrap();
        assert_eq!(change.to, Estado::Degradado);
        assert_eq!(change.detected_in, 750 * MS);
    }

    #[test]
    fn workers_gone_is_caido_at_once_when_a_ping_is_unanswered() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        steady(&mut d, t0, 0, 2, 5 * MS);
        // Gone, but nothing is waiting: no verdict yet.
        assert!(d.workers_gone(true, t0 + 300 * MS).is_none());
        d.sent(2, t0 + 500 * MS);
        let change = d.evaluate(t0 + 510 * MS).expect("CAIDO");
        assert_eq!(change.to, Estado::Caido);
        assert_eq!(change.detected_in, 10 * MS);
    }

    #[test]
    fn an_echo_after_the_workers_were_declared_gone_outweighs_that_signal() {
        let t0 = Instant::now();
        let mut d = detector(t0);
        steady(&mut d, t0, 0, 2, 5 * MS);
        // A Redis outage: pings lost, heartbeats missed, CAIDO.
        d.sent(2, t0 + 500 * MS);
        assert!(d.workers_gone(true, t0 + 600 * MS).is_some());
        assert_eq!(d.state(), Estado::Caido);
        d.completed(2, Echo::Failed, t0 + 1250 * MS);
        // Redis is back: pings are answered while the heartbeat table still says gone.
        d.sent(3, t0 + 3000 * MS);
        let change = d.completed(3, Echo::Answered(5 * MS), t0 + 3005 * MS);
        assert_eq!(change.expect("recovered").to, Estado::Ok);
        assert!(d.workers_gone(true, t0 + 3010 * MS).is_none());
        // A ping in flight with the stale signal still up: no false CAIDO.
        d.sent(4, t0 + 3250 * MS);
        assert!(d.workers_gone(true, t0 + 3260 * MS).is_none());
        assert!(d.evaluate(t0 + 3300 * MS).is_none());
        assert_eq!(d.state(), Estado::Ok);
        // Heartbeats resume, then the workers really go: the signal counts again.
        assert!(d
            .completed(4, Echo::Answered(5 * MS), t0 + 3255 * MS)
            .is_none());
        assert!(d.workers_gone(false, t0 + 5000 * MS).is_none());
        d.sent(5, t0 + 6000 * MS);
        let change = d.workers_gone(true, t0 + 6010 * MS).expect("CAIDO");
        assert_eq!(change.to, Estado::Caido);
    }

    #[test]
    fn starting_failures_raise_no_alarm_and_the_first_echo_is_ok() {
        let t0 = Instant::now();
        let mut d = Detector::new(config(), t0);
        assert_eq!(d.state(), Estado::Iniciando);
        // The worker is still starting: 8 s of pings, none answered.
        for i in 0..32u64 {
            let sent = t0 + 250 * MS * i as u32;
            d.sent(i, sent);
            assert!(d.completed(i, Echo::Failed, sent + 750 * MS).is_none());
            assert!(d.evaluate(sent + 750 * MS).is_none());
        }
        assert_eq!(d.state(), Estado::Iniciando);
        // The grace runs from the start, whatever the silence.
        d.sent(32, t0 + 8000 * MS);
        assert_eq!(d.deadline(), Some(t0 + 30_000 * MS));
        let change = d
            .completed(32, Echo::Answered(5 * MS), t0 + 8005 * MS)
            .expect("started");
        assert_eq!((change.from, change.to), (Estado::Iniciando, Estado::Ok));
        assert!(!change.is_alert());
        assert_eq!(change.after, 8005 * MS);
        // The failures while starting do not make it DEGRADADO afterwards.
        assert!(steady(&mut d, t0 + 8250 * MS, 33, 8, 5 * MS).is_empty());
        assert_eq!(d.state(), Estado::Ok);
    }

    #[test]
    fn a_grace_passed_in_silence_is_caido() {
        let t0 = Instant::now();
        let mut d = Detector::new(
            DetectorConfig {
                startup_grace: 2000 * MS,
                ..config()
            },
            t0,
        );
        d.sent(0, t0);
        assert_eq!(d.deadline(), Some(t0 + 2000 * MS));
        assert!(d.completed(0, Echo::Failed, t0 + 750 * MS).is_none());
        d.sent(1, t0 + 1750 * MS);
        assert!(d.evaluate(t0 + 1999 * MS).is_none());
        let change = d.evaluate(t0 + 2000 * MS).expect("CAIDO");
        assert_eq!((change.from, change.to), (Estado::Iniciando, Estado::Caido));
        assert!(change.is_alert());
        // From the first unanswered ping's send.
        assert_eq!(change.detected_in, 2000 * MS);
        assert!(
            change.reason.contains("desde el arranque"),
            "{}",
            change.reason
        );
        // It answers at last: a recovery like any other.
        d.sent(2, t0 + 5000 * MS);
        let back = d
            .completed(2, Echo::Answered(5 * MS), t0 + 5005 * MS)
            .expect("OK");
        assert_eq!((back.from, back.to), (Estado::Caido, Estado::Ok));
    }

    #[test]
    fn the_grace_is_never_shorter_than_the_timeout() {
        let t0 = Instant::now();
        let mut d = Detector::new(
            DetectorConfig {
                startup_grace: Duration::ZERO,
                ..config()
            },
            t0,
        );
        d.sent(0, t0);
        assert_eq!(d.deadline(), Some(t0 + 750 * MS));
        assert!(d.evaluate(t0 + 749 * MS).is_none());
        assert_eq!(d.evaluate(t0 + 750 * MS).unwrap().to, Estado::Caido);
    }

    #[test]
    fn gauge_values() {
        let values: Vec<i64> = [
            Estado::Ok,
            Estado::Degradado,
            Estado::Caido,
            Estado::Iniciando,
        ]
        .map(Estado::gauge)
        .into();
        assert_eq!(values, [0, 1, 2, -1]);
        assert!(Estado::Ok < Estado::Iniciando && Estado::Iniciando < Estado::Degradado);
    }
}
