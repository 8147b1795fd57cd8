//! `kafkube broker`: only the embedded broker, so `kafkube serve` processes (and any Kafka client)
//! can run as separate processes on one machine, as they would in pods.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kafkube_bus::{Cluster, KafkaArgs, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_core::args::defaults;

use crate::apps::APPS;

#[derive(Args, Debug)]
pub struct BrokerArgs {
    /// Number of brokers in the in-memory cluster (partition leaders are spread over them).
    #[arg(long, env = "KAFKUBE_EMBEDDED_BROKERS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub brokers: i32,

    /// Also write the bootstrap address to this file (for scripts: `KAFKA_BROKERS=$(cat FILE)`).
    /// It is removed on exit.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_file: Option<PathBuf>,
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let cluster =
        Cluster::embedded(&defaults::<KafkaArgs>(), args.brokers).context("cannot start the embedded broker")?;
    let bootstrap = cluster.bootstrap_servers().to_owned();
    // The apps' topics, with the partition counts their options (or environment) ask for:
    // processes in other processes cannot create them with the right counts (no Admin API).
    let mut topics = Vec::new();
    for app in APPS {
        topics.extend(app.configure_defaults()?.topics);
    }
    ensure_topics(&cluster.config, &topics).await?;
    if let Some(path) = &args.bootstrap_file {
        std::fs::write(path, format!("{bootstrap}\n"))
            .with_context(|| format!("cannot write the bootstrap address to {}", path.display()))?;
    }
    println!("Embedded Kafka broker on {bootstrap} (in memory: nothing is kept after exit).");
    println!(
        "Topics: {}.",
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!("Run services against it with KAFKA_BROKERS={bootstrap}.");
    println!("Press Ctrl-C to stop.");
    let stop = Shutdown::new();
    stop.trigger_on_signals();
    stop.cancelled().await;
    if let Some(path) = &args.bootstrap_file {
        let _ = std::fs::remove_file(path);
    }
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}
