//! Connection settings shared by every producer and consumer of a process.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use rdkafka::ClientConfig;

use crate::embedded::{EmbeddedBroker, EmbeddedBrokerGuard};
use crate::{BusError, Result};

/// Kafka connection options (flags and environment variables).
#[derive(Args, Clone, Debug, Default)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port…]`. When unset, `kafkube up` starts the
    /// embedded in-memory broker; `kafkube serve` requires it.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", value_name = "HOSTS")]
    pub brokers: Option<String>,

    /// How long a produced message may wait for the broker before it counts as failed, in seconds
    /// (librdkafka `message.timeout.ms`). Failed outbox sends are retried, never dropped.
    #[arg(
        long = "kafka-timeout",
        env = "KAFKA_TIMEOUT",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub timeout_secs: u64,

    /// Consumer group session timeout in milliseconds: how soon a crashed consumer's partitions
    /// move to a survivor (the broker must allow it; Kafka's minimum is 6000).
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u64,

    /// Extra librdkafka properties, `key=value`, repeatable or comma-separated in the variable
    /// (for example `security.protocol=SASL_SSL,sasl.mechanism=PLAIN`).
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Resolved connection settings. Cheap to clone; every client of the process is built from it.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub brokers: String,
    pub message_timeout: Duration,
    pub session_timeout: Duration,
    /// librdkafka properties applied last, so they override Kafkube's defaults.
    pub options: BTreeMap<String, String>,
    /// The embedded broker behind `brokers`, when it runs in this process: topics are created
    /// through its handle (it has no Admin API). Set by [`Cluster::resolve`] and the tests.
    pub embedded: Option<EmbeddedBroker>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            message_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            options: BTreeMap::new(),
            embedded: None,
        }
    }

    /// Settings for the embedded broker `broker` of this process.
    pub fn for_embedded(broker: &EmbeddedBroker) -> Self {
        Self {
            embedded: Some(broker.clone()),
            ..Self::new(broker.bootstrap_servers())
        }
    }

    /// Settings from the command line; `brokers` is the resolved address (from `--kafka-brokers`
    /// or the embedded broker).
    pub fn from_args(args: &KafkaArgs, brokers: impl Into<String>) -> Result<Self> {
        let brokers = brokers.into();
        if brokers.trim().is_empty() {
            return Err(BusError::Config(
                "no Kafka bootstrap servers given (set KAFKA_BROKERS)".into(),
            ));
        }
        Ok(Self {
            brokers,
            message_timeout: Duration::from_secs(args.timeout_secs.max(1)),
            session_timeout: Duration::from_millis(args.session_timeout_ms),
            options: args.options.iter().cloned().collect(),
            embedded: None,
        })
    }

    pub fn with_message_timeout(mut self, t: Duration) -> Self {
        self.message_timeout = t;
        self
    }

    pub fn with_session_timeout(mut self, t: Duration) -> Self {
        self.session_timeout = t;
        self
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "kafkube")
            // Reconnect quickly after an outage; the defaults back off to 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3");
        c
    }

    fn apply_overrides(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// Idempotent producer: `acks=all`, no duplicates or reordering from internal retries,
    /// no linger: Kafkube's events are latency-sensitive, and messages queued while a request is
    /// in flight are still batched (raise it with `KAFKA_OPTIONS=linger.ms=5` for bulk loads).
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string())
            .set("compression.type", "none");
        self.apply_overrides(c)
    }

    /// Consumer in `group`: offsets are *stored* by Kafkube after each effect commits and
    /// auto-committed from there (`enable.auto.offset.store=false`), so nothing is committed
    /// before it was processed.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 5).max(100).to_string(),
            )
            // The broker answers a waiting fetch as soon as data arrives (the embedded one too,
            // with Kafkube's patch of the mock cluster), so this bounds only idle polling: at
            // librdkafka's default of 500 ms an idle `up` (five consumers) costs the broker a
            // fifth of the fetches it did at 100 ms, and no record waits for it.
            .set("fetch.wait.max.ms", "500")
            .set("allow.auto.create.topics", "true");
        self.apply_overrides(c)
    }

    /// Admin and metadata clients.
    pub fn admin_config(&self) -> ClientConfig {
        self.apply_overrides(self.base())
    }
}

/// The broker a process talks to, decided once: the one given by `KAFKA_BROKERS`, or an embedded
/// broker started here (only where the command allows it: `up`, `broker`, the benchmarks).
#[derive(Debug)]
pub struct Cluster {
    pub config: KafkaConfig,
    /// Owns the embedded broker; dropping it stops the broker, so it is dropped last.
    embedded: Option<EmbeddedBrokerGuard>,
}

impl Cluster {
    /// Uses `args.brokers` when given; otherwise starts an embedded broker if `embedded_allowed`,
    /// else fails with an error that says what to set.
    pub fn resolve(args: &KafkaArgs, embedded_allowed: bool) -> Result<Self> {
        match &args.brokers {
            Some(brokers) => Ok(Self {
                config: KafkaConfig::from_args(args, brokers.clone())?,
                embedded: None,
            }),
            None if embedded_allowed => Self::embedded(args, 1),
            None => Err(BusError::Config(
                "no broker given: set KAFKA_BROKERS (or --kafka-brokers); `kafkube up` and                  `kafkube broker` run an embedded one"
                    .into(),
            )),
        }
    }

    /// Starts an embedded broker of `brokers` nodes with the other settings of `args`.
    pub fn embedded(args: &KafkaArgs, brokers: i32) -> Result<Self> {
        let guard = EmbeddedBroker::start(brokers)?;
        let mut config = KafkaConfig::from_args(args, guard.bootstrap_servers())?;
        config.embedded = Some((*guard).clone());
        Ok(Self {
            config,
            embedded: Some(guard),
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.config.brokers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_options_override_defaults() {
        let args = KafkaArgs {
            brokers: Some("b:9092".into()),
            timeout_secs: 5,
            session_timeout_ms: 6000,
            options: vec![("linger.ms".into(), "20".into())],
        };
        let cfg = KafkaConfig::from_args(&args, "b:9092").expect("valid");
        let p = cfg.producer_config();
        assert_eq!(p.get("linger.ms"), Some("20"));
        assert_eq!(p.get("message.timeout.ms"), Some("5000"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = cfg.consumer_config("g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
    }

    #[test]
    fn rejects_empty_brokers_and_bad_options() {
        assert!(KafkaConfig::from_args(&KafkaArgs::default(), " ").is_err());
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_key_value("a = b").expect("ok"), ("a".into(), "b".into()));
    }
}
