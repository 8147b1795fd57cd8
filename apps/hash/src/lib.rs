//! The hash app (seed `001`, "Rust Microservice dengan Kafka").
//!
//! - [`gateway`]: `POST /hash {"data": "…"}` on port 3001. Each request goes to `hash_requests`
//!   through the core's request/reply ([`kafkube_bus::RpcClient`]) and the reply comes back on
//!   this replica's own partition of `hash_responses`, so any number of gateways can run.
//! - [`processor`]: the consumer group `service_2` on `hash_requests`; an ordinary handler that
//!   returns one reply per request. Scale it out by running more replicas.
//! - [`load`]: `kafkube load hash`, the load generator that checks every hash it gets back.

pub mod config;
pub mod gateway;
pub mod load;
pub mod model;
pub mod processor;

pub use config::HashArgs;
pub use gateway::HashGateway;
pub use processor::HashProcessor;

use kafkube_bus::TopicSpec;
use kafkube_runtime::{App, Database, Service};

/// The hash app, as the binary lists it.
pub struct Hash;

impl App for Hash {
    type Args = HashArgs;

    fn name(&self) -> &'static str {
        "hash"
    }

    fn about(&self) -> &'static str {
        "SHA-256 over Kafka request/reply: gateway and processors (seed 001)"
    }

    fn topics(&self, args: &HashArgs) -> Vec<TopicSpec> {
        topics(args)
    }

    fn databases(&self, _: &HashArgs) -> Vec<Database> {
        Vec::new()
    }

    fn services(&self) -> Vec<Box<dyn Service<HashArgs>>> {
        vec![Box::new(HashGateway), Box::new(HashProcessor)]
    }
}

/// The topics the app needs: requests (with their dead-letter topic) and replies.
pub fn topics(args: &HashArgs) -> Vec<TopicSpec> {
    let mut topics = TopicSpec::with_dlq(args.request_topic.clone(), args.partitions).to_vec();
    topics.push(TopicSpec::new(args.response_topic.clone(), args.partitions));
    topics
}
