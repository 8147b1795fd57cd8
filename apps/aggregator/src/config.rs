//! Options of the log aggregator.

use std::net::IpAddr;

use clap::Args;
use kafkube_store::DatabaseUrl;

#[derive(Args, Clone, Debug)]
pub struct AggregatorArgs {
    /// Port of the aggregator API.
    #[arg(
        id = "aggregator-port",
        long = "aggregator-port",
        env = "AGGREGATOR_PORT",
        default_value_t = 8080
    )]
    pub port: u16,

    /// Address the aggregator API binds to.
    #[arg(
        id = "aggregator-host",
        long = "aggregator-host",
        env = "AGGREGATOR_HOST",
        default_value = "0.0.0.0"
    )]
    pub host: IpAddr,

    /// The aggregator's database: `sqlite:PATH` or `postgres://…`.
    #[arg(
        id = "aggregator-database-url",
        long = "aggregator-database-url",
        env = "AGGREGATOR_DATABASE_URL",
        default_value = "sqlite:data/aggregator.db"
    )]
    pub database_url: DatabaseUrl,

    /// Kafka topics whose records are ingested like `POST /publish` bodies (comma-separated).
    #[arg(
        id = "aggregator-topics",
        long = "aggregator-topics",
        env = "AGGREGATOR_TOPICS",
        default_value = "logs",
        value_delimiter = ','
    )]
    pub kafka_topics: Vec<String>,

    /// Consumer group of the Kafka ingest.
    #[arg(
        id = "aggregator-group",
        long = "aggregator-group",
        env = "AGGREGATOR_GROUP_ID",
        default_value = "aggregator"
    )]
    pub group: String,

    /// Largest batch of Kafka records ingested in one statement.
    #[arg(
        id = "aggregator-batch",
        long = "aggregator-batch",
        env = "AGGREGATOR_BATCH",
        default_value_t = 1000
    )]
    pub batch: usize,

    /// Consumers of the Kafka ingest in this process, members of one group: each takes some of
    /// the topics' partitions and inserts its batches while the others insert theirs. More than
    /// the topics' partition count leaves the rest idle. On a 2-core machine with PostgreSQL and a
    /// real Kafka, 2 took the ingest from 60k–74k to 80k–95k events/s (BENCHMARKS.md).
    #[arg(
        id = "aggregator-consumers",
        long = "aggregator-consumers",
        env = "AGGREGATOR_CONSUMERS",
        value_name = "N",
        default_value_t = 2
    )]
    pub consumers: usize,

    /// Writer tasks that store `POST /publish` bodies; each merges the requests waiting for it
    /// into one statement. More writers run more statements at once; on a 2-core machine with
    /// PostgreSQL, 2 gave the best throughput and tail latency (events/s, p99 at concurrency 50:
    /// 1 writer 155k–167k, 40–44 ms; 2: 167k–178k, 39–46 ms; 4: 160k–162k, 60–69 ms; 8: 160k, 105 ms).
    #[arg(
        id = "aggregator-writers",
        long = "aggregator-writers",
        env = "AGGREGATOR_WRITERS",
        value_name = "N",
        default_value_t = 2
    )]
    pub writers: usize,

    /// Largest number of events one `POST /publish` body or Kafka record may carry (seed 003 sets
    /// no limit; its clients send batches of thousands).
    #[arg(
        id = "aggregator-max-events",
        long = "aggregator-max-events",
        env = "AGGREGATOR_MAX_EVENTS",
        default_value_t = 100_000
    )]
    pub max_events: usize,

    /// Largest `POST /publish` body, in MiB (a 100,000-event batch of typical events is ~20 MiB).
    #[arg(
        id = "aggregator-max-body-mib",
        long = "aggregator-max-body-mib",
        env = "AGGREGATOR_MAX_BODY_MIB",
        default_value_t = 32
    )]
    pub max_body_mib: usize,
}

impl AggregatorArgs {
    /// Defaults, as if no flag were given (tests start from this).
    pub fn defaults() -> Self {
        kafkube_core::args::defaults()
    }
}
