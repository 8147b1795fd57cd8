//! [`ReplyListener`]: reads this replica's reply partitions, completes the matching requests, and
//! keeps the owned partitions up to date through rebalances.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{Header, Record, Result};

use super::RpcSettings;
use super::state::{Inner, Routes};

/// Reads this replica's reply partitions and completes the matching requests.
pub struct ReplyListener {
    pub(super) consumer: StreamConsumer<ReplyContext>,
    pub(super) handover: Arc<Handover>,
    pub(super) inner: Arc<Inner>,
    pub(super) settings: RpcSettings,
}

/// How long a partition given up in a rebalance is read at least, for a request that picked it
/// just before the rebalance and has not registered as waiting yet.
const HANDOVER_GRACE: Duration = Duration::from_secs(1);

/// Reply partitions this replica gave up in a rebalance while requests of its own still wait for
/// replies on them. A second consumer, outside the group (it assigns, never subscribes), goes on
/// reading each from where the group's consumer stopped until no request waits on it; the
/// replica that now owns the partition reads the same replies and counts them as unmatched.
pub(super) struct Handover {
    consumer: StreamConsumer<HandoverContext>,
    topic: String,
    /// Partition → when it was handed over.
    partitions: Mutex<HashMap<i32, Instant>>,
}

impl Handover {
    pub(super) fn new(consumer: StreamConsumer<HandoverContext>, topic: String) -> Self {
        Self {
            consumer,
            topic,
            partitions: Mutex::default(),
        }
    }

    fn partitions(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Instant>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Goes on reading `partitions` from the given offsets.
    fn take(&self, partitions: &[(i32, Offset)]) {
        let mut held = self.partitions();
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in partitions {
            // Already held (given up twice in a row): it is still being read from the first time.
            if held.insert(*p, Instant::now()).is_none() {
                let _ = tpl.add_partition_offset(&self.topic, *p, *offset);
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.incremental_assign(&tpl) {
            Ok(()) => {
                tracing::debug!(topic = %self.topic, partitions = ?partitions, "reading handed-over reply partitions until their requests end")
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "could not keep reading handed-over reply partitions; replies to requests in flight on them are lost");
                for (p, _) in partitions {
                    held.remove(p);
                }
            }
        }
    }

    /// Stops reading the partitions on which no request waits any more.
    fn release_finished(&self, inner: &Inner) {
        let mut held = self.partitions();
        let done: Vec<i32> = held
            .iter()
            .filter(|(p, since)| since.elapsed() >= HANDOVER_GRACE && !inner.waits_on(**p))
            .map(|(p, _)| *p)
            .collect();
        if done.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for p in &done {
            held.remove(p);
            tpl.add_partition(&self.topic, *p);
        }
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::warn!(topic = %self.topic, error = %e, "could not stop reading handed-over reply partitions");
        }
        tracing::debug!(topic = %self.topic, partitions = ?done, "handed-over reply partitions released");
    }

    fn is_empty(&self) -> bool {
        self.partitions().is_empty()
    }
}

/// The handover consumer's context: librdkafka's logs, nothing else.
pub(super) struct HandoverContext;

impl ClientContext for HandoverContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::consumer::log_librdkafka(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::link::error_librdkafka(&error, reason);
    }
}

impl ConsumerContext for HandoverContext {}

impl ReplyListener {
    /// Runs until the client's shutdown trips; then fails what is still pending (`Shutdown`).
    pub async fn run(self) -> Result<()> {
        let inner = &*self.inner;
        tracing::info!(topic = %self.settings.reply_topic, group = %self.settings.group_id, instance = %self.settings.instance, "reply listener started");
        // Consumer errors are librdkafka telling us about its connections; it reconnects by
        // itself. They are logged (the first of a run as a warning), never waited on: a backlog
        // of them queued during an outage must not delay the replies queued behind it.
        let mut failing = false;
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
                m = self.handover.consumer.recv() => m,
                _ = sweep.tick(), if !self.handover.is_empty() => {
                    self.handover.release_finished(inner);
                    continue;
                }
            };
            match message {
                Ok(m) => {
                    failing = false;
                    let record = Record::from_message(&m, Utc::now());
                    let waiter = record
                        .headers
                        .get_str(Header::CORRELATION_ID)
                        .and_then(|id| inner.take(id));
                    match waiter {
                        // The waiter may have given up a moment ago; nothing to do then.
                        Some(tx) => drop(tx.send(record)),
                        None => {
                            metrics::counter!("kafkube_rpc_replies_unmatched_total").increment(1);
                            tracing::debug!(
                                partition = record.partition,
                                offset = record.offset,
                                "reply for no pending request (timed out, or asked by the replica that owned the partition before a rebalance)"
                            );
                        }
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(topic = %self.settings.reply_topic, error = %e, "reply consumer error");
                }
                Err(e) => tracing::debug!(topic = %self.settings.reply_topic, error = %e, "reply consumer error"),
            }
        }
        let dropped = {
            let mut pending = inner.pending();
            let n = pending.len();
            pending.clear();
            n
        };
        metrics::gauge!("kafkube_rpc_pending").decrement(dropped as f64);
        tracing::info!(topic = %self.settings.reply_topic, failed_pending = dropped, "reply listener stopped");
        Ok(())
    }
}

/// Keeps [`Routes`] in step with the group's assignment, starts new partitions at their end, and
/// hands partitions it gives up over to [`Handover`] while requests still wait on them.
pub(super) struct ReplyContext {
    pub(super) topic: String,
    pub(super) group: String,
    pub(super) routes: Arc<Routes>,
    pub(super) handover: Arc<Handover>,
    /// Where each owned partition was started (its end when assigned), for a handover of a
    /// partition that delivered nothing yet.
    pub(super) starts: Mutex<HashMap<i32, i64>>,
}

impl ReplyContext {
    fn starts(&self) -> std::sync::MutexGuard<'_, HashMap<i32, i64>> {
        self.starts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where reading `revoked` must go on: after the last reply delivered from each, or where
    /// it was started when it delivered none.
    fn resume_points<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, revoked: &[i32]) -> Vec<(i32, Offset)> {
        let positions = consumer.position().ok();
        let starts = self.starts();
        revoked
            .iter()
            .map(|p| {
                let delivered = positions
                    .as_ref()
                    .and_then(|tpl| tpl.find_partition(&self.topic, *p))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0);
                let offset = match delivered.or_else(|| starts.get(p).copied()) {
                    Some(o) => Offset::Offset(o),
                    None => Offset::End,
                };
                (*p, offset)
            })
            .collect()
    }
}

impl ClientContext for ReplyContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::consumer::log_librdkafka(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::link::error_librdkafka(&error, reason);
    }
}

impl ConsumerContext for ReplyContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                for (topic, p) in &assigned {
                    // The end as of now: every reply to a request sent from here on is after it.
                    let start = match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                        Ok((_, high)) => Offset::Offset(high),
                        Err(e) => {
                            tracing::warn!(topic = %topic, partition = p, error = %e, "could not read the reply partition's end; starting at the latest offset");
                            Offset::End
                        }
                    };
                    if let Offset::Offset(o) = start {
                        self.starts().insert(*p, o);
                    }
                    let _ = tpl.set_partition_offset(topic, *p, start);
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(topic = %self.topic, error = %e, "could not take the assigned reply partitions");
                    return;
                }
                let now = self.routes.update(|set| {
                    if !cooperative {
                        set.clear();
                    }
                    set.extend(assigned.iter().map(|(_, p)| *p));
                });
                tracing::info!(topic = %self.topic, group = %self.group, partitions = ?now, "reply partitions assigned");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                // First no new request picks them, then the requests that did keep their replies
                // coming: every request that picked one is registered by now, or within the
                // handover's grace.
                let now = self.routes.update(|set| {
                    if cooperative {
                        set.retain(|p| !revoked.contains(p));
                    } else {
                        set.clear();
                    }
                });
                let resume = self.resume_points(consumer, &revoked);
                self.handover.take(&resume);
                {
                    let mut starts = self.starts();
                    for p in &revoked {
                        starts.remove(p);
                    }
                }
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(topic = %self.topic, error = %e, "could not release revoked reply partitions");
                }
                tracing::info!(topic = %self.topic, group = %self.group, revoked = ?revoked, partitions = ?now, "reply partitions revoked");
            }
            other => {
                tracing::warn!(topic = %self.topic, group = %self.group, error = ?other, "reply group rebalance error");
                self.routes.update(BTreeSet::clear);
                let _ = consumer.unassign();
            }
        }
    }
}
