//! [`Context`]: what the supervisor hands every service it starts.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use kafkube_bus::{ConsumerRunner, ConsumerSettings, Handler, KafkaConfig, Producer};
use kafkube_core::Shutdown;
use kafkube_http::{HttpServer, Readiness};
use kafkube_store::{DatabaseUrl, Db, DbArgs, Migrations};

/// The stop signals, in the order they trip.
#[derive(Clone, Debug, Default)]
pub struct Stops {
    /// First signal: HTTP servers stop taking requests and finish the ones in flight.
    pub intake: Shutdown,
    /// After intake has stopped (and the outboxes flushed), in `up` only: consumers stop once
    /// every assigned partition is caught up.
    pub drain: Shutdown,
    /// Everything stops now: consumers finish the batch in hand, commit and leave their group.
    /// Trips after intake in `serve`, at the drain timeout or on a second signal in `up`.
    pub hard: Shutdown,
}

impl Stops {
    /// Trips every signal: for tests and for a start that failed half-way.
    pub fn all(&self) {
        self.intake.trigger();
        self.drain.trigger();
        self.hard.trigger();
    }
}

/// Shared by every service of a process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Context {
    pub kafka: KafkaConfig,
    /// The process's one producer (one librdkafka instance, its threads and connections).
    pub producer: Producer,
    /// Pool options for every database a service opens.
    pub db: DbArgs,
    pub stops: Stops,
}

impl Context {
    /// A context with a new producer for `kafka` and fresh stop signals.
    pub fn new(kafka: KafkaConfig, db: DbArgs) -> anyhow::Result<Self> {
        let producer = Producer::new(&kafka).context("cannot create the Kafka producer")?;
        Ok(Self {
            kafka,
            producer,
            db,
            stops: Stops::default(),
        })
    }

    /// Connects to `url` (waiting while the database is unreachable, until the first stop
    /// signal) and applies `migrations`.
    pub async fn open_db(&self, url: &DatabaseUrl, migrations: &[Migrations]) -> anyhow::Result<Db> {
        Db::open(url, &self.db, &self.stops.intake, migrations)
            .await
            .with_context(|| format!("database {url}"))
    }

    /// Binds an HTTP listener (port 0 picks a free port).
    pub async fn bind(&self, addr: SocketAddr) -> anyhow::Result<HttpServer> {
        HttpServer::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    }

    /// Serves `router` on `server` until intake stops; in-flight requests finish first.
    pub fn serve(&self, server: HttpServer, router: Router) -> impl Future<Output = anyhow::Result<()>> + use<> {
        let stop = self.stops.intake.clone();
        async move { Ok(server.serve(router, stop).await?) }
    }

    /// A consumer of `settings.topics` in `settings.group_id`, publishing through the shared
    /// producer.
    pub fn consumer<H: Handler>(&self, settings: ConsumerSettings, handler: H) -> anyhow::Result<ConsumerRunner<H>> {
        let group = settings.group_id.clone();
        ConsumerRunner::new(&self.kafka, self.producer.clone(), settings, handler)
            .with_context(|| format!("cannot create the consumer of group {group}"))
    }

    /// Runs `runner` until [`Stops::hard`], or until caught up after [`Stops::drain`].
    pub fn run_consumer<H: Handler>(
        &self,
        runner: ConsumerRunner<H>,
    ) -> impl Future<Output = anyhow::Result<()>> + use<H> {
        let (hard, drain) = (self.stops.hard.clone(), self.stops.drain.clone());
        let group = runner.group().to_owned();
        async move {
            let stats = runner.run_until_drained(hard, drain).await?;
            // Only a drain cut short leaves records (a plain stop leaves them to the broker and
            // the group's next member, and says nothing).
            anyhow::ensure!(
                stats.left == 0,
                "stopped with {} record(s) of group {group} not handled (the embedded broker keeps nothing: \
                 they are lost; on a real Kafka the group resumes with them)",
                stats.left
            );
            Ok(())
        }
    }

    /// Readiness with the broker check every service has.
    pub fn readiness(&self) -> Readiness {
        Readiness::new().kafka(self.producer.clone())
    }
}
