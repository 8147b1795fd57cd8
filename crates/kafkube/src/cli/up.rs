//! `kafkube up`: every service of every app in one process, on one laptop.
//!
//! Starts the embedded broker when no `KAFKA_BROKERS` is given, creates the apps' topics, and
//! hands every service to the supervisor, which says "up" once each one is ready and on Ctrl-C
//! drains in order: intake stops, the outboxes flush, the consumers catch up, then the broker
//! stops. A second Ctrl-C stops at once.

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, Args};
use kafkube_bus::{Cluster, KafkaArgs, ensure_topics};
use kafkube_runtime::{Context, OpsPort, StopMode, Supervisor, base_url};
use kafkube_store::DbArgs;

use crate::apps::APPS;

/// `up`'s own options; every app's options are added to the command from [`APPS`].
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub db: DbArgs,

    /// How long Ctrl-C waits for consumers to handle what the broker holds. Unset: as long as it
    /// takes (each consumer says every 5 s what it waits for; a second Ctrl-C stops at once).
    /// Records left unhandled either way are counted, and the exit status is 1: the embedded
    /// broker keeps nothing.
    #[arg(long, env = "KAFKUBE_DRAIN_TIMEOUT_SECS", value_name = "SECS")]
    pub drain_timeout_secs: Option<u64>,

    /// Port of `/ready` for the whole process: every service's checks, consumers included (a
    /// 503 names the failing `service/check`), with `/health` and `/metrics`. Unset: 9090, or a
    /// free port when 9090 is taken (the banner says which); 0: any free port.
    #[arg(long, env = "OPS_PORT", value_name = "PORT")]
    pub ops_port: Option<u16>,
}

/// Adds every app's options to `kafkube up`.
pub fn augment(up: clap::Command) -> clap::Command {
    APPS.iter().fold(up, |cmd, app| app.augment_args(cmd))
}

pub async fn run(args: UpArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    let mut topics = Vec::new();
    let mut services = Vec::new();
    for app in APPS {
        let c = app.configure(matches)?;
        topics.extend(c.topics);
        services.extend(c.services);
    }
    let cluster = Cluster::resolve(&args.kafka, true)?;
    ensure_topics(&cluster.config, &topics).await?;
    let ctx = Context::new(cluster.config.clone(), args.db)?;
    let console = super::console::Console::new(cluster.config.clone())?;
    let supervisor = Supervisor {
        stop: StopMode::Drain(args.drain_timeout_secs.map(Duration::from_secs)),
        ops_port: None,
        process_ops_port: Some(args.ops_port.map_or(OpsPort::Preferably(9090), OpsPort::Exactly)),
        process_ops_routes: Some(super::console::router(console.clone())),
    };
    let mut written = None;
    let ok = supervisor
        .run(&ctx, services, |ready| {
            // For commands run beside it (`kafkube dlq`): where its Kafka is.
            let instance = super::instance::Instance {
                kafka: cluster.bootstrap_servers().to_owned(),
                pid: std::process::id(),
                ready: ready.process_ops.map(|ops| format!("{}/ready", base_url(ops))),
            };
            match super::instance::write(&instance) {
                Ok(w) => written = Some(w),
                Err(e) => tracing::warn!("{e:#}"),
            }
            let mut banner = if cluster.is_embedded() {
                format!(
                    "kafkube is up. Embedded Kafka broker on {} (in memory: drained on Ctrl-C, nothing is kept after exit).\n",
                    cluster.bootstrap_servers()
                )
            } else {
                format!("kafkube is up. Kafka: {}.\n", cluster.bootstrap_servers())
            };
            let width = ready.services.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in &ready.services {
                banner.push_str(&format!("  {:<width$} {}\n", r.name, r.summary));
            }
            if let Some(ops) = ready.process_ops {
                console.watch(vec![base_url(ops)]);
                banner.push_str(&format!(
                    "Every service's readiness: {}/ready (and /metrics)\nConsole: {}/console (or `kafkube status` here)\n",
                    base_url(ops),
                    base_url(ops)
                ));
            }
            banner.push_str("Press Ctrl-C to drain and stop.");
            say(&banner);
        })
        .await?;
    // The clients are gone (every service has returned, the console is closed); the broker goes
    // last.
    drop(written);
    drop(supervisor); // its console routes hold a clone of the console
    console.close();
    drop(ctx);
    drop(cluster);
    say("kafkube stopped.");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints a line to stdout; a reader that has gone away (`kafkube up | head`) is not an error.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
