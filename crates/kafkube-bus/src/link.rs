//! Is the broker reachable right now? Tracked from librdkafka's own signals, so a request path
//! can refuse at once (503) instead of waiting out `message.timeout.ms` for a broker that is gone.
//!
//! - down: librdkafka reports `AllBrokersDown` (every connection failed), or a statistics report
//!   (once a second) shows no broker connection up;
//! - up: a statistics report shows a connection up, or a delivery is acknowledged.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;
use tokio::sync::watch;

/// How often librdkafka reports statistics (and so how soon a recovered broker is noticed).
pub(crate) const STATS_INTERVAL_MS: &str = "1000";

/// A client's view of the broker link. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Link {
    up: watch::Sender<bool>,
}

impl Default for Link {
    fn default() -> Self {
        // Until librdkafka says otherwise, assume the broker answers: the first request finds out.
        Self {
            up: watch::Sender::new(true),
        }
    }
}

impl Link {
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Resolves when the link is (or goes) down.
    pub async fn down(&self) {
        let mut rx = self.up.subscribe();
        // `wait_for` only errs when the sender is dropped, and `self` holds it.
        let _ = rx.wait_for(|up| !*up).await;
    }

    /// Called on every acknowledged delivery: a shared read when nothing changes, the write
    /// lock only on a transition.
    pub(crate) fn set(&self, up: bool) {
        if self.is_up() == up {
            return;
        }
        self.up.send_if_modified(|now| {
            if *now == up {
                return false;
            }
            *now = up;
            if up {
                tracing::info!("Kafka broker reachable again");
            } else {
                tracing::warn!("Kafka broker unreachable");
            }
            metrics::gauge!("kafkube_kafka_broker_up").set(if up { 1.0 } else { 0.0 });
            true
        });
    }
}

/// The client context of Kafkube's producers: librdkafka logs go to `tracing`, and the link
/// state is kept up to date.
pub(crate) struct LinkContext {
    pub(crate) link: Link,
}

#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: std::collections::HashMap<String, BrokerStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    state: String,
}

impl ClientContext for LinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::consumer::log_librdkafka(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Ok(stats) = serde_json::from_slice::<Stats>(statistics) {
            self.link.set(stats.brokers.values().any(|b| b.state == "UP"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.link.set(false);
        }
        tracing::debug!(target: "librdkafka", error = %error, "{reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn down_resolves_when_the_link_drops() {
        let link = Link::default();
        assert!(link.is_up());
        let waiter = tokio::spawn({
            let link = link.clone();
            async move { link.down().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        link.set(false);
        waiter.await.expect("waiter");
        assert!(!link.is_up());
    }

    #[test]
    fn statistics_decide_the_state() {
        let ctx = LinkContext { link: Link::default() };
        ctx.stats_raw(br#"{"brokers": {"a:1/bootstrap": {"state": "DOWN"}, "a:1/1": {"state": "CONNECT"}}}"#);
        assert!(!ctx.link.is_up());
        ctx.stats_raw(br#"{"brokers": {"a:1/1": {"state": "UP"}}}"#);
        assert!(ctx.link.is_up());
    }
}
