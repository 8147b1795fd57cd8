//! `kafkube bench …`: component benchmarks. They use the embedded broker unless
//! KAFKA_BROKERS is set.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kafkube_bus::{Cluster, KafkaArgs};
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
            let cluster = Cluster::resolve(&kafka, true)?;
            let r = bench::run(&args, &cluster.config).await?;
            println!(
                "event-logger: {} events in {:.2}s = {:.0} events/s (one instance, batch {}, {})",
                r.events,
                r.seconds,
                r.per_second(),
                args.batch,
                args.database_url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
