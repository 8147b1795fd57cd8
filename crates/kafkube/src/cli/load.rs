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
    Aggregator(LoadArgs),
}

pub async fn run(cmd: LoadCmd) -> anyhow::Result<ExitCode> {
    match cmd.target {
        Target::Aggregator(args) => {
            let report = load::run(&args).await?;
            print!("{}", report.text);
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
