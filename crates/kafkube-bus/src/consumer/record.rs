//! [`Record`]: a consumed record as handlers see it.

use chrono::{DateTime, Utc};
use rdkafka::message::Message;
use serde::de::DeserializeOwned;

use crate::HeaderMap;

/// A consumed record, owned, with the moment this consumer received it.
#[derive(Clone, Debug)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HeaderMap,
    /// The record's Kafka timestamp (create or log-append time), epoch ms.
    pub timestamp_ms: Option<i64>,
    /// When this consumer received the record from the broker.
    pub received_at: DateTime<Utc>,
}

impl Record {
    /// An owned copy of a message read by any rdkafka consumer, stamped with when it arrived.
    pub fn from_message(m: &rdkafka::message::BorrowedMessage<'_>, received_at: DateTime<Utc>) -> Self {
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: HeaderMap::from_kafka(m.headers()),
            timestamp_ms: m.timestamp().to_millis(),
            received_at,
        }
    }

    pub fn payload(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload as JSON, or an error message fit for the dead-letter header.
    pub fn json<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        if self.payload.is_none() {
            return Err("record has no payload".into());
        }
        serde_json::from_slice(self.payload()).map_err(|e| format!("invalid JSON payload: {e}"))
    }
}
