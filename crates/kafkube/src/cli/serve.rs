//! `kafkube serve <service>`: one service per process, as deployed in Kubernetes.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafkube_aggregator::{AggregatorArgs, AggregatorService};
use kafkube_bus::{KafkaArgs, KafkaConfig, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_http::{HttpServer, Readiness, finish_router, ops_router};
use kafkube_store::DbArgs;
use kafkube_students::{ApiService, EventLogger, StudentsArgs};
use serde_json::json;
use std::net::SocketAddr;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub service: Service,
}

/// Options every service takes.
#[derive(Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

impl Common {
    fn kafka(&self) -> anyhow::Result<KafkaConfig> {
        let Some(brokers) = &self.kafka.brokers else {
            bail!("no broker given: set KAFKA_BROKERS (or --kafka-brokers). `kafkube up` runs an embedded one.");
        };
        Ok(KafkaConfig::from_args(&self.kafka, brokers.clone())?)
    }
}

#[derive(Subcommand, Debug)]
pub enum Service {
    /// Students REST API on port 3000, with its outbox relay.
    StudentsApi {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        students: StudentsArgs,
    },
    /// Log aggregator on port 8080: `POST /publish` and Kafka ingest, deduplicated.
    Aggregator {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        aggregator: AggregatorArgs,
    },
    /// Event logger: `mahasiswa_events` → `event_logs`. Run several in one group to scale out.
    EventLogger {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        students: StudentsArgs,
        /// Port of the logger's /health, /ready and /metrics (0 picks a free port).
        #[arg(long = "ops-port", env = "OPS_PORT", default_value_t = 9090)]
        ops_port: u16,
    },
}

/// `/health`, `/ready` and `/metrics` for a service that has no HTTP API of its own, so
/// Kubernetes can probe it and Prometheus scrape it.
async fn ops_server(
    port: u16,
    readiness: Readiness,
    shutdown: &Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let router = finish_router(ops_router(json!({"status": "ok"}), readiness), 16 * 1024);
    let server = HttpServer::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    Ok(tokio::spawn(server.serve(router, shutdown.clone())))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    match args.service {
        Service::StudentsApi { common, students } => {
            let kafka = common.kafka()?;
            ensure_topics(&kafka, &kafkube_students::topics(&students)).await?;
            let api = ApiService::build(&students, &common.db, &kafka, &shutdown).await?;
            api.run(shutdown).await?;
        }
        Service::Aggregator { common, aggregator } => {
            let kafka = common.kafka()?;
            ensure_topics(&kafka, &kafkube_aggregator::topics(&aggregator)).await?;
            let svc = AggregatorService::build(&aggregator, &common.db, &kafka, &shutdown).await?;
            svc.run(shutdown.clone(), shutdown, None).await?;
        }
        Service::EventLogger {
            common,
            students,
            ops_port,
        } => {
            let kafka = common.kafka()?;
            ensure_topics(&kafka, &kafkube_students::topics(&students)).await?;
            let logger = EventLogger::build(&students, &common.db, &kafka, &shutdown).await?;
            let ops = ops_server(ops_port, logger.readiness(), &shutdown).await?;
            logger.run(shutdown, None).await?;
            ops.await??;
        }
    }
    Ok(ExitCode::SUCCESS)
}
