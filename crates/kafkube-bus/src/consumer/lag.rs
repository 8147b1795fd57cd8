//! Each assigned partition's committed offset, end offset and lag, as gauges for `/metrics`:
//! `kafkube_consumer_committed_offset`, `kafkube_consumer_end_offset` and `kafkube_consumer_lag`
//! (labels `group`, `topic`, `partition`) — what `kafka-consumer-groups --describe` shows as
//! CURRENT-OFFSET, LOG-END-OFFSET and LAG.
//!
//! A partition this consumer no longer owns (after a rebalance) keeps its last offsets but its
//! lag drops to 0: its new owner reports it, so `sum by (group, topic)` over the replicas counts
//! each partition once.
//!
//! They are read from the brokers every second (two or three requests per broker) on a task of
//! their own, not from the consumer's poll loop (librdkafka's statistics arrive only while the
//! app polls), so they keep moving while the handler waits for a database that is down: the
//! moment lag matters most.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};

use kafkube_core::Shutdown;

use super::context::RunnerContext;
use crate::topics::list_offsets;

/// How often the offsets are read: the console shows a group's lag going to 0 within about 2 s
/// (the offsets are committed every second).
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// How often a drain that waits says what it waits for.
const DRAIN_REPORT: Duration = Duration::from_secs(5);

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
            let mut last_said: Option<std::time::Instant> = None;
            let mut owned = Vec::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopped.cancelled() => return,
                }
                let consumer = consumer.clone();
                // Blocking librdkafka calls (a few network round trips).
                let Ok(lags) = tokio::task::spawn_blocking(move || lags(&consumer)).await else {
                    return;
                };
                let lag = lags.map(|lags| report(&group, &lags, &mut owned));
                // A drain that takes more than a moment says what it waits for, every 5 s.
                if drain.as_ref().is_some_and(Shutdown::is_triggered) {
                    let since = *draining_since.get_or_insert_with(std::time::Instant::now);
                    if let Some(lag) = lag.filter(|l| *l > 0)
                        && since.elapsed() >= Duration::from_secs(3)
                        && last_said.is_none_or(|t: std::time::Instant| t.elapsed() >= DRAIN_REPORT)
                    {
                        last_said = Some(std::time::Instant::now());
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

/// Each assigned partition's offsets and lag: the group's committed offsets (one OffsetFetch) and
/// the partitions' ends (one ListOffsets per broker); the first offsets too (another ListOffsets),
/// only while some partition has no commit yet.
fn lags(consumer: &StreamConsumer<RunnerContext>) -> Option<Vec<PartitionLag>> {
    let timeout = Duration::from_secs(2);
    let assignment = consumer.assignment().ok()?;
    if assignment.count() == 0 {
        return Some(Vec::new());
    }
    let committed = consumer.committed_offsets(assignment.clone(), timeout).ok()?;
    let ends = list_offsets(consumer, &assignment, Offset::End, timeout).ok()?;
    let uncommitted = committed
        .elements()
        .iter()
        .any(|e| !matches!(e.offset(), Offset::Offset(_)));
    let lows = if uncommitted {
        list_offsets(consumer, &assignment, Offset::Beginning, timeout).ok()?
    } else {
        Default::default()
    };
    let mut out = Vec::with_capacity(committed.count());
    for e in committed.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let Some(&end) = ends.get(&key) else {
            continue;
        };
        // No commit yet: the group starts from the earliest offset still held (Kafkube's
        // consumers read from the earliest), so all of the partition counts as lag.
        let (committed, lag) = match e.offset() {
            Offset::Offset(c) => (Some(c), (end - c).max(0)),
            _ => (None, (end - lows.get(&key).copied().unwrap_or(0)).max(0)),
        };
        out.push((key.0, key.1, committed, end, lag));
    }
    Some(out)
}

/// Sets the lag gauges of `lags` and zeroes the lag of the partitions in `owned` (those reported
/// last time) that are no longer assigned; `owned` becomes this report's partitions. Returns the
/// group's total lag on its assigned partitions.
fn report(group: &str, lags: &[PartitionLag], owned: &mut Vec<(String, i32)>) -> i64 {
    let labels = |topic: &str, partition: i32| {
        [
            ("group", group.to_owned()),
            ("topic", topic.to_owned()),
            ("partition", partition.to_string()),
        ]
    };
    let now: Vec<(String, i32)> = lags.iter().map(|l| (l.0.clone(), l.1)).collect();
    for (topic, partition) in owned.iter().filter(|p| !now.contains(p)) {
        metrics::gauge!("kafkube_consumer_lag", &labels(topic, *partition)).set(0.0);
    }
    *owned = now;
    for (topic, partition, committed, end, lag) in lags {
        let labels = labels(topic, *partition);
        metrics::gauge!("kafkube_consumer_end_offset", &labels).set(*end as f64);
        if let Some(c) = committed {
            metrics::gauge!("kafkube_consumer_committed_offset", &labels).set(*c as f64);
        }
        metrics::gauge!("kafkube_consumer_lag", &labels).set(*lag as f64);
    }
    lags.iter().map(|l| l.4).sum()
}

/// Records of the assigned partitions past the group's committed offsets (after the final
/// commit: the records not handled).
pub(crate) fn unhandled(consumer: &StreamConsumer<RunnerContext>) -> u64 {
    lags(consumer).map_or(0, |l| l.iter().map(|l| l.4).sum::<i64>().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag_line(text: &str, partition: i32) -> Option<&str> {
        let series = format!("kafkube_consumer_lag{{group=\"lag-unit\",topic=\"t\",partition=\"{partition}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map(str::trim)
    }

    #[test]
    fn a_partition_given_away_reports_no_lag_here() {
        let handle = kafkube_core::telemetry::metrics_handle();
        let mut owned = Vec::new();
        let both = [("t".to_owned(), 0, Some(2), 9, 7), ("t".to_owned(), 1, None, 4, 4)];
        assert_eq!(report("lag-unit", &both, &mut owned), 11);
        let text = handle.render();
        assert_eq!(
            (lag_line(&text, 0), lag_line(&text, 1)),
            (Some("7"), Some("4")),
            "{text}"
        );

        // A rebalance took partition 0 away.
        assert_eq!(report("lag-unit", &both[1..], &mut owned), 4);
        let text = handle.render();
        assert_eq!(
            (lag_line(&text, 0), lag_line(&text, 1)),
            (Some("0"), Some("4")),
            "{text}"
        );
        assert_eq!(owned, [("t".to_owned(), 1)]);
    }
}
