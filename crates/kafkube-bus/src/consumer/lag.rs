//! Each assigned partition's committed offset, end offset and lag, as gauges for `/metrics`:
//! `kafkube_consumer_committed_offset`, `kafkube_consumer_end_offset` and `kafkube_consumer_lag`
//! (labels `group`, `topic`, `partition`) — what `kafka-consumer-groups --describe` shows as
//! CURRENT-OFFSET, LOG-END-OFFSET and LAG.
//!
//! They are read from the brokers every few seconds on a task of their own, not from the
//! consumer's poll loop (librdkafka's statistics arrive only while the app polls), so they keep
//! moving while the handler waits for a database that is down: the moment lag matters most.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};

use kafkube_core::Shutdown;

use super::context::RunnerContext;

/// How often the offsets are read.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// Reads the offsets until stopped (or dropped).
pub(crate) struct LagReporter {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Shutdown,
}

impl Drop for LagReporter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl LagReporter {
    pub(crate) fn spawn(consumer: Arc<StreamConsumer<RunnerContext>>, group: String, drain: Option<Shutdown>) -> Self {
        let stop = Shutdown::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut draining_since: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopped.cancelled() => return,
                }
                let (consumer, g) = (consumer.clone(), group.clone());
                // Blocking librdkafka calls (a few network round trips).
                let Ok(lag) = tokio::task::spawn_blocking(move || report(&consumer, &g)).await else {
                    return;
                };
                // A drain that takes more than a moment says what it waits for.
                if drain.as_ref().is_some_and(Shutdown::is_triggered) {
                    let since = *draining_since.get_or_insert_with(std::time::Instant::now);
                    if let Some(lag) = lag.filter(|l| *l > 0)
                        && since.elapsed() >= Duration::from_secs(3)
                    {
                        tracing::warn!(
                            "stopping: waiting for group {group} to handle {lag} more record(s) (for {:.0?}); \
                             Ctrl-C again stops now and leaves them unhandled",
                            since.elapsed()
                        );
                    }
                }
            }
        });
        Self { task: Some(task), stop }
    }

    /// Stops reporting and waits for a report in progress, so that this task no longer holds
    /// the consumer when the runner lets it go. (A task aborted instead may be dropped later,
    /// at runtime shutdown, and its last reference then closes the consumer after the broker
    /// is gone: librdkafka's close waits for the broker, and the process hung.)
    pub(crate) async fn stop(mut self) {
        self.stop.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// An assigned partition's offsets: `(topic, partition, committed offset, end offset, lag)`.
type PartitionLag = (String, i32, Option<i64>, i64, i64);

/// Each assigned partition's offsets and lag.
fn lags(consumer: &StreamConsumer<RunnerContext>) -> Option<Vec<PartitionLag>> {
    let timeout = Duration::from_secs(2);
    let assignment = consumer.assignment().ok()?;
    if assignment.count() == 0 {
        return Some(Vec::new());
    }
    let committed = consumer.committed_offsets(assignment, timeout).ok()?;
    let mut out = Vec::with_capacity(committed.count());
    for e in committed.elements() {
        let Ok((low, end)) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout) else {
            continue;
        };
        // No commit yet: the group starts from the earliest offset still held (Kafkube's
        // consumers read from the earliest), so all of the partition counts as lag.
        let (committed, lag) = match e.offset() {
            Offset::Offset(c) => (Some(c), (end - c).max(0)),
            _ => (None, (end - low).max(0)),
        };
        out.push((e.topic().to_owned(), e.partition(), committed, end, lag));
    }
    Some(out)
}

/// Sets the lag gauges; returns the group's total lag on its assigned partitions.
fn report(consumer: &StreamConsumer<RunnerContext>, group: &str) -> Option<i64> {
    let lags = lags(consumer)?;
    for (topic, partition, committed, end, lag) in &lags {
        let labels = [
            ("group", group.to_owned()),
            ("topic", topic.clone()),
            ("partition", partition.to_string()),
        ];
        metrics::gauge!("kafkube_consumer_end_offset", &labels).set(*end as f64);
        if let Some(c) = committed {
            metrics::gauge!("kafkube_consumer_committed_offset", &labels).set(*c as f64);
        }
        metrics::gauge!("kafkube_consumer_lag", &labels).set(*lag as f64);
    }
    Some(lags.iter().map(|l| l.4).sum())
}

/// Records of the assigned partitions past the group's committed offsets (after the final
/// commit: the records not handled).
pub(crate) fn unhandled(consumer: &StreamConsumer<RunnerContext>) -> u64 {
    lags(consumer).map_or(0, |l| l.iter().map(|l| l.4).sum::<i64>().max(0) as u64)
}
