//! `kafkube bench …`: component benchmarks. They use the embedded broker unless
//! KAFKA_BROKERS is set.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kafkube_bus::{EmbeddedBroker, KafkaArgs, KafkaConfig};
use kafkube_students::bench::{self, LoggerBenchArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Bench,
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Events per second one event-logger instance writes to `event_logs`.
    EventLogger {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        args: LoggerBenchArgs,
    },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        Bench::EventLogger { kafka, args } => {
            let embedded = match &kafka.brokers {
                Some(_) => None,
                None => Some(EmbeddedBroker::start(1)?),
            };
            let brokers = kafka
                .brokers
                .clone()
                .or_else(|| embedded.as_ref().map(|e| e.bootstrap_servers().to_owned()))
                .unwrap_or_default();
            let config = KafkaConfig::from_args(&kafka, brokers)?;
            let r = bench::run(&args, &config).await?;
            println!(
                "event-logger: {} events in {:.2}s = {:.0} events/s (one instance, batch {}, {})",
                r.events,
                r.seconds,
                r.per_second(),
                args.batch,
                kafkube_store::db::redact(&args.log_database_url)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
