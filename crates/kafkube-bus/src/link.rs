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
                reach::reachable();
            } else {
                reach::unreachable();
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
        log_librdkafka(level, fac, message);
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
        error_librdkafka(&error, reason);
    }
}

/// librdkafka's log lines, into `tracing` under the `librdkafka` target. A failed broker
/// connection (`FAIL`) is not logged one by one (librdkafka retries every few hundred
/// milliseconds, per client): [`reach`] says once that the broker cannot be reached, and why.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    if fac == "FAIL" {
        reach::failure(message);
        tracing::debug!(target: "librdkafka", fac, "{message}");
        return;
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

/// librdkafka's client-wide errors: a broker that cannot be reached goes to [`reach`]; others
/// are logged.
pub(crate) fn error_librdkafka(error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::AllBrokersDown) => reach::unreachable(),
        Some(code) if is_connection_error(code) => {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        }
        _ => tracing::warn!(target: "librdkafka", error = %error, "{reason}"),
    }
}

/// Errors that only say a broker connection failed (reported once, by [`reach`]).
pub(crate) fn is_connection_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::BrokerNotAvailable
    )
}

/// One account per process of a Kafka that cannot be reached, however many clients see it
/// ([`kafkube_core::Outage`]): the first time with the cause ("cannot reach Kafka at
/// 127.0.0.1:9092: Connection refused"), again when the cause changes or every 30 seconds while it
/// lasts, and the recovery.
pub(crate) mod reach {
    use std::sync::Mutex;

    use kafkube_core::Outage;

    struct State {
        /// The last connection failure librdkafka logged: (broker, cause).
        last_failure: Option<(String, String)>,
        outage: Outage,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        last_failure: None,
        outage: Outage::new("retrying (/ready answers 503 until it is back)"),
    });

    fn state() -> std::sync::MutexGuard<'static, State> {
        STATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection failure as librdkafka logs it, e.g. `127.0.0.1:1/bootstrap: Connect to
    /// ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)`. Said only
    /// while no broker is reachable: one broker of several down is not an outage.
    pub(crate) fn failure(message: &str) {
        let mut s = state();
        s.last_failure = Some(parse(message));
        if s.outage.is_down() {
            say(&mut s);
        }
    }

    /// No broker connection is up.
    pub(crate) fn unreachable() {
        say(&mut state());
    }

    /// A broker connection is up again.
    pub(crate) fn reachable() {
        let mut s = state();
        s.outage.recovered("Kafka");
        s.last_failure = None;
    }

    /// `" at BROKER: CAUSE"` of the last connection failure, or nothing.
    pub(crate) fn last_failure() -> String {
        match &state().last_failure {
            Some((broker, cause)) => format!(" at {broker}: {cause}"),
            None => String::new(),
        }
    }

    fn say(s: &mut State) {
        let (what, cause) = match &s.last_failure {
            Some((broker, cause)) => (format!("Kafka at {broker}"), cause.as_str()),
            None => ("Kafka".to_owned(), "no broker connection is up"),
        };
        s.outage.failed(&what, cause);
    }

    /// `(broker, cause)`: `("127.0.0.1:1", "Connection refused")`.
    pub(super) fn parse(message: &str) -> (String, String) {
        // `[thrd:127.0.0.1:1/bootstrap]: ` first, from some librdkafka versions.
        let message = match message.strip_prefix("[thrd:").and_then(|m| m.split_once("]: ")) {
            Some((_, rest)) => rest,
            None => message,
        };
        let (broker, rest) = message.split_once(": ").unwrap_or(("", message));
        // `host:port/bootstrap` or `host:port/1`: the address.
        let broker = broker.rsplit_once('/').map_or(broker, |(addr, _)| addr);
        // librdkafka's timing suffix says nothing to a user.
        let rest = rest.split(" (after ").next().unwrap_or(rest);
        // `Connect to ipv4#127.0.0.1:1 failed: Connection refused`: the address is said already.
        let cause = match rest.strip_prefix("Connect to ").and_then(|r| r.split_once(" failed: ")) {
            Some((_, why)) => why,
            None => rest,
        };
        (broker.to_owned(), cause.trim().to_owned())
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
    fn a_connection_failure_reads_as_broker_and_cause() {
        for (message, broker, cause) in [
            (
                "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
                "127.0.0.1:1",
                "Connection refused",
            ),
            (
                "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
                "127.0.0.1:1",
                "Connection refused",
            ),
            (
                "kafka:9092/bootstrap: Failed to resolve 'kafka:9092': Name or service not known (after 3ms in state CONNECT)",
                "kafka:9092",
                "Failed to resolve 'kafka:9092': Name or service not known",
            ),
            (
                "kafka-0:9093/1: SSL handshake failed: certificate verify failed (after 5ms in state SSL_HANDSHAKE)",
                "kafka-0:9093",
                "SSL handshake failed: certificate verify failed",
            ),
        ] {
            assert_eq!(
                reach::parse(message),
                (broker.to_owned(), cause.to_owned()),
                "{message}"
            );
        }
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
