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

use super::context::RunnerContext;

/// How often the offsets are read.
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

/// Reads the offsets until dropped.
pub(crate) struct LagReporter {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LagReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LagReporter {
    pub(crate) fn spawn(consumer: Arc<StreamConsumer<RunnerContext>>, group: String) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (consumer, group) = (consumer.clone(), group.clone());
                // Blocking librdkafka calls (a few network round trips).
                if tokio::task::spawn_blocking(move || report(&consumer, &group))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Self { task }
    }
}

fn report(consumer: &StreamConsumer<RunnerContext>, group: &str) {
    let timeout = Duration::from_secs(2);
    let Ok(assignment) = consumer.assignment() else { return };
    if assignment.count() == 0 {
        return;
    }
    let Ok(committed) = consumer.committed_offsets(assignment, timeout) else {
        return;
    };
    for e in committed.elements() {
        let Ok((low, end)) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout) else {
            continue;
        };
        let labels = [
            ("group", group.to_owned()),
            ("topic", e.topic().to_owned()),
            ("partition", e.partition().to_string()),
        ];
        metrics::gauge!("kafkube_consumer_end_offset", &labels).set(end as f64);
        // No commit yet: the group starts from the earliest offset still held (Kafkube's
        // consumers read from the earliest), so all of the partition counts as lag.
        let (committed, lag) = match e.offset() {
            Offset::Offset(c) => (Some(c), (end - c).max(0)),
            _ => (None, (end - low).max(0)),
        };
        if let Some(c) = committed {
            metrics::gauge!("kafkube_consumer_committed_offset", &labels).set(c as f64);
        }
        metrics::gauge!("kafkube_consumer_lag", &labels).set(lag as f64);
    }
}
