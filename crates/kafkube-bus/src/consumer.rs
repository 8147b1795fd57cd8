//! The consumer runner: Kafkube's one consumer loop.
//!
//! Apps implement [`Handler`] for a *batch* of records and report what happened; the runner does
//! the rest, the same way for every app:
//!
//! - **at-least-once with effects first**: a record's offset is stored (and later auto-committed)
//!   only after the handler returned `Ok` — i.e. after its database transaction committed — and
//!   after everything the handler asked to publish was acknowledged by the broker;
//! - **retry**: [`HandlerError::Transient`] (database or broker down) is retried with backoff for
//!   as long as it takes, without committing; [`HandlerError::Permanent`] is retried a few times,
//!   then the batch is split and each record retried alone, so one poison record cannot block or
//!   take down its neighbours;
//! - **dead letters**: records the handler rejects, and records that still fail alone, go to
//!   `<topic>.dlq` with the error and their origin in headers, and are committed past;
//! - **shutdown**: finish the batch in hand, commit what was stored, leave the group;
//!   **drain**: keep consuming until every assigned partition is caught up, then stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kafkube_core::{Backoff, Shutdown};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;

use crate::{HeaderMap, KafkaConfig, Outgoing, Producer, Result, headers::Header};

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
    pub(crate) fn from_message(m: &rdkafka::message::BorrowedMessage<'_>, received_at: DateTime<Utc>) -> Self {
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

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Something outside the records failed (database or broker unreachable, a lock timeout).
    /// Retried with backoff until it succeeds or the process shuts down; nothing is committed
    /// meanwhile, so nothing is lost.
    #[error("{0}")]
    Transient(Box<dyn std::error::Error + Send + Sync>),
    /// The records cannot be processed as they are. Retried a few times, then record by record;
    /// a record that still fails goes to the dead-letter topic.
    #[error("{0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn transient(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Transient(e.into())
    }

    pub fn permanent(msg: impl Into<String>) -> Self {
        Self::Permanent(msg.into())
    }
}

/// What a handler did with a batch it processed.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Records of the batch (by index) that are malformed, with the reason: they go to the
    /// dead-letter topic and are committed past.
    pub rejected: Vec<(usize, String)>,
    /// Records to publish (a transform's output, a reply). The batch's offsets are stored only
    /// after the broker acknowledged all of them.
    pub produce: Vec<Outgoing>,
}

impl BatchOutput {
    pub fn reject(&mut self, index: usize, reason: impl Into<String>) {
        self.rejected.push((index, reason.into()));
    }
}

/// An app's logic for one consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Processes `batch` (records of any assigned partitions, in order within each partition).
    /// Must be idempotent: after a crash or rebalance a record may be handled again.
    fn handle(&self, batch: &[Record]) -> impl Future<Output = std::result::Result<BatchOutput, HandlerError>> + Send;
}

/// Which group, which topics, and how to batch.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    /// Largest batch handed to the handler; batches are whatever is ready, up to this size.
    pub max_batch: usize,
    /// Attempts of a permanently failing batch before it is split / dead-lettered.
    pub max_attempts: u32,
    /// Instance name, for logs and metrics (defaults to host and pid).
    pub instance: String,
}

impl ConsumerSettings {
    pub fn new(group_id: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            max_batch: 500,
            max_attempts: 3,
            instance: default_instance_name(),
        }
    }

    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }
}

/// `host-pid`, unique per process on a machine and per pod in Kubernetes.
pub fn default_instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "local".into());
    format!("{host}-{}", std::process::id())
}

/// Logs group membership changes; librdkafka commits stored offsets itself on revoke.
struct RunnerContext {
    group: String,
}

impl ClientContext for RunnerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        if message.contains("offset reset") {
            // The broker no longer has the records this group was about to read (retention ran
            // past it — on the embedded broker after 5 MiB per partition): they are skipped.
            tracing::error!(group = %self.group, detail = %message, "records were skipped: the broker no longer holds them");
            metrics::counter!("kafkube_consumer_offset_resets_total", "group" => self.group.clone()).increment(1);
            return;
        }
        log_librdkafka(level, fac, message);
    }
}

/// librdkafka's log lines, into `tracing` under the `librdkafka` target.
pub(crate) fn log_librdkafka(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

impl ConsumerContext for RunnerContext {
    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = %describe(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = %describe(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(group = %self.group, error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Refused commits (e.g. during a rebalance) are retried by the next commit; the
            // records they cover are redelivered at worst, and handlers are idempotent.
            tracing::debug!(group = %self.group, error = %e, "offset commit not accepted");
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs one [`Handler`] in one consumer group.
pub struct ConsumerRunner<H> {
    consumer: StreamConsumer<RunnerContext>,
    producer: Producer,
    settings: ConsumerSettings,
    handler: Arc<H>,
}

/// What a run did, for tests and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub processed: u64,
    pub dead_lettered: u64,
    pub batches: u64,
}

/// How a batch ended.
enum Resolution {
    Done {
        produce: Vec<Outgoing>,
        dead: Vec<(usize, String)>,
    },
    Interrupted,
}

impl<H: Handler> ConsumerRunner<H> {
    /// Creates the consumer and subscribes. The group is joined on the first poll.
    pub fn new(config: &KafkaConfig, producer: Producer, settings: ConsumerSettings, handler: H) -> Result<Self> {
        let mut cc = config.consumer_config(&settings.group_id);
        cc.set("client.id", format!("kafkube-{}", settings.instance));
        let consumer: StreamConsumer<RunnerContext> = cc.create_with_context(RunnerContext {
            group: settings.group_id.clone(),
        })?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Self {
            consumer,
            producer,
            settings,
            handler: Arc::new(handler),
        })
    }

    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// Consumes until `shutdown` trips; then finishes the batch in hand, commits, leaves.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunStats> {
        self.run_inner(shutdown, None).await
    }

    /// Like [`run`](Self::run), and when `drain` trips keeps consuming until every assigned
    /// partition is caught up (or `shutdown` trips), then stops the same way.
    pub async fn run_until_drained(self, shutdown: Shutdown, drain: Shutdown) -> Result<RunStats> {
        self.run_inner(shutdown, Some(drain)).await
    }

    async fn run_inner(self, shutdown: Shutdown, drain: Option<Shutdown>) -> Result<RunStats> {
        let group = self.settings.group_id.clone();
        tracing::info!(group = %group, topics = ?self.settings.topics, instance = %self.settings.instance, "consumer started");
        let mut stats = RunStats::default();
        let mut stored: BTreeMap<(String, i32), i64> = BTreeMap::new();
        // Consumer errors report librdkafka's connection trouble; it reconnects by itself. A
        // short pause keeps a run of them from spinning, and stays short so that the errors
        // queued during an outage do not hold up the records queued behind them.
        let mut errors = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut stream = self
            .consumer
            .stream()
            .map(|r| r.map(|m| Record::from_message(&m, Utc::now())))
            .ready_chunks(self.settings.max_batch);
        let drain_signal = drain.clone().unwrap_or_default();
        let mut draining = false;
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = drain_signal.cancelled(), if drain.is_some() && !draining => {
                    draining = true;
                    tracing::info!(group = %group, "draining");
                    continue;
                }
                next = tokio::time::timeout(Duration::from_millis(250), stream.next()) => next,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(_idle) => {
                    if draining && self.caught_up() {
                        tracing::info!(group = %group, "drained: all assigned partitions caught up");
                        break;
                    }
                    continue;
                }
            };
            let mut batch = Vec::with_capacity(chunk.len());
            for item in chunk {
                match item {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        tracing::warn!(group = %group, error = %e, "consumer error");
                        errors.next_delay();
                    }
                }
            }
            if batch.is_empty() {
                // Only errors (e.g. broker down): pause briefly instead of spinning.
                if !errors.wait(&shutdown).await {
                    break;
                }
                continue;
            }
            errors.reset();
            let started = Instant::now();
            let Resolution::Done { produce, dead } = self.resolve(&batch, &shutdown).await else {
                break;
            };
            if !self.publish(&batch, produce, &dead, &shutdown).await {
                break;
            }
            for r in &batch {
                let e = stored.entry((r.topic.clone(), r.partition)).or_insert(r.offset);
                *e = (*e).max(r.offset);
                if let Err(err) = self.consumer.store_offset(&r.topic, r.partition, r.offset) {
                    // The partition was revoked meanwhile; its new owner re-reads from the last
                    // commit, and the handler's idempotence absorbs the repeat.
                    tracing::debug!(group = %group, error = %err, "offset not stored");
                }
            }
            let n = batch.len() as u64;
            let d = dead.len() as u64;
            stats.batches += 1;
            stats.processed += n - d;
            stats.dead_lettered += d;
            metrics::counter!("kafkube_consumer_records_total", "group" => group.clone(), "outcome" => "processed")
                .increment(n - d);
            if d > 0 {
                metrics::counter!("kafkube_consumer_records_total", "group" => group.clone(), "outcome" => "dead_lettered").increment(d);
            }
            metrics::histogram!("kafkube_consumer_batch_seconds", "group" => group.clone())
                .record(started.elapsed().as_secs_f64());
        }
        drop(stream);
        self.commit_final(&stored);
        tracing::info!(group = %group, processed = stats.processed, dead_lettered = stats.dead_lettered, "consumer stopped");
        Ok(stats)
    }

    /// Runs the handler on `batch` with the retry policy; returns what to publish and which
    /// records are dead, or `Interrupted` when shutdown came first.
    async fn resolve(&self, batch: &[Record], shutdown: &Shutdown) -> Resolution {
        match self.attempt(batch, shutdown).await {
            Attempt::Ok(out) => Resolution::Done {
                produce: out.produce,
                dead: out.rejected,
            },
            Attempt::Interrupted => Resolution::Interrupted,
            Attempt::Failed(reason) if batch.len() == 1 => Resolution::Done {
                produce: Vec::new(),
                dead: vec![(0, reason)],
            },
            Attempt::Failed(_) => {
                // Isolate the poison: each record alone, so the good ones still go through.
                let mut produce = Vec::new();
                let mut dead = Vec::new();
                for (i, r) in batch.iter().enumerate() {
                    match self.attempt(std::slice::from_ref(r), shutdown).await {
                        Attempt::Ok(out) => {
                            produce.extend(out.produce);
                            dead.extend(out.rejected.into_iter().map(|(_, why)| (i, why)));
                        }
                        Attempt::Failed(why) => dead.push((i, why)),
                        Attempt::Interrupted => return Resolution::Interrupted,
                    }
                }
                Resolution::Done { produce, dead }
            }
        }
    }

    async fn attempt(&self, batch: &[Record], shutdown: &Shutdown) -> Attempt {
        let mut backoff = Backoff::outage();
        let mut permanent = 0;
        loop {
            match self.handler.handle(batch).await {
                Ok(mut out) => {
                    out.rejected.retain(|(i, _)| *i < batch.len());
                    return Attempt::Ok(out);
                }
                Err(HandlerError::Transient(e)) => {
                    tracing::warn!(group = %self.settings.group_id, error = %e, retry = backoff.attempts() + 1, "batch failed (transient); retrying");
                    metrics::counter!("kafkube_consumer_retries_total", "group" => self.settings.group_id.clone(), "kind" => "transient").increment(1);
                }
                Err(HandlerError::Permanent(why)) => {
                    permanent += 1;
                    metrics::counter!("kafkube_consumer_retries_total", "group" => self.settings.group_id.clone(), "kind" => "permanent").increment(1);
                    if permanent >= self.settings.max_attempts {
                        tracing::warn!(group = %self.settings.group_id, error = %why, records = batch.len(), "batch failed permanently");
                        return Attempt::Failed(why);
                    }
                }
            }
            if !backoff.wait(shutdown).await {
                return Attempt::Interrupted;
            }
        }
    }

    /// Publishes the handler's output and the dead letters; retried until acknowledged.
    async fn publish(
        &self,
        batch: &[Record],
        mut produce: Vec<Outgoing>,
        dead: &[(usize, String)],
        shutdown: &Shutdown,
    ) -> bool {
        produce.extend(dead.iter().map(|(i, why)| dead_letter(&batch[*i], why)));
        if produce.is_empty() {
            return true;
        }
        for (i, why) in dead {
            let r = &batch[*i];
            tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %why, "dead-lettering record");
        }
        let mut backoff = Backoff::outage();
        loop {
            let results = self.producer.send_all(&produce).await;
            let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
            let Some(first) = failed.first() else { return true };
            tracing::warn!(group = %self.settings.group_id, error = %first, failed = failed.len(), "publishing batch output failed; retrying");
            if !backoff.wait(shutdown).await {
                return false;
            }
        }
    }

    /// True when every assigned partition has been consumed up to its high watermark.
    fn caught_up(&self) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        positions.elements().iter().all(|e| {
            let Ok((low, high)) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
            else {
                return false;
            };
            match e.offset() {
                Offset::Offset(pos) => pos >= high,
                // Nothing consumed from this partition yet: caught up only if it is empty.
                _ => low >= high,
            }
        })
    }

    /// Commits what was stored, for the partitions still assigned, before leaving the group.
    fn commit_final(&self, stored: &BTreeMap<(String, i32), i64>) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in assignment.elements() {
            if let Some(off) = stored.get(&(e.topic().to_owned(), e.partition())) {
                let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(off + 1));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(group = %self.settings.group_id, error = %e, "final offset commit failed; the uncommitted records will be redelivered");
        }
    }
}

enum Attempt {
    Ok(BatchOutput),
    Failed(String),
    Interrupted,
}

fn dead_letter(r: &Record, why: &str) -> Outgoing {
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
