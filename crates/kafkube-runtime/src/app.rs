//! [`App`]: one value per app; [`AppEntry`]: the same, object-safe, for the binary's list.

use clap::{ArgMatches, FromArgMatches};
use kafkube_bus::TopicSpec;
use kafkube_store::{DatabaseUrl, Migrations};

use crate::service::{BoundService, Service, ServiceInfo};

/// A database an app uses, with the migrations it needs there (`kafkube migrate` applies them).
#[derive(Debug)]
pub struct Database {
    /// What it holds, for people: "students", "event log".
    pub label: &'static str,
    pub url: DatabaseUrl,
    pub migrations: Vec<Migrations>,
}

/// An app: its options, topics, databases and services. Adding an app to Kafkube is a folder
/// under `apps/` with one value implementing this, and one line in the binary's list.
pub trait App: Send + Sync + 'static {
    /// The app's options (flags and environment variables). Their ids and flags must not clash
    /// with another app's: `up` takes every app's options at once.
    type Args: clap::Args + FromArgMatches + Clone + Send + Sync + 'static;

    /// Short name, as in `--help` ("students").
    fn name(&self) -> &'static str;

    /// One line for `--help`.
    fn about(&self) -> &'static str;

    /// Topics the app reads and writes, with their partition counts (dead-letter topics too).
    fn topics(&self, args: &Self::Args) -> Vec<TopicSpec>;

    /// Databases the app uses and their migrations.
    fn databases(&self, args: &Self::Args) -> Vec<Database>;

    /// The app's services, in start order.
    fn services(&self) -> Vec<Box<dyn Service<Self::Args>>>;
}

/// An app with its options parsed.
pub struct Configured {
    pub app: &'static str,
    pub topics: Vec<TopicSpec>,
    pub databases: Vec<Database>,
    pub services: Vec<BoundService>,
}

/// The object-safe view of an [`App`], implemented for every app: what the binary's list holds.
pub trait AppEntry: Send + Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    /// The services' names and descriptions, without parsing any option.
    fn service_infos(&self) -> Vec<ServiceInfo>;
    /// Adds the app's options to a command.
    fn augment_args(&self, cmd: clap::Command) -> clap::Command;
    /// The app with its options read from `matches` (of a command [`augment_args`] extended).
    ///
    /// [`augment_args`]: AppEntry::augment_args
    fn configure(&self, matches: &ArgMatches) -> anyhow::Result<Configured>;

    /// The app with every option at its default or from its environment variable.
    fn configure_defaults(&self) -> anyhow::Result<Configured> {
        let matches = self
            .augment_args(clap::Command::new("kafkube"))
            .try_get_matches_from(["kafkube"])?;
        self.configure(&matches)
    }
}

impl<T: App> AppEntry for T {
    fn name(&self) -> &'static str {
        App::name(self)
    }

    fn about(&self) -> &'static str {
        App::about(self)
    }

    fn service_infos(&self) -> Vec<ServiceInfo> {
        self.services().iter().map(|s| s.info()).collect()
    }

    fn augment_args(&self, cmd: clap::Command) -> clap::Command {
        <T::Args as clap::Args>::augment_args(cmd)
    }

    fn configure(&self, matches: &ArgMatches) -> anyhow::Result<Configured> {
        let args = T::Args::from_arg_matches(matches)?;
        Ok(Configured {
            app: App::name(self),
            topics: self.topics(&args),
            databases: self.databases(&args),
            services: self
                .services()
                .into_iter()
                .map(|s| BoundService::new(s, args.clone()))
                .collect(),
        })
    }
}
