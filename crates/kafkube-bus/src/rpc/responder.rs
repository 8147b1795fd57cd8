//! The responder's side: reply records addressed to the requester, and expiry.

use chrono::Utc;

use crate::{Header, Outgoing, Record};

/// The reply to `request`, addressed to the requester that waits for it (its reply topic and
/// partition, with the correlation id and trace context), or why it cannot be addressed.
pub fn reply(request: &Record, payload: impl Into<Vec<u8>>) -> std::result::Result<Outgoing, String> {
    let topic = request
        .headers
        .get_str(Header::REPLY_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or("request has no reply address (header kafkube-reply-topic)")?;
    let partition = match request.headers.get_str(Header::REPLY_PARTITION) {
        Some(p) => Some(
            p.parse::<i32>()
                .map_err(|_| format!("invalid reply partition `{p}` in header kafkube-reply-partition"))?,
        ),
        None => None,
    };
    let id = request
        .headers
        .get_str(Header::CORRELATION_ID)
        .ok_or("request has no correlation id (header correlation-id)")?;
    let mut out = Outgoing::new(topic, request.key.clone(), payload).header(Header::CORRELATION_ID, id);
    if let Some(tp) = request.headers.get(Header::TRACEPARENT) {
        out = out.header(Header::TRACEPARENT, tp);
    }
    out.partition = partition;
    Ok(out)
}

/// A reply that reports `error` instead of a result; the requester gets [`RpcError::Remote`].
pub fn error_reply(request: &Record, error: &str) -> std::result::Result<Outgoing, String> {
    Ok(reply(request, Vec::new())?.header(Header::REPLY_ERROR, error))
}

/// True when the requester's deadline has passed: it no longer waits for a reply.
pub fn expired(request: &Record) -> bool {
    request
        .headers
        .get_str(Header::DEADLINE_MS)
        .and_then(|d| d.parse::<i64>().ok())
        .is_some_and(|d| Utc::now().timestamp_millis() > d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeaderMap;

    fn request(headers: HeaderMap) -> Record {
        Record {
            topic: "req".into(),
            partition: 0,
            offset: 7,
            key: Some(b"k".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers,
            timestamp_ms: None,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn reply_goes_to_the_requesters_partition() {
        let r = request(
            HeaderMap::new()
                .with(Header::CORRELATION_ID, "c-1")
                .with(Header::REPLY_TOPIC, "replies")
                .with(Header::REPLY_PARTITION, "3")
                .with(Header::TRACEPARENT, "00-abc-def-01"),
        );
        let out = reply(&r, "ok").expect("addressable");
        assert_eq!((out.topic.as_str(), out.partition), ("replies", Some(3)));
        assert_eq!(out.headers.get_str(Header::CORRELATION_ID), Some("c-1"));
        assert_eq!(out.headers.get_str(Header::TRACEPARENT), Some("00-abc-def-01"));
        assert_eq!(out.payload, b"ok");
        let err = error_reply(&r, "bad input").expect("addressable");
        assert_eq!(err.headers.get_str(Header::REPLY_ERROR), Some("bad input"));
    }

    #[test]
    fn unaddressable_requests_are_refused_with_a_reason() {
        let no_topic = request(HeaderMap::new().with(Header::CORRELATION_ID, "c"));
        assert!(reply(&no_topic, "x").unwrap_err().contains("reply address"));
        let no_id = request(HeaderMap::new().with(Header::REPLY_TOPIC, "replies"));
        assert!(reply(&no_id, "x").unwrap_err().contains("correlation id"));
        let bad_partition = request(
            HeaderMap::new()
                .with(Header::CORRELATION_ID, "c")
                .with(Header::REPLY_TOPIC, "replies")
                .with(Header::REPLY_PARTITION, "x"),
        );
        assert!(
            reply(&bad_partition, "x")
                .unwrap_err()
                .contains("invalid reply partition")
        );
    }

    #[test]
    fn deadlines() {
        let past = Utc::now().timestamp_millis() - 1;
        let future = Utc::now().timestamp_millis() + 60_000;
        assert!(expired(&request(
            HeaderMap::new().with(Header::DEADLINE_MS, past.to_string())
        )));
        assert!(!expired(&request(
            HeaderMap::new().with(Header::DEADLINE_MS, future.to_string())
        )));
        assert!(!expired(&request(HeaderMap::new())));
    }
}
