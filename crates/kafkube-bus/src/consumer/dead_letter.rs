//! Dead letters: a record that cannot be processed goes to `<topic>.dlq` with its headers, the
//! error and its origin, so it can be inspected and replayed.

use crate::{Outgoing, Record, headers::Header};

pub(crate) fn dead_letter(r: &Record, why: &str) -> Outgoing {
    let mut headers = r.headers.clone();
    headers.insert(Header::ERROR, why);
    headers.insert(Header::SOURCE_TOPIC, r.topic.as_str());
    headers.insert(Header::SOURCE_PARTITION, r.partition.to_string());
    headers.insert(Header::SOURCE_OFFSET, r.offset.to_string());
    Outgoing {
        topic: format!("{}.dlq", r.topic),
        key: r.key.clone(),
        payload: r.payload.clone().unwrap_or_default(),
        headers,
        partition: None,
    }
}
