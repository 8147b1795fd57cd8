//! `kafkube latency`: the students app's end-to-end latency test.

use std::process::ExitCode;

use clap::Args;
use kafkube_students::latency::{self, LatencyArgs};

#[derive(Args, Debug)]
pub struct LatencyCmd {
    #[command(flatten)]
    pub args: LatencyArgs,
}

pub async fn run(cmd: LatencyCmd) -> anyhow::Result<ExitCode> {
    let report = latency::run(&cmd.args).await?;
    print!("{}", report.table());
    if let Some(path) = &cmd.args.csv {
        println!("raw rows written to {}", path.display());
    }
    if report.failed > 0 || report.missing > 0 {
        eprintln!(
            "FAILED: {} request(s) failed, {} event(s) never reached event_logs",
            report.failed, report.missing
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
