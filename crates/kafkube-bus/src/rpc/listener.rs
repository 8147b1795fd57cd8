//! [`ReplyListener`]: reads this replica's reply partitions, completes the matching requests, and
//! keeps the owned partitions up to date through rebalances.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) inner: Arc<Inner>,
    pub(super) settings: RpcSettings,
}

impl ReplyListener {
    /// Runs until the client's shutdown trips; then fails what is still pending (`Shutdown`).
    pub async fn run(self) -> Result<()> {
        let inner = &*self.inner;
        tracing::info!(topic = %self.settings.reply_topic, group = %self.settings.group_id, instance = %self.settings.instance, "reply listener started");
        // Consumer errors are librdkafka telling us about its connections; it reconnects by
        // itself. They are logged (the first of a run as a warning), never waited on: a backlog
        // of them queued during an outage must not delay the replies queued behind it.
        let mut failing = false;
        loop {
            let message = tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
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
                                "reply for no pending request (timed out, or asked by another replica before a rebalance)"
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

/// Keeps [`Routes`] in step with the group's assignment, and starts new partitions at their end.
pub(super) struct ReplyContext {
    pub(super) topic: String,
    pub(super) group: String,
    pub(super) routes: Arc<Routes>,
}

impl ClientContext for ReplyContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::consumer::log_librdkafka(level, fac, message);
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
                let now = self.routes.update(|set| {
                    if cooperative {
                        set.retain(|p| !revoked.contains(p));
                    } else {
                        set.clear();
                    }
                });
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
