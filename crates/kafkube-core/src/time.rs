//! Time as it crosses process boundaries: epoch milliseconds / microseconds.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let t = from_epoch_ms(1_700_000_000_123).expect("in range");
        assert_eq!(epoch_ms(t), 1_700_000_000_123);
        assert!(from_epoch_ms(i64::MAX).is_none());
    }
}
