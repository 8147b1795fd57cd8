//! The broker of a test: the embedded broker, or a real cluster from `KAFKUBE_TEST_KAFKA_BROKERS`,
//! reached as Kafkube's security options say (`KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL`,
//! `KAFKUBE_TEST_KAFKA_SASL_MECHANISM`, `KAFKUBE_TEST_KAFKA_SASL_USERNAME`,
//! `KAFKUBE_TEST_KAFKA_SASL_PASSWORD`, `KAFKUBE_TEST_KAFKA_CA`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use kafkube_bus::embedded::EmbeddedBrokerGuard;
use kafkube_bus::{
    EmbeddedBroker, KafkaArgs, KafkaConfig, KafkaSecurityArgs, SaslMechanism, SecurityProtocol, TopicSpec,
    ensure_topics,
};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::unique;

/// The broker of a test.
#[derive(Clone)]
pub struct TestKafka {
    config: KafkaConfig,
    embedded: Option<Arc<EmbeddedBrokerGuard>>,
    /// Kafkube's security options for this broker (none for the embedded one).
    security: KafkaSecurityArgs,
}

fn test_env(name: &str) -> Option<String> {
    std::env::var(format!("KAFKUBE_TEST_KAFKA_{name}"))
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Kafkube's security options from `KAFKUBE_TEST_KAFKA_*`.
fn security_from_env() -> KafkaSecurityArgs {
    KafkaSecurityArgs {
        protocol: test_env("SECURITY_PROTOCOL")
            .map(|p| SecurityProtocol::from_str(&p, true).expect("KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL")),
        sasl_mechanism: test_env("SASL_MECHANISM")
            .map(|m| SaslMechanism::from_str(&m, true).expect("KAFKUBE_TEST_KAFKA_SASL_MECHANISM")),
        sasl_username: test_env("SASL_USERNAME"),
        sasl_password: test_env("SASL_PASSWORD").map(secrecy::SecretString::from),
        ca: test_env("CA").map(Into::into),
        ..KafkaSecurityArgs::default()
    }
}

/// A test that panics drops its locals, this broker among them, before the runtime drops its
/// services' tasks; their consumers then close against a broker that is gone, which librdkafka
/// waits out (3 s more per test measured, and nothing bounds it). So a panicking test's embedded
/// broker is left running until the process exits, and the panic is reported at once.
impl Drop for TestKafka {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(broker) = self.embedded.take()
        {
            std::mem::forget(broker);
        }
    }
}

impl TestKafka {
    /// A real cluster from `KAFKUBE_TEST_KAFKA_BROKERS` (with the security options of
    /// `KAFKUBE_TEST_KAFKA_*`), or a fresh embedded broker.
    pub fn start() -> Self {
        let mut security = KafkaSecurityArgs::default();
        let (config, embedded) = match std::env::var("KAFKUBE_TEST_KAFKA_BROKERS") {
            Ok(b) if !b.trim().is_empty() => {
                security = security_from_env();
                let args = KafkaArgs {
                    brokers: Some(b.clone()),
                    timeout_secs: 10,
                    session_timeout_ms: 6000,
                    options: Vec::new(),
                    security: security.clone(),
                    ..KafkaArgs::default()
                };
                let config = KafkaConfig::from_args(&args, b).expect("KAFKUBE_TEST_KAFKA_* settings");
                (config, None)
            }
            _ => {
                let guard = EmbeddedBroker::start(1).expect("start the embedded broker");
                (KafkaConfig::for_embedded(&guard), Some(Arc::new(guard)))
            }
        };
        let config = config
            .with_session_timeout(Duration::from_secs(6))
            .with_message_timeout(Duration::from_secs(10));
        Self {
            config,
            embedded,
            security,
        }
    }

    /// Kafkube's command-line options for this broker (for commands such as `kafkube load`).
    pub fn args(&self) -> KafkaArgs {
        KafkaArgs {
            brokers: Some(self.config.brokers.clone()),
            timeout_secs: self.config.message_timeout.as_secs(),
            session_timeout_ms: 6000,
            options: Vec::new(),
            security: self.security.clone(),
            ..KafkaArgs::default()
        }
    }

    /// The environment a `kafkube` child process needs to reach this broker: `KAFKA_BROKERS`
    /// and the security options.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("KAFKA_BROKERS", self.config.brokers.clone())];
        env.extend(self.security.env());
        env
    }

    pub fn config(&self) -> KafkaConfig {
        self.config.clone()
    }

    pub fn brokers(&self) -> &str {
        &self.config.brokers
    }

    /// The embedded broker, for tests that take it down; `None` against a real cluster.
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        self.embedded.as_deref().map(|g| &**g)
    }

    /// Creates a uniquely named topic (and its `.dlq`) and returns its name.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = unique(prefix);
        ensure_topics(&self.config, &TopicSpec::with_dlq(name.clone(), partitions))
            .await
            .expect("create topic");
        name
    }

    /// How many records were ever written to `topic`: the sum of its partitions' end offsets
    /// (the embedded broker keeps only the newest 5 MiB of a partition, so reading a large topic
    /// back cannot count them).
    pub fn records_written(&self, topic: &str) -> i64 {
        use rdkafka::consumer::BaseConsumer;
        let consumer: BaseConsumer = self
            .config
            .consumer_config(&unique("count"))
            .create()
            .expect("consumer");
        let timeout = Duration::from_secs(10);
        let meta = consumer.fetch_metadata(Some(topic), timeout).expect("metadata");
        meta.topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| consumer.fetch_watermarks(topic, p.id(), timeout).expect("watermarks").1)
            .sum()
    }

    /// Reads `topic` expecting exactly `expected` records: waits up to `timeout` for them, then
    /// 1.5 s more so that a duplicate or stray record would show up too. Returns all it read.
    pub async fn read_exact(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<ReadRecord> {
        self.read_inner(topic, expected, timeout, Duration::from_millis(1500))
            .await
    }

    /// Reads `topic` from the beginning in a fresh group until `count` records arrived or
    /// `timeout` passed; returns what arrived.
    pub async fn read(&self, topic: &str, count: usize, timeout: Duration) -> Vec<ReadRecord> {
        self.read_inner(topic, count, timeout, Duration::ZERO).await
    }

    async fn read_inner(&self, topic: &str, count: usize, timeout: Duration, settle: Duration) -> Vec<ReadRecord> {
        let consumer: StreamConsumer = self
            .config
            .consumer_config(&unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("create reader");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut deadline = Instant::now() + timeout;
        let mut settling = false;
        let mut out = Vec::new();
        loop {
            if out.len() >= count && !settling {
                if settle.is_zero() {
                    break;
                }
                settling = true;
                deadline = Instant::now() + settle;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(m)) => out.push(ReadRecord {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: {
                        use rdkafka::message::Headers;
                        m.headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (
                                            h.key.to_owned(),
                                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    },
                    partition: m.partition(),
                }),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => break,
            }
        }
        // A short read may end while the reader is still joining its group, and a close then can
        // wait forever (librdkafka #4884): bounded. (Stop 20's CI hung in a test that ends by
        // reading two empty dead-letter topics for 1 s each; this is the likeliest cause found.)
        kafkube_bus::consumer::close::close(consumer, "reader").await;
        out
    }
}

/// A record as a test sees it.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
}

impl ReadRecord {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("record payload is JSON")
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }
}
