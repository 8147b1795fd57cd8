//! Time as it crosses process boundaries: epoch milliseconds / microseconds.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn now_epoch_ms() -> i64 {
    epoch_ms(now())
}

/// Epoch milliseconds back to a timestamp; `None` when out of chrono's range.
pub fn from_epoch_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// `500ms`, `30s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 30s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let t = from_epoch_ms(1_700_000_000_123).expect("in range");
        assert_eq!(epoch_ms(t), 1_700_000_000_123);
        assert!(from_epoch_ms(i64::MAX).is_none());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("abc").is_err());
    }
}
