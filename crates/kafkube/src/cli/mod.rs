//! The command line: one file per subcommand.

mod bench;
mod broker;
#[cfg(test)]
mod deploy_check;
mod latency;
mod load;
mod migrate;
mod serve;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kafkube_core::telemetry::LogFormat;

pub const DEFAULT_LOG_FILTER: &str = "info,librdkafka=warn,rdkafka=warn,sqlx=warn";

#[derive(Parser, Debug)]
#[command(
    name = "kafkube",
    version,
    about = "Event-driven microservices on Kafka, in one binary",
    long_about = "Event-driven microservices on Kafka, in one binary.\n\n\
        `kafkube up` runs every service on this machine with an embedded Kafka-protocol broker and \
        SQLite files under ./data; `kafkube serve <service>` runs one service against a real Kafka \
        cluster and PostgreSQL, as in a Kubernetes pod. Every option can also be set through the \
        environment variable shown in its help.",
    after_help = "Log verbosity: RUST_LOG (for example RUST_LOG=debug or RUST_LOG=info,kafkube_bus=debug)."
)]
pub struct Cli {
    /// Log format: `text` for people, `json` for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every service in this process, with the embedded broker unless KAFKA_BROKERS is set.
    Up(Box<up::UpArgs>),
    /// Run one service against an existing broker and database (one per pod).
    Serve(serve::ServeArgs),
    /// Run only the embedded broker, with the apps' topics, for `serve` processes on this machine.
    Broker(broker::BrokerArgs),
    /// Apply the database migrations and exit (services also migrate at start).
    Migrate(migrate::MigrateArgs),
    /// Students app: measure the latency from API write to `event_logs` row.
    Latency(latency::LatencyCmd),
    /// Load generators against running services (progress bar, throughput, latency percentiles).
    Load(load::LoadCmd),
    /// Benchmarks of single components.
    Bench(bench::BenchArgs),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Up(a) => up::run(*a).await,
            Self::Serve(a) => serve::run(a).await,
            Self::Broker(a) => broker::run(a).await,
            Self::Migrate(a) => migrate::run(a).await,
            Self::Latency(a) => latency::run(a).await,
            Self::Load(a) => load::run(a).await,
            Self::Bench(a) => bench::run(a).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (unique argument ids across flattened option structs, …).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
