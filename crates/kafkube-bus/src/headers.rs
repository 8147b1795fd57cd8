//! Message headers that are part of Kafkube's contract.
//!
//! Every event carries its type, a correlation id and a W3C `traceparent`; dead-lettered records
//! carry the error and where they came from.

use rdkafka::message::{BorrowedHeaders, Headers, OwnedHeaders};

pub struct Header;

impl Header {
    pub const EVENT_TYPE: &'static str = "event-type";
    pub const CORRELATION_ID: &'static str = "correlation-id";
    pub const TRACEPARENT: &'static str = "traceparent";
    pub const ERROR: &'static str = "kafkube-error";
    pub const SOURCE_TOPIC: &'static str = "kafkube-source-topic";
    pub const SOURCE_PARTITION: &'static str = "kafkube-source-partition";
    pub const SOURCE_OFFSET: &'static str = "kafkube-source-offset";
    /// Request/reply: where the requester listens (topic and partition), until when it waits
    /// (epoch ms), and a responder's error instead of a result.
    pub const REPLY_TOPIC: &'static str = "kafkube-reply-topic";
    pub const REPLY_PARTITION: &'static str = "kafkube-reply-partition";
    pub const DEADLINE_MS: &'static str = "kafkube-deadline-ms";
    pub const REPLY_ERROR: &'static str = "kafkube-reply-error";
}

/// An ordered list of headers (Kafka allows repeated keys; lookups return the last one).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeaderMap(pub Vec<(String, Vec<u8>)>);

impl HeaderMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.insert(key, value);
        self
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub(crate) fn from_kafka(h: Option<&BorrowedHeaders>) -> Self {
        let Some(h) = h else { return Self::default() };
        Self(
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect(),
        )
    }

    pub(crate) fn to_kafka(&self) -> OwnedHeaders {
        self.0
            .iter()
            .fold(OwnedHeaders::new_with_capacity(self.0.len()), |acc, (k, v)| {
                acc.insert(rdkafka::message::Header { key: k, value: Some(v) })
            })
    }
}

/// A fresh W3C trace context (`00-<trace id>-<span id>-01`) for an event that starts a trace.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_has_w3c_shape() {
        let t = new_traceparent();
        let parts: Vec<_> = t.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }

    #[test]
    fn last_value_wins() {
        let h = HeaderMap::new().with("a", "1").with("a", "2");
        assert_eq!(h.get_str("a"), Some("2"));
        assert_eq!(h.get("b"), None);
    }
}
