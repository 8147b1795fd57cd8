//! The command line: one file per subcommand.

mod activity;
mod bench;
mod broker;
mod console;
#[cfg(test)]
mod deploy_check;
mod dlq;
mod instance;
mod latency;
mod load;
mod migrate;
mod serve;
mod status;
mod up;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, Parser, Subcommand};
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
    /// Run every service of every app in this process, with the embedded broker unless
    /// KAFKA_BROKERS is set.
    Up(Box<up::UpArgs>),
    /// Run one service against an existing broker and database (one per pod).
    Serve(serve::ServeArgs),
    /// Run only the embedded broker, with the apps' topics, for `serve` processes on this machine.
    Broker(broker::BrokerArgs),
    /// Apply every app's database migrations and exit (services also migrate at start).
    Migrate(migrate::MigrateArgs),
    /// Students app: measure the latency from API write to `event_logs` row.
    Latency(latency::LatencyCmd),
    /// Load generators against running services (progress bar, throughput, latency percentiles).
    Load(load::LoadCmd),
    /// Benchmarks of single components.
    Bench(bench::BenchArgs),
    /// Dead letters: list a topic's, show one, replay them to their topic once the cause is
    /// fixed (each once). Beside a running `kafkube up` no option is needed.
    Dlq(dlq::DlqCmd),
    /// One table of everything: services' readiness, consumer groups' lag per partition, topics
    /// with their records and dead letters (`--watch` to follow, `--json` for scripts). Beside a
    /// running `kafkube up` no option is needed.
    Status(status::StatusArgs),
    /// The console: the same as `status` on a live web page, with dead letters and replay
    /// buttons (`kafkube up` serves it at /console on its ops port).
    Console(console::ConsoleArgs),
    /// Restaurants app: replace the restaurant list in the orders database (the seed's list, or
    /// a JSON file's), e.g. after editing it; running services see it at once.
    ImportRestaurants(kafkube_restaurants::store::ImportArgs),
}

/// The whole command line: the derived commands, with every app's options and services added
/// from [`APPS`](crate::apps::APPS).
pub fn command() -> clap::Command {
    Cli::command()
        .after_long_help(format!(
            "{}\nLog verbosity: RUST_LOG (for example RUST_LOG=debug or RUST_LOG=info,kafkube_bus=debug).",
            crate::apps::overview()
        ))
        .mut_subcommand("up", up::augment)
        .mut_subcommand("serve", serve::augment)
        .mut_subcommand("migrate", migrate::augment)
}

impl Command {
    /// Runs the command; `matches` are the whole command line's (apps read their options there).
    pub async fn run(self, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
        let sub = |name: &str| matches.subcommand_matches(name).cloned().unwrap_or_default();
        match self {
            Self::Up(a) => up::run(*a, &sub("up")).await,
            Self::Serve(_) => serve::run(&sub("serve")).await,
            Self::Broker(a) => broker::run(a).await,
            Self::Migrate(a) => migrate::run(a, &sub("migrate")).await,
            Self::Latency(a) => latency::run(a).await,
            Self::Load(a) => load::run(a).await,
            Self::Bench(a) => bench::run(a).await,
            Self::Dlq(a) => dlq::run(a).await,
            Self::Status(a) => status::run(a).await,
            Self::Console(a) => console::run(a).await,
            Self::ImportRestaurants(a) => {
                println!("{}", kafkube_restaurants::store::import(&a).await?);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique argument ids across flattened option structs, …).
    #[test]
    fn the_command_line_is_consistent() {
        super::command().debug_assert();
    }
}
