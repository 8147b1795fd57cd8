//! `kafkube serve <service>`: one service per process, as deployed in Kubernetes.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafkube_bus::{KafkaArgs, KafkaConfig, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_store::DbArgs;
use kafkube_students::{ApiService, EventLogger, StudentsArgs};

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
    /// Event logger: `mahasiswa_events` → `event_logs`. Run several in one group to scale out.
    EventLogger {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        students: StudentsArgs,
    },
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
        Service::EventLogger { common, students } => {
            let kafka = common.kafka()?;
            ensure_topics(&kafka, &kafkube_students::topics(&students)).await?;
            let logger = EventLogger::build(&students, &common.db, &kafka, &shutdown).await?;
            logger.run(shutdown, None).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
