//! The consumer's librdkafka context: group membership and librdkafka's own log lines.

use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

/// Logs group membership changes; librdkafka commits stored offsets itself on revoke.
pub(crate) struct RunnerContext {
    pub(crate) group: String,
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

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::link::error_librdkafka(&error, reason);
    }
}

pub(crate) use crate::link::log_librdkafka;

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
