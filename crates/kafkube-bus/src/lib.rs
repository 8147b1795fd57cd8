//! Kafkube's message bus, on `rdkafka` (librdkafka).
//!
//! - [`KafkaConfig`]: bootstrap servers and librdkafka pass-through options, from flags/env.
//! - [`Producer`]: the idempotent producer (`acks=all`) every app publishes through.
//! - [`ConsumerRunner`]: the one consumer loop. Apps write a [`Handler`]; the runner owns
//!   batching, retry with backoff, the dead-letter topic, offset storage after the effect, and
//!   graceful shutdown / drain.
//! - [`RpcClient`] and [`rpc::reply`]: request/reply with replies routed to the replica that asked.
//! - [`EmbeddedBroker`]: librdkafka's in-memory mock cluster, the broker of `kafkube up`.
//! - [`ensure_topics`]: topic provisioning that works on both.
//! - [`dlq`]: reading dead-letter topics and replaying their records, once each.
//!
//! Nothing here, and nothing that uses it, knows which kind of broker it talks to, apart from
//! [`ensure_topics`], which must (the mock cluster has no Admin API).

pub mod config;
pub mod consumer;
pub mod dlq;
pub mod embedded;
pub mod error;
pub mod headers;
pub mod link;
pub mod probe;
pub mod producer;
pub mod rpc;
pub mod topics;

pub use config::{Cluster, KafkaArgs, KafkaConfig, KafkaSecurityArgs, SaslMechanism, SecurityProtocol};
pub use consumer::{BatchOutput, ConsumerRunner, ConsumerSettings, Handler, HandlerError, Record};
pub use embedded::EmbeddedBroker;
pub use error::{BusError, Result};
pub use headers::{Header, HeaderMap};
pub use link::Link;
pub use probe::{Probe, probe};
pub use producer::{Delivery, Outgoing, Producer};
pub use rpc::{ReplyListener, RpcClient, RpcError, RpcSettings};
pub use topics::{TopicOffsets, TopicReader, TopicSpec, ensure_topics};
