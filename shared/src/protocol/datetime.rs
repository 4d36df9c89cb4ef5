//! Celery's timestamps (`eta`, `expires`, `date_done`, ...), read and written in one place so
//! every document agrees on them.
//!
//! Reading accepts what any Celery version writes (with an offset or naive, naive read as
//! UTC); writing gives exactly what Celery 5.5 writes, so our results compare byte for byte.

/// Parses a Celery timestamp: ISO 8601 with an offset (Celery ≥ 5.4) or naive, read as UTC
/// (Celery ≤ 5.3 and naive user datetimes).
pub fn parse_datetime(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|naive| naive.and_utc())
}

/// Formats a timestamp as Celery 5.5 does: ISO 8601, microseconds, `+00:00`.
pub fn format_datetime(dt: chrono::DateTime<chrono::Utc>) -> String {
    dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_with_and_without_offset() {
        let aware = parse_datetime("2026-11-23T04:49:25.690447+00:00").unwrap();
        let naive = parse_datetime("2026-11-23T04:49:25.690447").unwrap();
        assert_eq!(aware, naive);
        let shifted = parse_datetime("2026-11-23T05:49:25.690447+01:00").unwrap();
        assert_eq!(aware, shifted);
        assert_eq!(format_datetime(aware), "2026-11-23T04:49:25.690447+00:00");
        assert!(parse_datetime("yesterday").is_none());
    }
}
