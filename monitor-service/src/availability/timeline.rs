//! The run second by second: for each second of sending, how many requests were sent, how many
//! succeeded, how many failed of each kind, and their median and worst latency. A request
//! belongs to the second it was sent in (due in, at a fixed rate), so an outage shows as the
//! seconds whose requests failed, however long those took to fail.

use std::fmt;
use std::time::Duration;

use super::{millis, percentile, Kind, Sample};

#[derive(Debug, Clone, PartialEq)]
pub struct Second {
    /// Seconds from the start: this row holds the requests sent in `[second, second + 1)`.
    pub second: u64,
    pub sent: usize,
    pub ok: usize,
    /// Failures by kind, indexed by [`Kind::index`].
    pub failed: [usize; Kind::ALL.len()],
    pub p50: Duration,
    pub max: Duration,
}

/// One row per second from the start to the last request sent, and to `at_least` seconds
/// (the planned length, rounded up) when the run had one: a quiet second is a row of zeros, not
/// a gap.
pub fn timeline(samples: &[Sample], at_least: Duration) -> Vec<Second> {
    let last = samples.iter().map(|s| s.offset.as_secs()).max();
    let planned = at_least.as_secs() + u64::from(at_least.subsec_nanos() > 0);
    let rows = planned.max(last.map_or(0, |l| l + 1));
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); rows as usize];
    let mut seconds: Vec<Second> = (0..rows)
        .map(|second| Second {
            second,
            sent: 0,
            ok: 0,
            failed: [0; Kind::ALL.len()],
            p50: Duration::ZERO,
            max: Duration::ZERO,
        })
        .collect();
    for s in samples {
        let i = s.offset.as_secs() as usize;
        let row = &mut seconds[i];
        row.sent += 1;
        match s.outcome.kind() {
            None => row.ok += 1,
            Some(kind) => row.failed[kind.index()] += 1,
        }
        latencies[i].push(s.latency);
    }
    for (row, mut l) in seconds.iter_mut().zip(latencies) {
        l.sort();
        row.p50 = percentile(&l, 50.0);
        row.max = l.last().copied().unwrap_or_default();
    }
    seconds
}

/// The timeline as a compact table, latencies in milliseconds.
pub struct Table<'a>(pub &'a [Second]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Línea de tiempo (por segundo de envío; fallidas por tipo; latencia en ms):"
        )?;
        write!(f, "{:>5} {:>8} {:>8}", "seg", "enviadas", "ok")?;
        for kind in Kind::ALL {
            write!(f, " {:>9}", kind.short())?;
        }
        write!(f, " {:>9} {:>9}", "p50", "máx")?;
        for row in self.0 {
            write!(f, "\n{:>5} {:>8} {:>8}", row.second, row.sent, row.ok)?;
            for n in row.failed {
                write!(f, " {n:>9}")?;
            }
            if row.sent == 0 {
                write!(f, " {:>9} {:>9}", "-", "-")?;
            } else {
                write!(f, " {:>9.1} {:>9.1}", millis(row.p50), millis(row.max))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ms, sample};
    use super::super::Outcome;
    use super::*;

    #[test]
    fn one_row_per_second_with_failures_by_kind() {
        let samples = [
            sample(0, 3, Outcome::Ok),
            sample(400, 1, Outcome::Ok),
            sample(999, 5, Outcome::Ok),
            sample(1000, 300, Outcome::Timeout),
            sample(1500, 2, Outcome::Status(503)),
            sample(1900, 2, Outcome::Status(500)),
            // Nothing sent in second 2.
            sample(3100, 1, Outcome::Refused),
            sample(3200, 1, Outcome::Connection),
        ];
        let rows = timeline(&samples, Duration::ZERO);
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows.iter().map(|r| r.second).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!((rows[0].sent, rows[0].ok, rows[0].failed), (3, 3, [0; 5]));
        assert_eq!((rows[0].p50, rows[0].max), (ms(3), ms(5)));
        assert_eq!(
            (rows[1].sent, rows[1].ok, rows[1].failed),
            (3, 0, [1, 1, 1, 0, 0])
        );
        assert_eq!((rows[1].p50, rows[1].max), (ms(2), ms(300)));
        assert_eq!((rows[2].sent, rows[2].max), (0, Duration::ZERO));
        assert_eq!(rows[3].failed, [0, 0, 0, 1, 1]);

        let table = Table(&rows).to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 4, "{table}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "seg",
                "enviadas",
                "ok",
                "agotado",
                "503",
                "otro_http",
                "rechazada",
                "conexion",
                "p50",
                "máx"
            ]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["1", "3", "0", "1", "1", "1", "0", "0", "2.0", "300.0"]
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["2", "0", "0", "0", "0", "0", "0", "0", "-", "-"]
        );
    }

    #[test]
    fn the_planned_length_gives_its_rows_even_when_the_end_was_quiet() {
        let samples = [sample(200, 1, Outcome::Ok)];
        assert_eq!(timeline(&samples, Duration::from_secs(3)).len(), 3);
        assert_eq!(timeline(&samples, Duration::from_millis(2500)).len(), 3);
        assert_eq!(timeline(&[], Duration::ZERO).len(), 0);
    }
}
