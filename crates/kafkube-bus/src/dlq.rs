//! Dead letters you can act on: read a dead-letter topic (`<topic>.dlq`, written by the consumer
//! runner with the error and the record's origin in headers) and replay its records to the
//! topics they came from once the cause is fixed.
//!
//! A replay is idempotent: each replayed letter is remembered in a ledger topic
//! (`<topic>.dlq.replayed`, keyed by the letter's partition and offset), and a letter found
//! there is not sent again unless asked (`again`). A record that fails again after its replay
//! comes back to the dead-letter topic as a new letter, with a position of its own. The ledger is
//! written after the broker acknowledged the replayed records, so a crash between the two can at
//! worst replay a letter twice; the consumers' handlers are idempotent for that reason.
//!
//! Nothing here needs the Admin API: it works on the embedded broker as on Kafka.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::{BusError, Header, HeaderMap, KafkaConfig, Outgoing, Producer, Result, TopicSpec, ensure_topics};

/// How long reading a dead-letter topic (or its ledger) to its end may take, by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Header of a replayed record: the dead letter it replays (`<dlq topic>/<partition>:<offset>`).
pub const REPLAY_OF: &str = "kafkube-replay-of";

/// The dead-letter topic of `name`: `name` itself when it ends in `.dlq`, else `name.dlq`.
pub fn dlq_topic(name: &str) -> String {
    if name.ends_with(".dlq") {
        name.to_owned()
    } else {
        format!("{name}.dlq")
    }
}

/// The ledger of replayed letters of a dead-letter topic.
pub fn ledger_topic(dlq: &str) -> String {
    format!("{dlq}.replayed")
}

/// Where a letter is in its dead-letter topic: `partition:offset` (the dead-letter topics Kafkube
/// creates have one partition, so `offset` alone means partition 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a position: write PARTITION:OFFSET (as `kafkube dlq list` shows) or OFFSET");
        let (p, o) = s.trim().split_once(':').unwrap_or(("0", s.trim()));
        let partition = p.parse::<i32>().map_err(|_| bad())?;
        let offset = o.parse::<i64>().map_err(|_| bad())?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(Self { partition, offset })
    }
}

/// A record of a dead-letter topic.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub position: Position,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HeaderMap,
    /// When it was dead-lettered (epoch ms), when the broker says.
    pub timestamp_ms: Option<i64>,
}

/// Where a dead letter came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.topic)?;
        match (self.partition, self.offset) {
            (Some(p), Some(o)) => write!(f, " {p}:{o}"),
            _ => Ok(()),
        }
    }
}

impl DeadLetter {
    /// Why it was dead-lettered (empty when the header is missing).
    pub fn error(&self) -> &str {
        self.headers.get_str(Header::ERROR).unwrap_or_default()
    }

    /// The topic, partition and offset it was read from. Without Kafkube's headers (a record put
    /// there by another tool) the topic is the dead-letter topic's name without `.dlq`.
    pub fn origin(&self, dlq: &str) -> Origin {
        let number = |h| self.headers.get_str(h).and_then(|v| v.parse().ok());
        Origin {
            topic: self
                .headers
                .get_str(Header::SOURCE_TOPIC)
                .map_or_else(|| dlq.strip_suffix(".dlq").unwrap_or(dlq).to_owned(), str::to_owned),
            partition: number(Header::SOURCE_PARTITION).map(|p: i64| p as i32),
            offset: number(Header::SOURCE_OFFSET),
        }
    }

    /// The record to send to its origin: key and payload as they were, its own headers without
    /// the dead-letter ones, and [`REPLAY_OF`].
    pub fn replay(&self, dlq: &str) -> Outgoing {
        let dead_letter_headers = [
            Header::ERROR,
            Header::SOURCE_TOPIC,
            Header::SOURCE_PARTITION,
            Header::SOURCE_OFFSET,
            REPLAY_OF,
        ];
        let mut headers = HeaderMap(
            self.headers
                .iter()
                .filter(|(k, _)| !dead_letter_headers.contains(k))
                .map(|(k, v)| (k.to_owned(), v.to_vec()))
                .collect(),
        );
        headers.insert(REPLAY_OF, format!("{dlq}/{}", self.position));
        Outgoing {
            topic: self.origin(dlq).topic,
            key: self.key.clone(),
            payload: self.payload.clone(),
            headers,
            partition: None,
        }
    }
}

/// Every record of `topic` from its first to its last offset at the time of the call, in
/// partition and offset order. An error names a topic the cluster does not have.
pub async fn read(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<DeadLetter>> {
    let config = config.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(&config, &topic, timeout))
        .await
        .map_err(|e| BusError::Config(format!("reader task failed: {e}")))?
}

fn read_blocking(config: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<DeadLetter>> {
    let consumer: BaseConsumer = config
        .consumer_config("kafkube-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| BusError::Unreachable(format!(" at {}: {e}", config.brokers)))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(BusError::Config(format!("the cluster has no topic `{topic}`")));
    }
    // What to read: each partition from its low watermark up to its end now.
    let mut assignment = TopicPartitionList::new();
    let mut end = HashMap::new();
    for p in partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) = consumer.fetch_watermarks(topic, p, left)?;
        if high > low {
            assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
            end.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if end.is_empty() {
        return Ok(out);
    }
    consumer.assign(&assignment)?;
    while !end.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let missing: Vec<String> = end
                .iter()
                .map(|(p, high)| format!("partition {p} up to {high}"))
                .collect();
            return Err(BusError::Unreachable(format!(
                " at {}: `{topic}` not read to its end within {timeout:?} ({})",
                config.brokers,
                missing.join(", ")
            )));
        }
        let Some(m) = consumer.poll(left.min(Duration::from_millis(200))) else {
            continue;
        };
        let m = m?;
        let Some(&high) = end.get(&m.partition()) else { continue };
        if m.offset() < high {
            out.push(DeadLetter {
                position: Position {
                    partition: m.partition(),
                    offset: m.offset(),
                },
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers: HeaderMap::from_kafka(m.headers()),
                timestamp_ms: m.timestamp().to_millis(),
            });
        }
        if m.offset() + 1 >= high {
            end.remove(&m.partition());
        }
    }
    out.sort_by_key(|l| l.position);
    Ok(out)
}

/// The letters of `dlq` already replayed (none when its ledger does not exist yet).
pub async fn replayed(config: &KafkaConfig, dlq: &str, timeout: Duration) -> Result<BTreeSet<Position>> {
    match read(config, &ledger_topic(dlq), timeout).await {
        Ok(entries) => Ok(entries
            .iter()
            .filter_map(|e| std::str::from_utf8(e.key.as_deref()?).ok()?.parse().ok())
            .collect()),
        Err(BusError::Config(_)) => Ok(BTreeSet::new()),
        Err(e) => Err(e),
    }
}

/// Which letters to replay.
#[derive(Clone, Debug)]
pub enum Selection {
    All,
    Only(Vec<Position>),
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Sent to their origin now, with the topic each went to.
    pub replayed: Vec<(Position, String)>,
    /// Replayed before: not sent again.
    pub already: Vec<Position>,
    /// Asked for, but not in the dead-letter topic.
    pub missing: Vec<Position>,
}

/// Replays the selected letters of `dlq` to their origin topics, each once: letters in the ledger
/// are skipped unless `again`. The ledger is written after the broker acknowledged every replayed
/// record.
pub async fn replay(
    config: &KafkaConfig,
    producer: &Producer,
    dlq: &str,
    selection: &Selection,
    again: bool,
    timeout: Duration,
) -> Result<ReplayReport> {
    let letters = read(config, dlq, timeout).await?;
    let done = replayed(config, dlq, timeout).await?;
    let mut report = ReplayReport::default();
    let chosen: Vec<&DeadLetter> = match selection {
        Selection::All => letters.iter().collect(),
        Selection::Only(wanted) => {
            let wanted: BTreeSet<Position> = wanted.iter().copied().collect();
            report.missing = wanted
                .iter()
                .filter(|w| !letters.iter().any(|l| l.position == **w))
                .copied()
                .collect();
            letters.iter().filter(|l| wanted.contains(&l.position)).collect()
        }
    };
    let mut sends = Vec::new();
    for l in chosen {
        if done.contains(&l.position) && !again {
            report.already.push(l.position);
        } else {
            sends.push((l.position, l.replay(dlq)));
        }
    }
    if sends.is_empty() {
        return Ok(report);
    }
    let ledger = ledger_topic(dlq);
    ensure_topics(config, &[TopicSpec::new(&ledger, 1)]).await?;
    let records: Vec<Outgoing> = sends.iter().map(|(_, o)| o.clone()).collect();
    for r in producer.send_all(&records).await {
        r?;
    }
    let entries: Vec<Outgoing> = sends
        .iter()
        .map(|(p, o)| {
            Outgoing::new(
                &ledger,
                Some(p.to_string()),
                serde_json::json!({ "replayed_to": o.topic, "at_ms": kafkube_core::time::now_epoch_ms() }).to_string(),
            )
        })
        .collect();
    for r in producer.send_all(&entries).await {
        r?;
    }
    report.replayed = sends.into_iter().map(|(p, o)| (p, o.topic)).collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_they_are_shown() {
        let p: Position = "2:41".parse().unwrap();
        assert_eq!(
            p,
            Position {
                partition: 2,
                offset: 41
            }
        );
        assert_eq!(p.to_string(), "2:41");
        assert_eq!(
            "7".parse::<Position>().unwrap(),
            Position {
                partition: 0,
                offset: 7
            }
        );
        for bad in ["", "x", "1:", ":3", "-1:2", "1:-2", "1:2:3"] {
            let err = bad.parse::<Position>().unwrap_err();
            assert!(err.contains("PARTITION:OFFSET"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_replay_goes_to_its_origin_without_the_dead_letter_headers() {
        let letter = DeadLetter {
            position: Position {
                partition: 0,
                offset: 3,
            },
            key: Some(b"k".to_vec()),
            payload: b"{}".to_vec(),
            headers: HeaderMap::new()
                .with(Header::CORRELATION_ID, "c1")
                .with(Header::ERROR, "bad record")
                .with(Header::SOURCE_TOPIC, "orders")
                .with(Header::SOURCE_PARTITION, "2")
                .with(Header::SOURCE_OFFSET, "17"),
            timestamp_ms: None,
        };
        assert_eq!(letter.error(), "bad record");
        assert_eq!(letter.origin("orders.dlq").to_string(), "orders 2:17");
        let out = letter.replay("orders.dlq");
        assert_eq!(out.topic, "orders");
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out.headers.get_str(Header::CORRELATION_ID), Some("c1"));
        assert_eq!(out.headers.get_str(Header::ERROR), None);
        assert_eq!(out.headers.get_str(Header::SOURCE_TOPIC), None);
        assert_eq!(out.headers.get_str(REPLAY_OF), Some("orders.dlq/0:3"));

        // Without Kafkube's headers the origin is the topic's name without `.dlq`.
        let bare = DeadLetter {
            headers: HeaderMap::new(),
            ..letter
        };
        assert_eq!(bare.origin("logs.dlq").to_string(), "logs");
        assert_eq!(dlq_topic("logs"), "logs.dlq");
        assert_eq!(dlq_topic("logs.dlq"), "logs.dlq");
    }
}
