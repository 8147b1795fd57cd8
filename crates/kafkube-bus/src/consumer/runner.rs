//! [`ConsumerRunner`]: the loop, the retry policy, offset storage, drain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kafkube_core::{Backoff, Shutdown};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::RunnerContext;
use super::layers::{DeadLetter, Retry, Traced};
use crate::{ConsumerSettings, Handler, KafkaConfig, Outgoing, Producer, Record, Result};

/// Runs one [`Handler`] in one consumer group.
pub struct ConsumerRunner<H> {
    consumer: Arc<StreamConsumer<RunnerContext>>,
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
    /// A drain cut short (a second Ctrl-C): records of the assigned partitions not handled.
    pub left: u64,
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
            consumer: Arc::new(consumer),
            producer,
            settings,
            handler: Arc::new(handler),
        })
    }

    pub fn group(&self) -> &str {
        &self.settings.group_id
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
        // The app's handler inside the layers every consumer shares (see `layers`).
        let handler = DeadLetter::new(Retry::new(
            Traced::new(self.handler.clone(), group.as_str()),
            self.settings.max_attempts,
            shutdown.clone(),
            group.as_str(),
        ));
        let drain_signal = drain.clone().unwrap_or_default();
        let mut draining = false;
        // Offsets and lag for `/metrics`, also while the handler waits (a database outage).
        // While draining, it also says what the drain waits for.
        let lag = super::lag::LagReporter::spawn(self.consumer.clone(), group.clone(), drain.clone());
        // Both outcomes exist from the start, at 0: Prometheus' increase() sees the first dead
        // letter as an increase only when the series was there before it.
        for outcome in ["processed", "dead_lettered"] {
            metrics::counter!("kafkube_consumer_records_total", "group" => group.clone(), "outcome" => outcome)
                .increment(0);
        }
        let mut drained = false;
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
                        drained = true;
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
                        // A broker that cannot be reached is reported once for the process.
                        if e.rdkafka_error_code().is_some_and(crate::link::is_connection_error) {
                            tracing::debug!(group = %group, error = %e, "consumer error");
                        } else {
                            tracing::warn!(group = %group, error = %e, "consumer error");
                        }
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
            let (produce, dead) = match handler.handle(&batch).await {
                Ok(out) => (out.produce, out.rejected),
                // Stopped (or, impossibly past the layers, failed): nothing stored, redelivered.
                Err(_) => break,
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
        lag.stop().await;
        self.commit_final(&stored);
        // A drain cut short (even before this loop saw it begin): what is left, counted.
        if drain.as_ref().is_some_and(Shutdown::is_triggered) && !drained {
            stats.left = super::lag::unhandled(&self.consumer);
        }
        // Leaves the group off the runtime's threads, waiting a bounded time (see `close`).
        super::close::close(self.consumer, &group).await;
        tracing::info!(group = %group, processed = stats.processed, dead_lettered = stats.dead_lettered, "consumer stopped");
        Ok(stats)
    }

    /// Publishes the handler's output and the dead letters; retried until acknowledged.
    async fn publish(
        &self,
        batch: &[Record],
        mut produce: Vec<Outgoing>,
        dead: &[(usize, String)],
        shutdown: &Shutdown,
    ) -> bool {
        produce.extend(
            dead.iter()
                .map(|(i, why)| super::dead_letter::dead_letter(&batch[*i], why)),
        );
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
    ///
    /// A partition this member has not consumed from yet (a rebalance during the drain just moved
    /// it here from a member that stopped) has no position; it is caught up when the group's
    /// committed offset is at its end already, or when it is empty.
    fn caught_up(&self) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        let mut unconsumed = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for e in positions.elements() {
            let Ok((low, high)) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
            else {
                return false;
            };
            match e.offset() {
                Offset::Offset(pos) if pos >= high => {}
                Offset::Offset(_) => return false,
                _ if low >= high => {}
                _ => {
                    unconsumed.add_partition(e.topic(), e.partition());
                    ends.insert((e.topic().to_owned(), e.partition()), high);
                }
            }
        }
        if unconsumed.count() == 0 {
            return true;
        }
        let Ok(committed) = self.consumer.committed_offsets(unconsumed, Duration::from_secs(2)) else {
            return false;
        };
        committed.elements().iter().all(|e| {
            let end = ends
                .get(&(e.topic().to_owned(), e.partition()))
                .copied()
                .unwrap_or(i64::MAX);
            matches!(e.offset(), Offset::Offset(c) if c >= end)
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
