//! An aggregated event and the validation of `POST /publish` bodies and Kafka records.
//!
//! A body is first read straight into borrowed typed fields, the payload kept as the JSON text it
//! arrived as (no tree is built and none re-serialised). Only a body that does not fit that shape
//! is parsed again as a `serde_json::Value`, to say exactly which event and field is wrong.
//!
//! What is accepted is what seed 003's clients send (its pydantic model): unknown fields are
//! ignored, an empty batch is a batch of none, and a timestamp is an RFC 3339 date-time, a
//! date-time without a zone (taken as UTC), a date (midnight UTC), or Unix time as a number or a
//! numeric string, in seconds, or in milliseconds when its magnitude is above 2·10¹⁰ (the rule
//! pydantic uses: 2·10¹⁰ seconds is the year 2603).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A validated event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub topic: String,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub source: String,
    /// A JSON object, as its text.
    pub payload: Box<RawValue>,
}

/// A stored event, as `GET /events` returns it.
#[derive(Clone, Debug, Serialize)]
pub struct StoredEvent {
    #[serde(flatten)]
    pub event: Event,
    pub received_at: DateTime<Utc>,
}

const MAX_TEXT: usize = 255;

/// Why a body was refused; both are 400s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("{0}")]
    Schema(String),
}

/// An event as it arrives, borrowing from the body where it can. Unknown fields are ignored.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: WireTime<'a>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    events: Vec<WireEvent<'a>>,
}

/// A timestamp as sent: text, or a number of seconds or milliseconds.
enum WireTime<'a> {
    Text(Cow<'a, str>),
    Number(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTime<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = WireTime<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a date-time string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireTime::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireTime::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireTime::Number(v))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// The events of a body: one event, an array of events, or `{"events": [...]}`. An error names
/// the event (by index when there are several) and the field.
pub fn parse_body_bytes(body: &[u8], max_events: usize) -> Result<Vec<Event>, BodyError> {
    let fast = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<WireEvent>>(body).map(|v| (v, false)),
        Some(b'{') => serde_json::from_slice::<WireEvent>(body)
            .map(|e| (vec![e], true))
            .or_else(|one| {
                serde_json::from_slice::<Envelope>(body)
                    .map(|e| (e.events, false))
                    // The error that matters if it is a repeated field; either will do otherwise.
                    .map_err(|wrapped| if is_repeat(&wrapped) { wrapped } else { one })
            }),
        _ => return parse_detailed(body, max_events),
    };
    match fast {
        Ok((items, single)) => {
            check_count(items.len(), max_events).map_err(BodyError::Schema)?;
            items
                .into_iter()
                .enumerate()
                .map(|(i, w)| from_wire(w).map_err(|e| BodyError::Schema(locate(e, i, single))))
                .collect()
        }
        // A field given twice: the detailed reading would keep the last one silently.
        Err(e) if is_repeat(&e) => Err(BodyError::Schema(format!("{e}: give each field once"))),
        // Not that shape: the detailed (slower) reading finds and names the fault.
        Err(_) => parse_detailed(body, max_events),
    }
}

/// serde's "duplicate field `topic`" (a derived struct's rule for a field given twice).
fn is_repeat(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with("duplicate field")
}

/// The detailed (slower) reading, through a `Value`: finds and names the fault.
fn parse_detailed(body: &[u8], max_events: usize) -> Result<Vec<Event>, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError::Syntax(e.to_string()))?;
    parse_body(value, max_events).map_err(BodyError::Schema)
}

fn from_wire(w: WireEvent<'_>) -> Result<Event, String> {
    Ok(Event {
        topic: text("topic", w.topic)?,
        event_id: text("event_id", w.event_id)?,
        timestamp: match w.timestamp {
            WireTime::Text(t) => timestamp(&t)?,
            WireTime::Number(n) => epoch(n)?,
        },
        source: text("source", w.source)?,
        payload: payload(w.payload)?,
    })
}

/// [`parse_body_bytes`] for a body already parsed into a `Value`.
pub fn parse_body(body: Value, max_events: usize) -> Result<Vec<Event>, String> {
    let (items, single) = match body {
        Value::Array(items) => (items, false),
        Value::Object(mut obj) if obj.contains_key("events") && !obj.contains_key("event_id") => {
            match obj.remove("events") {
                Some(Value::Array(items)) => (items, false),
                _ => return Err("`events` must be an array of events".into()),
            }
        }
        obj @ Value::Object(_) => (vec![obj], true),
        other => {
            return Err(format!(
                "expected an event, an array of events or {{\"events\": [...]}}, got {}",
                kind(&other)
            ));
        }
    };
    check_count(items.len(), max_events)?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_event(item).map_err(|e| locate(e, i, single)))
        .collect()
}

fn check_count(n: usize, max_events: usize) -> Result<(), String> {
    if n > max_events {
        return Err(format!("{n} events in one body; at most {max_events} are accepted"));
    }
    Ok(())
}

fn locate(e: String, index: usize, single: bool) -> String {
    if single {
        format!("event: {e}")
    } else {
        format!("events[{index}]: {e}")
    }
}

/// One event; the error names the field.
pub fn parse_event(item: Value) -> Result<Event, String> {
    let Value::Object(mut obj) = item else {
        return Err(format!("must be an object, got {}", kind(&item)));
    };
    let topic = text("topic", string_field(&mut obj, "topic")?)?;
    let event_id = text("event_id", string_field(&mut obj, "event_id")?)?;
    let source = text("source", string_field(&mut obj, "source")?)?;
    let timestamp = match obj.remove("timestamp") {
        Some(Value::String(s)) => self::timestamp(&s)?,
        Some(Value::Number(n)) => epoch(n.as_f64().unwrap_or(f64::NAN))?,
        Some(other) => {
            return Err(format!(
                "`timestamp` must be a date-time string or Unix time, got {}",
                kind(&other)
            ));
        }
        None => return Err("`timestamp` is required".into()),
    };
    let payload = match obj.remove("payload") {
        Some(p @ Value::Object(_)) => {
            let raw = serde_json::value::to_raw_value(&p).map_err(|e| format!("`payload` cannot be stored: {e}"))?;
            storable_json(&raw)?;
            raw
        }
        Some(other) => return Err(format!("`payload` must be an object, got {}", kind(&other))),
        None => return Err("`payload` is required".into()),
    };
    // Other fields are ignored, as seed 003's clients expect.
    Ok(Event {
        topic,
        event_id,
        timestamp,
        source,
        payload,
    })
}

fn string_field<'a>(obj: &mut Map<String, Value>, field: &str) -> Result<Cow<'a, str>, String> {
    match obj.remove(field) {
        Some(Value::String(s)) => Ok(Cow::Owned(s)),
        Some(other) => Err(format!("`{field}` must be a string, got {}", kind(&other))),
        None => Err(format!("`{field}` is required")),
    }
}

/// A required short text field: not blank, at most [`MAX_TEXT`] characters.
fn text(field: &str, s: Cow<'_, str>) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    // Characters, not bytes; a string of at most MAX_TEXT bytes needs no count.
    if s.len() > MAX_TEXT && s.chars().count() > MAX_TEXT {
        return Err(format!("`{field}` is longer than {MAX_TEXT} characters"));
    }
    kafkube_store::storable::text(&s).map_err(|why| format!("`{field}` {why}"))?;
    Ok(s.into_owned())
}

fn timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let t = s.trim();
    // An offset without a colon (`+0700`).
    if let Ok(t) = DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(t.with_timezone(&Utc));
    }
    // No zone: UTC.
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(naive.and_utc());
        }
    }
    if let Some(midnight) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(midnight.and_utc());
    }
    if let Ok(n) = t.parse::<f64>() {
        return epoch(n);
    }
    Err(format!(
        "`timestamp` must be a date-time like 2025-12-19T00:00:00Z (a zone-less time is UTC) or Unix \
         time in seconds or milliseconds, got \"{s}\""
    ))
}

/// Unix time: seconds, or milliseconds when the magnitude is above 2·10¹⁰ (pydantic's rule).
fn epoch(n: f64) -> Result<DateTime<Utc>, String> {
    let seconds = if n.abs() > 2e10 { n / 1000.0 } else { n };
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros.abs() > 9.0e15 {
        return Err(format!("`timestamp` {n} is not a Unix time in range"));
    }
    DateTime::from_timestamp_micros(micros as i64).ok_or_else(|| format!("`timestamp` {n} is not a Unix time in range"))
}

fn payload(raw: &RawValue) -> Result<Box<RawValue>, String> {
    // Valid JSON already; an object starts with `{` (RawValue keeps no surrounding whitespace).
    if raw.get().starts_with('{') {
        storable_json(raw)?;
        Ok(raw.to_owned())
    } else {
        let kind = serde_json::from_str::<Value>(raw.get()).map_or("not an object", |v| kind(&v));
        Err(format!("`payload` must be an object, got {kind}"))
    }
}

/// A payload every backend stores and `GET /events` reads back.
fn storable_json(raw: &RawValue) -> Result<(), String> {
    kafkube_store::storable::json(raw.get()).map_err(|why| format!("`payload` {why}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str) -> Value {
        json!({"topic": "auth", "event_id": id, "timestamp": "2025-12-19T00:00:00Z", "source": "demo", "payload": {"x": 1}})
    }

    #[test]
    fn accepts_the_three_body_shapes() {
        assert_eq!(parse_body(ev("a"), 10).unwrap().len(), 1);
        assert_eq!(parse_body(json!([ev("a"), ev("b")]), 10).unwrap().len(), 2);
        assert_eq!(
            parse_body(json!({"events": [ev("a"), ev("b"), ev("c")]}), 10)
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn errors_name_the_event_and_the_field() {
        let mut bad = ev("b");
        bad["timestamp"] = json!("yesterday");
        let err = parse_body(json!([ev("a"), bad]), 10).unwrap_err();
        assert!(err.starts_with("events[1]: `timestamp`"), "{err}");
        let mut bad = ev("c");
        bad["payload"] = json!([1]);
        assert_eq!(
            parse_body(bad, 10).unwrap_err(),
            "event: `payload` must be an object, got an array"
        );
        let mut no_id = ev("x");
        no_id.as_object_mut().unwrap().remove("event_id");
        assert!(
            parse_body(json!({"events": [no_id]}), 10)
                .unwrap_err()
                .contains("events[0]: `event_id` is required")
        );
        assert!(parse_body(json!("x"), 10).is_err());
        assert!(
            parse_body(json!([ev("a"), ev("b")]), 1)
                .unwrap_err()
                .contains("at most 1")
        );
        let mut yes = ev("d");
        yes["timestamp"] = json!(true);
        assert_eq!(
            parse_body(yes, 10).unwrap_err(),
            "event: `timestamp` must be a date-time string or Unix time, got a boolean"
        );
    }

    /// What seed 003's clients send and its server accepts.
    #[test]
    fn accepts_what_the_seeds_clients_send() {
        let at = |t: Value| {
            let mut e = ev("t");
            e["timestamp"] = t;
            let fast = parse_body_bytes(&bytes(&e), 10).unwrap();
            let detailed = parse_body(e, 10).unwrap();
            assert_eq!(fast[0].timestamp, detailed[0].timestamp);
            fast[0].timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        assert_eq!(at(json!("2025-01-01T10:00:00")), "2025-01-01T10:00:00.000Z");
        assert_eq!(at(json!("2025-01-01T10:00:00.250")), "2025-01-01T10:00:00.250Z");
        assert_eq!(at(json!("2025-01-01 10:00:00")), "2025-01-01T10:00:00.000Z");
        assert_eq!(at(json!("2025-01-01T10:00")), "2025-01-01T10:00:00.000Z");
        assert_eq!(at(json!("2025-01-01")), "2025-01-01T00:00:00.000Z");
        assert_eq!(at(json!("2025-01-01T17:00:00+0700")), "2025-01-01T10:00:00.000Z");
        assert_eq!(at(json!(1_735_725_600)), "2025-01-01T10:00:00.000Z");
        assert_eq!(at(json!(1_735_725_600.5)), "2025-01-01T10:00:00.500Z");
        assert_eq!(at(json!(1_735_725_600_250_i64)), "2025-01-01T10:00:00.250Z");
        assert_eq!(at(json!("1735725600")), "2025-01-01T10:00:00.000Z");

        let mut extra = ev("x");
        extra["color"] = json!("red");
        extra["meta"] = json!({"a": [1]});
        for body in [
            extra.clone(),
            json!([extra.clone()]),
            json!({"events": [extra], "batch": 7}),
        ] {
            let events = parse_body_bytes(&bytes(&body), 10).unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].payload.get(), r#"{"x":1}"#);
            assert_eq!(parse_body(body, 10).unwrap().len(), 1);
        }

        for empty in [json!([]), json!({"events": []})] {
            assert!(parse_body_bytes(&bytes(&empty), 10).unwrap().is_empty());
            assert!(parse_body(empty, 10).unwrap().is_empty());
        }
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn as_values(events: &[Event]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                json!({"topic": e.topic, "event_id": e.event_id, "timestamp": e.timestamp, "source": e.source,
                       "payload": serde_json::from_str::<Value>(e.payload.get()).unwrap()})
            })
            .collect()
    }

    #[test]
    fn the_fast_and_the_detailed_reading_agree() {
        let mut odd = ev("quote\"and\\slash é \u{1F600}");
        odd["payload"] = json!({"nested": {"list": [1, 2.5, null, "x\ny"]}, "b": true});
        odd["timestamp"] = json!("2025-12-19T07:00:00+07:00");
        for body in [
            ev("a"),
            json!([ev("a"), odd.clone()]),
            json!({"events": [odd, ev("c")]}),
        ] {
            let fast = parse_body_bytes(&bytes(&body), 10).unwrap();
            let detailed = parse_body(body, 10).unwrap();
            assert_eq!(as_values(&fast), as_values(&detailed));
        }
        let fast = parse_body_bytes(&bytes(&json!([ev("quote\"x")])), 10).unwrap();
        assert_eq!(fast[0].event_id, "quote\"x");
        assert_eq!(fast[0].timestamp.to_rfc3339(), "2025-12-19T00:00:00+00:00");
    }

    #[test]
    fn the_payload_is_kept_as_sent_without_surrounding_space() {
        let body = br#"  { "topic": "t", "event_id": "1", "timestamp": "2025-12-19T00:00:00Z", "source": "s",
                         "payload":   {"b": 1,  "a": [ 2 ]}   }  "#;
        let events = parse_body_bytes(body, 10).unwrap();
        assert_eq!(events[0].payload.get(), r#"{"b": 1,  "a": [ 2 ]}"#);
    }

    #[test]
    fn byte_bodies_get_the_same_errors() {
        let err = |body: &[u8]| parse_body_bytes(body, 2).unwrap_err();
        assert!(matches!(err(b"{\"topic\": "), BodyError::Syntax(_)));
        assert!(err(b"[1,]").to_string().starts_with("invalid JSON: "));
        let mut list_time = ev("a");
        list_time["timestamp"] = json!([5]);
        assert_eq!(
            err(&bytes(&list_time)),
            BodyError::Schema("event: `timestamp` must be a date-time string or Unix time, got an array".into())
        );
        let mut huge = ev("a");
        huge["timestamp"] = json!(1e300);
        assert!(err(&bytes(&huge)).to_string().contains("not a Unix time in range"));
        let mut bad_payload = ev("b");
        bad_payload["payload"] = json!(null);
        assert_eq!(
            err(&bytes(&json!([ev("a"), bad_payload]))).to_string(),
            "events[1]: `payload` must be an object, got null"
        );
        let mut blank = ev("c");
        blank["source"] = json!("  ");
        assert_eq!(
            err(&bytes(&json!({"events": [blank]}))).to_string(),
            "events[0]: `source` must not be empty"
        );
        assert!(
            err(&bytes(&json!([ev("a"), ev("b"), ev("c")])))
                .to_string()
                .contains("at most 2")
        );
        assert!(err(b"\"x\"").to_string().starts_with("expected an event"));
        assert_eq!(
            err(b"{\"events\": 3}").to_string(),
            "`events` must be an array of events"
        );
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        let mut e = ev("a");
        e["topic"] = json!("é".repeat(255));
        assert!(parse_body_bytes(&bytes(&e), 1).is_ok());
        e["topic"] = json!("é".repeat(256));
        assert_eq!(
            parse_body_bytes(&bytes(&e), 1).unwrap_err().to_string(),
            "event: `topic` is longer than 255 characters"
        );
    }
}
