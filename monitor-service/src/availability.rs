//! The arithmetic of the availability check, apart from any I/O so it is tested exactly:
//! availability is successes over requests, latency percentiles by the nearest-rank method
//! over every request (failed ones included: a user waited for them too), and the ASR holds
//! when availability reaches the target percentage.

use std::fmt;
use std::time::Duration;

/// One request: whether it succeeded (a 2xx answer) and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub ok: bool,
    pub latency: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub total: usize,
    pub successes: usize,
    pub failures: usize,
    /// Percent, 0–100 (0 when nothing was measured).
    pub availability: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
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

pub fn summarize(samples: &[Sample], asr: f64) -> Report {
    let total = samples.len();
    let successes = samples.iter().filter(|s| s.ok).count();
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let availability = availability(successes, total);
    Report {
        total,
        successes,
        failures: total - successes,
        availability,
        p50: percentile(&latencies, 50.0),
        p95: percentile(&latencies, 95.0),
        p99: percentile(&latencies, 99.0),
        asr,
        holds: asr_holds(availability, asr, total),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(f, "Solicitudes: {}", self.total)?;
        writeln!(f, "Exitosas: {}", self.successes)?;
        writeln!(f, "Fallidas: {}", self.failures)?;
        writeln!(f, "Disponibilidad: {:.2} %", self.availability)?;
        writeln!(
            f,
            "Latencia: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99)
        )?;
        write!(
            f,
            "ASR (disponibilidad >= {:.2} %): {}",
            self.asr,
            if self.holds { "CUMPLE" } else { "NO CUMPLE" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
            .map(|i| Sample {
                ok: i % 10 != 0,
                latency: ms(i),
            })
            .collect();
        samples.reverse();
        let r = summarize(&samples, 99.0);
        assert_eq!((r.total, r.successes, r.failures), (100, 90, 10));
        assert_eq!(r.availability, 90.0);
        assert_eq!((r.p50, r.p95, r.p99), (ms(50), ms(95), ms(99)));
        assert!(!r.holds);
        assert!(summarize(&samples, 90.0).holds);
        let text = r.to_string();
        assert!(text.contains("Exitosas: 90"), "{text}");
        assert!(text.contains("Disponibilidad: 90.00 %"), "{text}");
        assert!(text.contains("NO CUMPLE"), "{text}");
    }
}
