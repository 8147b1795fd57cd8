//! The log aggregator app (seed `003`, "Pub-Sub Log Aggregator").
//!
//! Events `{topic, event_id, timestamp, source, payload}` arrive over HTTP (`POST /publish`, port
//! 8080) and from Kafka (a consumer group on a topic list); both paths go through one
//! [`store::ingest`], which deduplicates on `(topic, event_id)` with the database's unique
//! constraint and updates the counters in the same statement/transaction, so
//! `received == unique_processed + duplicate_dropped` holds under concurrency, across replicas
//! and through restarts.

pub mod api;
pub mod config;
pub mod consumer;
pub mod model;
pub mod openapi;
pub mod store;

pub use api::AggregatorService;
pub use config::AggregatorArgs;

use kafkube_bus::TopicSpec;
use kafkube_runtime::{App, Database, Service};
use kafkube_store::Migrations;

/// The log aggregator app, as the binary lists it.
pub struct Aggregator;

impl App for Aggregator {
    type Args = AggregatorArgs;

    fn name(&self) -> &'static str {
        "aggregator"
    }

    fn about(&self) -> &'static str {
        "idempotent pub-sub log aggregator: HTTP and Kafka ingest, deduplicated (seed 003)"
    }

    fn topics(&self, args: &AggregatorArgs) -> Vec<TopicSpec> {
        topics(args)
    }

    fn databases(&self, args: &AggregatorArgs) -> Vec<Database> {
        vec![Database {
            label: "aggregator",
            url: args.database_url.clone(),
            migrations: vec![migrations()],
        }]
    }

    fn services(&self) -> Vec<Box<dyn Service<AggregatorArgs>>> {
        vec![Box::new(AggregatorService)]
    }
}

pub fn migrations() -> Migrations {
    Migrations {
        name: "aggregator",
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}

/// The topics the Kafka ingest consumes (and their dead-letter topics).
pub fn topics(args: &AggregatorArgs) -> Vec<TopicSpec> {
    args.kafka_topics
        .iter()
        .flat_map(|t| TopicSpec::with_dlq(t.clone(), 4))
        .collect()
}
pub mod load;
