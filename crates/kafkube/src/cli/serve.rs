//! `kafkube serve <service>`: one service per process, as deployed in Kubernetes. The services
//! are the apps' (one subcommand each, from [`APPS`]), all run by the one supervisor.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args, FromArgMatches};
use kafkube_bus::{Cluster, KafkaArgs, ensure_topics};
use kafkube_runtime::{AppEntry, Context, Kind, OpsPort, ServiceInfo, StopMode, Supervisor};
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
        let app_options = app_flags(*app);
        for info in app.service_infos() {
            serve = serve.subcommand(service_command(*app, &info, &app_options));
        }
    }
    serve
}

/// The long flags of an app's options.
fn app_flags(app: &dyn AppEntry) -> Vec<String> {
    app.augment_args(clap::Command::new("app"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// `serve <service>`: every option its app takes is accepted (one configuration can feed every
/// service), but `--help` shows only those the service reads, and `--ops-port` only for a
/// service without an HTTP API of its own.
fn service_command(app: &dyn AppEntry, info: &ServiceInfo, app_options: &[String]) -> clap::Command {
    let sub = app.augment_args(ServeOptions::augment_args(clap::Command::new(info.name)));
    // After the options: clap takes an `Args` struct's doc comment as the command's `about`.
    sub.about(info.about).mut_args(|arg| {
        let long = arg.get_long().unwrap_or_default();
        let unread = app_options.iter().any(|o| o == long) && !info.options.contains(&long);
        let no_ops_port = long == "ops-port" && info.kind == Kind::Intake;
        if unread || no_ops_port { arg.hide(true) } else { arg }
    })
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
        process_ops_routes: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each service's list names options of its app, and every option of an app is read by one
    /// of its services: the lists that decide what `serve <service> --help` shows cannot drift
    /// from the apps' options unnoticed.
    #[test]
    fn every_service_declares_the_options_it_reads() {
        for app in APPS {
            let flags = app_flags(*app);
            let infos = app.service_infos();
            for info in &infos {
                assert!(!info.options.is_empty(), "{} declares no option it reads", info.name);
                for o in info.options {
                    assert!(
                        flags.iter().any(|f| f == o),
                        "{}: no option --{o} in app {}",
                        info.name,
                        app.name()
                    );
                }
            }
            for f in &flags {
                assert!(
                    infos.iter().any(|i| i.options.contains(&f.as_str())),
                    "app {}: no service reads --{f}",
                    app.name()
                );
            }
        }
    }

    fn help(service: &str) -> String {
        let mut cmd = augment(clap::Command::new("serve"));
        cmd.find_subcommand_mut(service)
            .expect(service)
            .render_long_help()
            .to_string()
    }

    #[test]
    fn a_services_help_shows_its_own_options_and_hides_its_apps_others() {
        let logger = help("event-logger");
        for shown in [
            "--log-database-url",
            "--event-logger-group",
            "--students-topic",
            "--ops-port",
            "--kafka-brokers",
        ] {
            assert!(logger.contains(shown), "event-logger --help lacks {shown}:\n{logger}");
        }
        for hidden in ["--students-port", "--database-url <"] {
            assert!(
                !logger.contains(hidden),
                "event-logger --help shows {hidden}:\n{logger}"
            );
        }
        assert!(
            logger.contains("Event logger: `mahasiswa_events`"),
            "about replaced:\n{logger}"
        );

        let api = help("students-api");
        assert!(
            api.contains("--students-port") && !api.contains("--event-logger-group"),
            "{api}"
        );
        assert!(
            !api.contains("--ops-port"),
            "an HTTP service serves its probes on its own port:\n{api}"
        );
    }

    /// A hidden option is still accepted: one ConfigMap with every app variable feeds every service.
    #[test]
    fn a_hidden_option_is_still_accepted() {
        let m = augment(clap::Command::new("serve"))
            .try_get_matches_from(["serve", "event-logger", "--students-port", "3999"])
            .expect("accepted");
        let (_, sub) = m.subcommand().unwrap();
        assert_eq!(sub.get_one::<u16>("port"), Some(&3999));
    }
}
