//! The arithmetic of the availability check, apart from any I/O so it is tested exactly:
//! availability is successes over requests, latency percentiles by the nearest-rank method
//! over every request (failed ones included: a user waited for them too), and the ASR holds
//! when availability reaches the target percentage.
//!
//! The check is also an experiment tool (a run can span a worker kill), and each view of a run
//! is a pure function of its samples, in its own module:
//!
//! - [`plan`]: how many requests, and when each one is due (clients one after another, or a
//!   fixed rate whatever the answers take).
//! - [`live`]: the progress line while the run goes on.
//! - [`timeline`]: the run second by second, as a table.
//! - [`csv`]: every sample, one row each, for a spreadsheet or a notebook.
//! - [`svg`]: the run drawn as a picture: latency over time, failures marked by kind, the 2 s
//!   line of the ASR.

pub mod csv;
pub mod live;
pub mod plan;
pub mod svg;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The ASR's latency bound: the monitor must tell a failure or a slow answer within 2 s, so an
/// answer slower than this is as bad as none for the experiment. Counted and drawn, not judged:
/// the verdict stays the availability one.
pub const ASR_LATENCY: Duration = Duration::from_secs(2);

/// What became of one request. The order (ok, timeout, HTTP statuses by code, refused, other
/// connection errors) is the order the breakdown is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A 2xx answer, read to its end.
    Ok,
    /// No whole answer within the per-request timeout.
    Timeout,
    /// An answer whose status is not 2xx (503 when the service says it cannot serve).
    Status(u16),
    /// Nothing listening: the connection was refused.
    Refused,
    /// Any other transport failure: reset, closed before answering, name resolution, TLS.
    Connection,
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }

    /// The HTTP status, when an answer came (a 2xx answer too, since `Ok` does not carry it:
    /// [`Outcome::Ok`] means 2xx whatever the code).
    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::Status(code) => Some(code),
            _ => None,
        }
    }

    /// The kind of failure; `None` for a success.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Outcome::Ok => None,
            Outcome::Timeout => Some(Kind::Timeout),
            Outcome::Status(503) => Some(Kind::Unavailable),
            Outcome::Status(_) => Some(Kind::OtherStatus),
            Outcome::Refused => Some(Kind::Refused),
            Outcome::Connection => Some(Kind::Connection),
        }
    }

    /// A one-word code for machine-read outputs (the CSV's `resultado` column).
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "tiempo_agotado",
            Outcome::Status(_) => "http",
            Outcome::Refused => "rechazada",
            Outcome::Connection => "conexion",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Timeout => f.write_str("tiempo agotado"),
            Outcome::Status(code) => write!(f, "HTTP {code}"),
            Outcome::Refused => f.write_str("conexión rechazada"),
            Outcome::Connection => f.write_str("otro error de conexión"),
        }
    }
}

/// The failure kinds the views give a column or a row each. 503 stands apart from the other
/// statuses because it is what the services answer when what they depend on is down, the case
/// the experiment provokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Timeout,
    Unavailable,
    OtherStatus,
    Refused,
    Connection,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Timeout,
        Kind::Unavailable,
        Kind::OtherStatus,
        Kind::Refused,
        Kind::Connection,
    ];

    /// Position in [`Kind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name for a table header or a chart row.
    pub fn short(self) -> &'static str {
        match self {
            Kind::Timeout => "agotado",
            Kind::Unavailable => "503",
            Kind::OtherStatus => "otro_http",
            Kind::Refused => "rechazada",
            Kind::Connection => "conexion",
        }
    }
}

/// One request: when it was sent, how long it took, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// From the start of the run until the request was sent; with a fixed rate, until it was
    /// due (see [`plan`]), so a sender that fell behind cannot hide the wait.
    pub offset: Duration,
    /// From `offset` until the whole answer arrived or the request failed.
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub total: usize,
    pub successes: usize,
    pub failures: usize,
    /// Failures by outcome, in [`Outcome`]'s order, only those that happened.
    pub breakdown: Vec<(Outcome, usize)>,
    /// Percent, 0–100 (0 when nothing was measured).
    pub availability: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Requests that took longer than [`ASR_LATENCY`], failed or not.
    pub slower_than_asr: usize,
    /// The ASR's target, percent.
    pub asr: f64,
    pub holds: bool,
}

/// Percent of successes; 0 for no requests (nothing measured proves nothing).
pub fn availability(successes: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        successes as f64 * 100.0 / total as f64
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` percent of
/// the values at or below it. Zero for no values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether measured availability meets the ASR. Compared in hundredths of a percent so that
/// 99 % of 1000 requests (990) is exactly 99.00 and holds against 99.
pub fn asr_holds(availability: f64, asr: f64, total: usize) -> bool {
    total > 0 && (availability * 100.0).round() >= (asr * 100.0).round()
}

/// Milliseconds with a fraction, as every view prints latencies.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn summarize(samples: &[Sample], asr: f64) -> Report {
    let total = samples.len();
    let successes = samples.iter().filter(|s| s.ok()).count();
    let mut breakdown = BTreeMap::new();
    for s in samples.iter().filter(|s| !s.ok()) {
        *breakdown.entry(s.outcome).or_insert(0) += 1;
    }
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let availability = availability(successes, total);
    Report {
        total,
        successes,
        failures: total - successes,
        breakdown: breakdown.into_iter().collect(),
        availability,
        p50: percentile(&latencies, 50.0),
        p95: percentile(&latencies, 95.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
        slower_than_asr: latencies.iter().filter(|&&l| l > ASR_LATENCY).count(),
        asr,
        holds: asr_holds(availability, asr, total),
    }
}

impl Report {
    /// The last line alone, for the chart's title.
    pub fn verdict(&self) -> String {
        format!(
            "ASR (disponibilidad >= {:.2} %): {}",
            self.asr,
            if self.holds { "CUMPLE" } else { "NO CUMPLE" }
        )
    }
}

/// The summary. Its lines `Solicitudes`, `Exitosas`, `Fallidas`, `Disponibilidad`, `Latencia:
/// p50 ...` and the verdict are read by scripts: lines may be added between them, none changed.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Solicitudes: {}", self.total)?;
        writeln!(f, "Exitosas: {}", self.successes)?;
        writeln!(f, "Fallidas: {}", self.failures)?;
        for (outcome, n) in &self.breakdown {
            writeln!(f, "  {outcome}: {n}")?;
        }
        writeln!(f, "Disponibilidad: {:.2} %", self.availability)?;
        writeln!(
            f,
            "Latencia: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            millis(self.p50),
            millis(self.p95),
            millis(self.p99)
        )?;
        writeln!(
            f,
            "Latencia máxima: {:.1} ms; más lentas que {} ms: {}",
            millis(self.max),
            ASR_LATENCY.as_millis(),
            self.slower_than_asr
        )?;
        f.write_str(&self.verdict())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A sample sent at `at` ms that took `took` ms.
    pub(crate) fn sample(at: u64, took: u64, outcome: Outcome) -> Sample {
        Sample {
            offset: ms(at),
            latency: ms(took),
            outcome,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 95.0), ms(95));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&v, 100.0), ms(100));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        let few = [ms(1), ms(2), ms(3)];
        assert_eq!(percentile(&few, 50.0), ms(2));
        assert_eq!(percentile(&few, 99.0), ms(3));
    }

    #[test]
    fn availability_and_the_asr() {
        assert_eq!(availability(990, 1000), 99.0);
        assert!(asr_holds(availability(990, 1000), 99.0, 1000));
        assert!(!asr_holds(availability(989, 1000), 99.0, 1000));
        assert!(asr_holds(100.0, 99.0, 1));
        assert_eq!(availability(0, 0), 0.0);
        assert!(!asr_holds(0.0, 0.0, 0));
    }

    #[test]
    fn summary_counts_everything() {
        let mut samples: Vec<Sample> = (1..=100)
            .map(|i| {
                let outcome = if i % 10 == 0 {
                    Outcome::Status(503)
                } else {
                    Outcome::Ok
                };
                sample(i, i, outcome)
            })
            .collect();
        samples.reverse();
        let r = summarize(&samples, 99.0);
        assert_eq!((r.total, r.successes, r.failures), (100, 90, 10));
        assert_eq!(r.availability, 90.0);
        assert_eq!(
            (r.p50, r.p95, r.p99, r.max),
            (ms(50), ms(95), ms(99), ms(100))
        );
        assert!(!r.holds);
        assert!(summarize(&samples, 90.0).holds);
        let text = r.to_string();
        assert!(text.contains("Exitosas: 90"), "{text}");
        assert!(text.contains("Fallidas: 10\n  HTTP 503: 10\n"), "{text}");
        assert!(text.contains("Disponibilidad: 90.00 %"), "{text}");
        assert!(text.contains("más lentas que 2000 ms: 0"), "{text}");
        assert!(text.ends_with("NO CUMPLE"), "{text}");
    }

    #[test]
    fn failures_are_broken_down_by_kind_in_a_fixed_order() {
        let samples = [
            sample(0, 1, Outcome::Connection),
            sample(0, 1, Outcome::Status(500)),
            sample(0, 5000, Outcome::Timeout),
            sample(0, 1, Outcome::Refused),
            sample(0, 1, Outcome::Status(503)),
            sample(0, 2500, Outcome::Status(503)),
            sample(0, 1, Outcome::Status(404)),
            sample(0, 1, Outcome::Ok),
        ];
        let r = summarize(&samples, 99.0);
        assert_eq!(
            r.breakdown,
            vec![
                (Outcome::Timeout, 1),
                (Outcome::Status(404), 1),
                (Outcome::Status(500), 1),
                (Outcome::Status(503), 2),
                (Outcome::Refused, 1),
                (Outcome::Connection, 1),
            ]
        );
        assert_eq!(r.slower_than_asr, 2);
        let text = r.to_string();
        for line in [
            "  tiempo agotado: 1\n",
            "  HTTP 404: 1\n",
            "  HTTP 503: 2\n",
            "  conexión rechazada: 1\n",
            "  otro error de conexión: 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        let kinds: Vec<_> = samples.iter().map(|s| s.outcome.kind()).collect();
        assert_eq!(
            kinds,
            [
                Some(Kind::Connection),
                Some(Kind::OtherStatus),
                Some(Kind::Timeout),
                Some(Kind::Refused),
                Some(Kind::Unavailable),
                Some(Kind::Unavailable),
                Some(Kind::OtherStatus),
                None,
            ]
        );
    }

    #[test]
    fn kinds_index_their_own_position() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
