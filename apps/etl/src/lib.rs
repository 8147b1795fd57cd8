//! The ETL app (seed `002`, "PemateriKafka"): the seed's Python transform and MySQL sink, in Rust.
//!
//! - [`cdc`]: reads a MySQL/MariaDB binlog as a replica and publishes each row change as
//!   Maxwell's JSON (to `raw_orders` by default), storing its position after Kafka acknowledged.
//! - [`transform`]: group `etl-workers` on `raw_orders` → `enriched_orders`: plain orders or
//!   Maxwell change records, enriched with `flag`, `sync_at`, an exact `total_value` and an `id`;
//!   a schema guard sends bad records to `raw_orders.dlq`.
//! - [`sink`]: group `sink-mysql-workers` on `enriched_orders` → table `orders` in MySQL/MariaDB,
//!   PostgreSQL or SQLite, one upsert per batch, offsets after the commit, older changes never
//!   overwrite newer ones, a delete deletes.
//! - [`webhook`]: group `etl-webhook` → POSTs to `WEBHOOK_URL` (what the seed uses n8n for),
//!   retried until delivered, an idempotency key per change, refused records dead-lettered.
//! - [`load`]: `kafkube load etl`, row changes at a source and the commit → sink-row latency.
//! - [`order`]: the record formats and the enrichment, shared by both.

pub mod cdc;
pub mod config;
pub mod load;
pub mod order;
pub mod sink;
pub mod transform;
pub mod webhook;

pub use cdc::CdcService;
pub use config::EtlArgs;
pub use sink::Sink;
pub use transform::Transform;
pub use webhook::WebhookService;

use kafkube_bus::TopicSpec;
use kafkube_runtime::{App, Database, Service};

/// The ETL app, as the binary lists it.
pub struct Etl;

impl App for Etl {
    type Args = EtlArgs;

    fn name(&self) -> &'static str {
        "etl"
    }

    fn about(&self) -> &'static str {
        "ETL pipeline: transform raw_orders → enriched_orders, sink → orders in MySQL/PostgreSQL/SQLite (seed 002)"
    }

    fn topics(&self, args: &EtlArgs) -> Vec<TopicSpec> {
        topics(args)
    }

    /// The CDC's state database (its binlog position). The sink creates its own table (its name
    /// is an option), so that is not a migration.
    fn databases(&self, args: &EtlArgs) -> Vec<Database> {
        vec![Database {
            label: "etl-cdc state",
            url: args.cdc.state_url.clone(),
            migrations: vec![cdc::migrations()],
        }]
    }

    fn services(&self) -> Vec<Box<dyn Service<EtlArgs>>> {
        vec![
            Box::new(CdcService),
            Box::new(Transform),
            Box::new(Sink),
            Box::new(WebhookService),
        ]
    }
}

/// The topics the app needs: each source with its dead-letter topic, the target and the sink's.
pub fn topics(args: &EtlArgs) -> Vec<TopicSpec> {
    let mut topics = Vec::new();
    let sink = args.sink_topic();
    let webhook = args.webhook.topic.clone().unwrap_or_else(|| sink.clone());
    for t in args.source_topics.iter().chain([&args.target_topic, &sink, &webhook]) {
        if !topics.iter().any(|s: &TopicSpec| &s.name == t) {
            topics.extend(TopicSpec::with_dlq(t.clone(), args.partitions));
        }
    }
    topics
}
