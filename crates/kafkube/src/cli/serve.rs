//! `kafkube serve <service>`: one service per process, as deployed in Kubernetes. The services
//! are the apps' (one subcommand each, from [`APPS`]), all run by the one supervisor.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args, FromArgMatches};
use kafkube_bus::{Cluster, KafkaArgs, ensure_topics};
use kafkube_runtime::{Context, OpsPort, StopMode, Supervisor};
use kafkube_store::DbArgs;

use crate::apps::APPS;

/// `kafkube serve` itself takes no option; each service subcommand takes [`ServeOptions`] and its
/// app's options.
#[derive(Args, Debug)]
pub struct ServeArgs {}

/// Options every service takes.
#[derive(Args, Debug)]
pub struct ServeOptions {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Port of /health, /ready and /metrics for a service without an HTTP API of its own (a
    /// consumer). Default 9090, or a free port when 9090 is taken (several replicas on one
    /// machine; the log says which). Given, it is that port or an error; 0 picks a free port.
    #[arg(long = "ops-port", env = "OPS_PORT", value_name = "PORT")]
    pub ops_port: Option<u16>,
}

/// Adds one subcommand per service of every app to `kafkube serve`.
pub fn augment(serve: clap::Command) -> clap::Command {
    let mut serve = serve.subcommand_required(true).arg_required_else_help(true);
    for app in APPS {
        for info in app.service_infos() {
            let sub = clap::Command::new(info.name).about(info.about);
            serve = serve.subcommand(app.augment_args(ServeOptions::augment_args(sub)));
        }
    }
    serve
}

pub async fn run(matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let (name, m) = matches
        .subcommand()
        .context("name a service: kafkube serve --help lists them")?;
    let app = APPS
        .iter()
        .find(|a| a.service_infos().iter().any(|s| s.name == name))
        .with_context(|| format!("no service named {name}"))?;
    let options = ServeOptions::from_arg_matches(m)?;
    let mut configured = app.configure(m)?;
    let service = configured
        .services
        .drain(..)
        .find(|s| s.info.name == name)
        .with_context(|| format!("no service named {name}"))?;
    let cluster = Cluster::resolve(&options.kafka, false)?;
    ensure_topics(&cluster.config, &configured.topics).await?;
    let ctx = Context::new(cluster.config.clone(), options.db)?;
    let supervisor = Supervisor {
        stop: StopMode::Now,
        ops_port: Some(options.ops_port.map_or(OpsPort::Preferably(9090), OpsPort::Exactly)),
        process_ops_port: None,
    };
    let ok = supervisor
        .run(&ctx, vec![service], |ready| {
            for r in &ready.services {
                tracing::info!(service = r.name, "ready: {}", r.summary);
            }
        })
        .await?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
