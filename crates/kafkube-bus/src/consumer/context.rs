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
