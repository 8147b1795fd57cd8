//! `kafkube serve <service>`: one service per process, as deployed in Kubernetes.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kafkube_aggregator::{AggregatorArgs, AggregatorService};
use kafkube_bus::{KafkaArgs, KafkaConfig, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_hash::{GatewayService, HashArgs, HashProcessor};
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
        kafka_config(&self.kafka)
    }
}

/// The broker a `serve` command talks to: it must be given (only `up` embeds one).
fn kafka_config(args: &KafkaArgs) -> anyhow::Result<KafkaConfig> {
    let Some(brokers) = &args.brokers else {
        bail!("no broker given: set KAFKA_BROKERS (or --kafka-brokers). `kafkube up` runs an embedded one.");
    };
    Ok(KafkaConfig::from_args(args, brokers.clone())?)
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
    /// Hash gateway on port 3001: `POST /hash` answered over Kafka request/reply. Run several;
    /// each reads its own partitions of the reply topic.
    HashGateway {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        hash: HashArgs,
    },
    /// Hash processor: group `service_2` on `hash_requests`, one reply per request. Run several
    /// to scale out.
    HashProcessor {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        hash: HashArgs,
        /// Port of the processor's /health, /ready and /metrics (0 picks a free port).
        #[arg(long = "ops-port", env = "OPS_PORT", default_value_t = 9090)]
        ops_port: u16,
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
        Service::HashGateway { kafka, hash } => {
            let kafka = kafka_config(&kafka)?;
            ensure_topics(&kafka, &kafkube_hash::topics(&hash)).await?;
            let gateway = GatewayService::build(&hash, &kafka)
                .await
                .with_context(|| format!("hash gateway (port {}; change it with SERVICE_1_PORT)", hash.port))?;
            gateway.run(shutdown).await?;
        }
        Service::HashProcessor { kafka, hash, ops_port } => {
            let kafka = kafka_config(&kafka)?;
            ensure_topics(&kafka, &kafkube_hash::topics(&hash)).await?;
            let processor = HashProcessor::build(&hash, &kafka)?;
            let ops = ops_server(ops_port, processor.readiness(), &shutdown).await?;
            processor.run(shutdown, None).await?;
            ops.await??;
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
