//! An aggregated event and the validation of `POST /publish` bodies and Kafka records.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// A validated event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub topic: String,
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub source: String,
    pub payload: Map<String, Value>,
}

/// A stored event, as `GET /events` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    #[serde(flatten)]
    pub event: Event,
    pub received_at: DateTime<Utc>,
}

const MAX_TEXT: usize = 255;

/// The events of a body: one event, an array of events, or `{"events": [...]}`. An error names
/// the event (by index when there are several) and the field.
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
    if items.is_empty() {
        return Err("no events in the body".into());
    }
    if items.len() > max_events {
        return Err(format!(
            "{} events in one body; at most {max_events} are accepted",
            items.len()
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            parse_event(item).map_err(|e| {
                if single {
                    format!("event: {e}")
                } else {
                    format!("events[{i}]: {e}")
                }
            })
        })
        .collect()
}

/// One event; the error names the field.
pub fn parse_event(item: Value) -> Result<Event, String> {
    let Value::Object(mut obj) = item else {
        return Err(format!("must be an object, got {}", kind(&item)));
    };
    let topic = text(&mut obj, "topic")?;
    let event_id = text(&mut obj, "event_id")?;
    let source = text(&mut obj, "source")?;
    let timestamp = match obj.remove("timestamp") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map_err(|_| format!("`timestamp` must be an RFC 3339 date-time like 2025-12-19T00:00:00Z, got \"{s}\""))?
            .with_timezone(&Utc),
        Some(other) => return Err(format!("`timestamp` must be an RFC 3339 string, got {}", kind(&other))),
        None => return Err("`timestamp` is required".into()),
    };
    let payload = match obj.remove("payload") {
        Some(Value::Object(p)) => p,
        Some(other) => return Err(format!("`payload` must be an object, got {}", kind(&other))),
        None => return Err("`payload` is required".into()),
    };
    if let Some(extra) = obj.keys().next() {
        return Err(format!("unknown field `{extra}`"));
    }
    Ok(Event {
        topic,
        event_id,
        timestamp,
        source,
        payload,
    })
}

fn text(obj: &mut Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.remove(field) {
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("`{field}` must not be empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT => {
            Err(format!("`{field}` is longer than {MAX_TEXT} characters"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{field}` must be a string, got {}", kind(&other))),
        None => Err(format!("`{field}` is required")),
    }
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
        assert!(parse_body(json!([]), 10).is_err());
        assert!(parse_body(json!("x"), 10).is_err());
        assert!(
            parse_body(json!([ev("a"), ev("b")]), 1)
                .unwrap_err()
                .contains("at most 1")
        );
        let mut extra = ev("d");
        extra["color"] = json!("red");
        assert!(parse_body(extra, 10).unwrap_err().contains("unknown field `color`"));
    }
}
