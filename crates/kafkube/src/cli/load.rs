//! `kafkube load …`: load generators against running services.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kafkube_aggregator::load::{self, LoadArgs};

#[derive(Args, Debug)]
pub struct LoadCmd {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum Target {
    /// The log aggregator's publisher simulator: batches with repeats, then checks the counts.
    Aggregator(Box<LoadArgs>),
    /// The hash gateway: random data over many connections, every hash checked locally.
    Hash(kafkube_hash::load::LoadArgs),
    /// The ETL pipeline: row changes at the MySQL/MariaDB source that etl-cdc reads, then the
    /// source commit → sink row latency, the throughput, and a check that sink = source.
    Etl(Box<kafkube_etl::load::LoadArgs>),
    /// The restaurants app: orders at a rate or flat out, then the order → e-mail latency, the
    /// throughput, and a check that every order ended once and every paid order was mailed.
    Restaurants(Box<kafkube_restaurants::load::LoadArgs>),
}

pub async fn run(cmd: LoadCmd) -> anyhow::Result<ExitCode> {
    let (text, ok) = match cmd.target {
        Target::Aggregator(args) => {
            let r = load::run(&args).await?;
            (r.text, r.ok)
        }
        Target::Hash(args) => {
            let r = kafkube_hash::load::run(&args).await?;
            (r.text, r.ok)
        }
        Target::Etl(args) => {
            let r = kafkube_etl::load::run(&args).await?;
            (r.text, r.ok)
        }
        Target::Restaurants(args) => {
            let r = kafkube_restaurants::load::run(&args).await?;
            (r.text, r.ok)
        }
    };
    print!("{text}");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
