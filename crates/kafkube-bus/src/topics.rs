//! Topic provisioning.
//!
//! Real clusters get `CreateTopics` through the Admin API (existing topics are left alone). The
//! embedded broker has no Admin API, so topics on it are created through its own handle (carried
//! by [`KafkaConfig::embedded`]); this is the one place in Kafkube that distinguishes the two.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
        }
    }

    /// The topic and its dead-letter topic `<name>.dlq`.
    pub fn with_dlq(name: impl Into<String>, partitions: i32) -> [Self; 2] {
        let name = name.into();
        [Self::new(format!("{name}.dlq"), 1), Self::new(name, partitions)]
    }
}

/// Creates the topics that do not exist yet. Failures to create are logged, not fatal: on a managed
/// cluster topics are often provisioned by operators and clients may lack the ACL to create them.
/// A failed SASL login or TLS handshake is fatal (an error that says what to check): no retry
/// would fix it.
///
/// The cluster's metadata is read first, so a start against topics that already exist sends no
/// `CreateTopics` at all: a broker without the Admin API (the embedded broker seen from another
/// process) never answers one, and start-up must not wait for that.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    if let Some(broker) = &config.embedded {
        for t in topics {
            broker.create_topic(&t.name, t.partitions)?;
        }
        return Ok(());
    }
    let existing = match crate::probe(config, Duration::from_secs(5)).await? {
        crate::Probe::Topics(names) => names,
        crate::Probe::Unreachable(why) => {
            // Asking again to create them would only wait longer. Services start anyway and
            // wait for the broker; their clients ask for auto-creation once it answers.
            tracing::warn!(brokers = %config.brokers, "topics not checked or created: no answer from Kafka ({why}); clients ask for them once it answers");
            return Ok(());
        }
    };
    let wanted: Vec<&TopicSpec> = topics.iter().filter(|t| !existing.contains(&t.name)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.admin_config().create()?;
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(-1)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    // Bounded: a broker without the Admin API never answers, and start-up must not hang on it.
    let created = tokio::time::timeout(Duration::from_secs(6), admin.create_topics(&new, &opts)).await;
    let created =
        created.unwrap_or_else(|_| Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)));
    let mut missing = Vec::new();
    match created {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => tracing::info!(topic = %name, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        tracing::warn!(topic = %name, error = %code, "could not create topic; asking the broker to auto-create it");
                        missing.push(name);
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "topic creation failed; asking the broker to auto-create the topics");
            missing.extend(wanted.iter().map(|t| t.name.clone()));
        }
    }
    auto_create(config, missing).await;
    Ok(())
}

/// Asks for each topic's metadata as a producer does, which makes a broker that allows it
/// (`auto.create.topics.enable`, the embedded broker) create the topic with its default
/// partition count. Consumers alone never trigger that, so a service that only *reads* a topic
/// (a gateway's reply topic) would otherwise wait for a topic nobody creates.
async fn auto_create(config: &KafkaConfig, topics: Vec<String>) {
    if topics.is_empty() {
        return;
    }
    let client: Result<BaseProducer> = config.producer_config().create().map_err(Into::into);
    let client = match client {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "cannot ask for topic auto-creation"),
    };
    let done = tokio::task::spawn_blocking(move || {
        for t in topics {
            if let Err(e) = client.client().fetch_metadata(Some(&t), Duration::from_secs(5)) {
                tracing::warn!(topic = %t, error = %e, "topic metadata request failed; create the topic beforehand");
            }
        }
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "topic auto-creation task failed");
    }
}

/// A topic as the cluster has it now: each partition's first and end offsets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicOffsets {
    pub name: String,
    /// `(partition, low watermark, end offset)`, in partition order.
    pub partitions: Vec<(i32, i64, i64)>,
}

impl TopicOffsets {
    /// Records the topic holds now (the broker may have deleted older ones).
    pub fn records(&self) -> i64 {
        self.partitions.iter().map(|(_, low, end)| (end - low).max(0)).sum()
    }

    /// Records ever written: the sum of the end offsets.
    pub fn written(&self) -> i64 {
        self.partitions.iter().map(|(_, _, end)| end).sum()
    }
}

/// Partition → offset, for each partition of `list`: its first offset (`Offset::Beginning`) or its
/// end (`Offset::End`), in one ListOffsets request per broker (they are the timestamps -2 and -1
/// to ListOffsets), not a round trip per partition as `fetch_watermarks` makes.
pub(crate) fn list_offsets<C: rdkafka::consumer::ConsumerContext>(
    client: &impl rdkafka::consumer::Consumer<C>,
    list: &rdkafka::TopicPartitionList,
    which: rdkafka::Offset,
    timeout: Duration,
) -> Result<std::collections::HashMap<(String, i32), i64>> {
    let mut asked = list.clone();
    asked.set_all_offsets(which)?;
    let answered = client.offsets_for_times(asked, timeout)?;
    let mut out = std::collections::HashMap::new();
    for e in answered.elements() {
        e.error()?;
        let offset = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
        out.insert((e.topic().to_owned(), e.partition()), offset);
    }
    Ok(out)
}

/// Reads the cluster's topics and offsets again and again through one client, kept open (a
/// console refreshing every second would otherwise start a librdkafka client, its threads and
/// connections each time).
#[derive(Clone)]
pub struct TopicReader {
    client: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    brokers: String,
}

impl TopicReader {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let client = config
            .consumer_config("kafkube-status")
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            client: std::sync::Arc::new(client),
            brokers: config.brokers.clone(),
        })
    }

    /// The bootstrap servers it reads.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Every topic of the cluster but its internal ones (`__…`), with its partitions' offsets,
    /// in name order. Needs no Admin API: metadata and offsets only, so the embedded broker
    /// answers too.
    pub async fn describe(&self, timeout: Duration) -> Result<Vec<TopicOffsets>> {
        let (client, brokers) = (self.client.clone(), self.brokers.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let metadata = client
                .fetch_metadata(None, timeout)
                .map_err(|e| crate::BusError::Unreachable(format!(" at {brokers}: {e}")))?;
            let topics: Vec<_> = metadata
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__") && t.error().is_none())
                .collect();
            // Every partition's first and end offsets in two ListOffsets requests per broker,
            // not two round trips per partition.
            let mut list = rdkafka::TopicPartitionList::new();
            for t in &topics {
                for p in t.partitions() {
                    list.add_partition(t.name(), p.id());
                }
            }
            let (lows, ends) = if list.count() == 0 {
                Default::default()
            } else {
                (
                    list_offsets(&*client, &list, rdkafka::Offset::Beginning, timeout)?,
                    list_offsets(&*client, &list, rdkafka::Offset::End, timeout)?,
                )
            };
            let mut described: Vec<TopicOffsets> = topics
                .iter()
                .map(|t| {
                    let at = |m: &std::collections::HashMap<(String, i32), i64>, p: i32| {
                        m.get(&(t.name().to_owned(), p)).copied().unwrap_or(0)
                    };
                    let mut partitions: Vec<(i32, i64, i64)> = t
                        .partitions()
                        .iter()
                        .map(|p| (p.id(), at(&lows, p.id()), at(&ends, p.id())))
                        .collect();
                    partitions.sort_unstable();
                    TopicOffsets {
                        name: t.name().to_owned(),
                        partitions,
                    }
                })
                .collect();
            described.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(described)
        })
        .await
        .map_err(|e| crate::BusError::Config(format!("metadata task failed: {e}")))?
    }
}
