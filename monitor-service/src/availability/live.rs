//! The progress line shown while a run goes on: how long it has run, what was sent, what came
//! back, availability so far and the median latency of the last second's answers. The recent
//! median, not the overall one, is what shows a worker kill as it happens.

use std::collections::VecDeque;
use std::time::Duration;

use super::{availability, millis, percentile, Sample};

/// The answers of the last [`Progress::WINDOW`] make the recent median.
#[derive(Debug, Default)]
pub struct Progress {
    ok: usize,
    failed: usize,
    /// (when the answer came, from the start; its latency), oldest first.
    recent: VecDeque<(Duration, Duration)>,
}

impl Progress {
    pub const WINDOW: Duration = Duration::from_secs(1);

    /// Counts an answer (or a failure) that came `at` after the start.
    pub fn record(&mut self, at: Duration, sample: &Sample) {
        if sample.ok() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.recent.push_back((at, sample.latency));
        self.forget_before(at);
    }

    fn forget_before(&mut self, now: Duration) {
        let since = now.saturating_sub(Self::WINDOW);
        while self.recent.front().is_some_and(|&(at, _)| at < since) {
            self.recent.pop_front();
        }
    }

    /// The line at `elapsed` into the run, with `sent` requests sent so far.
    pub fn line(&mut self, elapsed: Duration, sent: usize) -> String {
        self.forget_before(elapsed);
        let done = self.ok + self.failed;
        let mut recent: Vec<Duration> = self.recent.iter().map(|&(_, l)| l).collect();
        recent.sort();
        let p50 = if recent.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1} ms", millis(percentile(&recent, 50.0)))
        };
        let available = if done == 0 {
            "-".to_string()
        } else {
            format!("{:.2} %", availability(self.ok, done))
        };
        format!(
            "{:.1} s | enviadas {sent} | ok {} | fallidas {} | disponibilidad {available} | \
             p50 último segundo {p50}",
            elapsed.as_secs_f64(),
            self.ok,
            self.failed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ms, sample};
    use super::super::Outcome;
    use super::*;

    #[test]
    fn the_line_counts_everything_and_takes_the_median_of_the_last_second() {
        let mut p = Progress::default();
        assert_eq!(
            p.line(ms(0), 0),
            "0.0 s | enviadas 0 | ok 0 | fallidas 0 | disponibilidad - | p50 último segundo -"
        );
        // Slow answers early on, fast ones in the last second.
        for i in 0..10 {
            p.record(ms(100 + i), &sample(0, 900, Outcome::Ok));
        }
        for i in 0..3 {
            p.record(ms(1500 + i), &sample(1400, 2, Outcome::Ok));
        }
        p.record(ms(1600), &sample(1500, 4, Outcome::Status(503)));
        assert_eq!(
            p.line(ms(2000), 20),
            "2.0 s | enviadas 20 | ok 13 | fallidas 1 | disponibilidad 92.86 % | \
             p50 último segundo 2.0 ms"
        );
        // Nothing came for a while: no recent median, totals kept.
        assert!(p
            .line(ms(5000), 20)
            .ends_with("ok 13 | fallidas 1 | disponibilidad 92.86 % | p50 último segundo -"));
    }
}
