//! Topic provisioning.
//!
//! Real clusters get `CreateTopics` through the Admin API (existing topics are left alone). The
//! embedded broker has no Admin API, so topics on it are created through its own handle; this is
//! the one place in Kafkube that distinguishes the two.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, Result, embedded};

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

/// Creates the topics that do not exist yet. Failures are logged, not fatal: on a managed
/// cluster topics are often provisioned by operators and clients may lack the ACL to create them.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<()> {
    if let Some(broker) = embedded::lookup(&config.brokers) {
        for t in topics {
            broker.create_topic(&t.name, t.partitions)?;
        }
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.admin_config().create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(-1)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    // Bounded: a broker without the Admin API (the embedded one, seen from another process)
    // never answers, and start-up must not hang on it.
    let created = tokio::time::timeout(Duration::from_secs(6), admin.create_topics(&new, &opts)).await;
    let created =
        created.unwrap_or_else(|_| Err(rdkafka::error::KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)));
    match created {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => tracing::info!(topic = %name, "created topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => {
                        tracing::warn!(topic = %name, error = %code, "could not create topic; relying on broker auto-creation")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "topic creation failed; relying on broker auto-creation"),
    }
    Ok(())
}
