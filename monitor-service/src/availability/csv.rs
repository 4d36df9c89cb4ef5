//! Every sample of a run as CSV, one row each in the order sent, so a run can be studied
//! afterwards (a spreadsheet, a notebook) without running it again. Columns:
//!
//! | column | what it holds |
//! | --- | --- |
//! | `desfase_ms` | when the request was sent (due, at a fixed rate), ms from the start |
//! | `hora` | the same moment as wall-clock time, RFC 3339 UTC with milliseconds |
//! | `latencia_ms` | from sending until the whole answer or the failure, ms |
//! | `resultado` | `ok`, `http` (a non-2xx answer), `tiempo_agotado`, `rechazada`, `conexion` |
//! | `estado_http` | the status of a non-2xx answer; empty otherwise |

use std::io;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{millis, Sample};

pub const HEADER: [&str; 5] = [
    "desfase_ms",
    "hora",
    "latencia_ms",
    "resultado",
    "estado_http",
];

/// Writes `samples` as CSV to `out`; `started` is the wall-clock time of offset zero.
pub fn write<W: io::Write>(
    out: W,
    started: DateTime<Utc>,
    samples: &[Sample],
) -> Result<(), ::csv::Error> {
    let mut w = ::csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for s in samples {
        // The offset is below a run's length, far from chrono's range limits: saturate rather
        // than fail on the impossible.
        let at = chrono::Duration::from_std(s.offset)
            .ok()
            .and_then(|d| started.checked_add_signed(d))
            .unwrap_or(started);
        w.write_record([
            format!("{:.3}", millis(s.offset)),
            at.to_rfc3339_opts(SecondsFormat::Millis, true),
            format!("{:.3}", millis(s.latency)),
            s.outcome.code().to_string(),
            s.outcome
                .status()
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::super::Outcome;
    use super::*;

    #[test]
    fn a_header_and_one_row_per_sample() {
        let started = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let samples = [
            sample(0, 3, Outcome::Ok),
            sample(1500, 2, Outcome::Status(503)),
            sample(2001, 5000, Outcome::Timeout),
        ];
        let mut out = Vec::new();
        write(&mut out, started, &samples).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "desfase_ms,hora,latencia_ms,resultado,estado_http\n\
             0.000,2026-03-01T10:00:00.000Z,3.000,ok,\n\
             1500.000,2026-03-01T10:00:01.500Z,2.000,http,503\n\
             2001.000,2026-03-01T10:00:02.001Z,5000.000,tiempo_agotado,\n"
        );
    }
}
