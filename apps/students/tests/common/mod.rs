//! Running students services inside a test, on a test broker and test databases.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use kafkube_bus::{KafkaConfig, Outgoing, Producer};
use kafkube_core::Shutdown;
use kafkube_store::DbArgs;
use kafkube_students::{ApiService, EventLogger, StudentsArgs};
use serde_json::json;
use tokio::task::JoinHandle;

pub fn args(topic: &str, main_url: &str, log_url: &str) -> StudentsArgs {
    StudentsArgs {
        port: 0,
        host: [127, 0, 0, 1].into(),
        db: kafkube_students::config::StudentsDbArgs {
            database_url: main_url.to_owned(),
            log_database_url: log_url.to_owned(),
        },
        topic: topic.to_owned(),
        logger_group: kafkube_testkit::unique("logger"),
        ..StudentsArgs::defaults()
    }
}

/// A service running in the background until `stop`.
pub struct Running {
    pub addr: Option<SocketAddr>,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }
}

pub async fn start_api(args: &StudentsArgs, kafka: &KafkaConfig) -> Running {
    let shutdown = Shutdown::new();
    let api = ApiService::build(args, &DbArgs::default(), kafka, &shutdown)
        .await
        .unwrap();
    let addr = api.local_addr();
    let task = tokio::spawn(api.run(shutdown.clone()));
    Running {
        addr: Some(addr),
        shutdown,
        task,
    }
}

pub async fn start_logger(args: &StudentsArgs, kafka: &KafkaConfig, instance: &str) -> Running {
    let shutdown = Shutdown::new();
    let args = StudentsArgs {
        logger_instance: Some(instance.to_owned()),
        ..args.clone()
    };
    let logger = EventLogger::build(&args, &DbArgs::default(), kafka, &shutdown)
        .await
        .unwrap();
    let task = tokio::spawn(logger.run(shutdown.clone(), None));
    Running {
        addr: None,
        shutdown,
        task,
    }
}

/// A well-formed `mahasiswa_events` record.
pub fn event(id: &str, key: &str) -> Outgoing {
    let payload = json!({
        "eventId": id,
        "eventType": "MAHASISWA_CREATED",
        "timestamp_api_sent": kafkube_core::time::now_epoch_ms(),
        "data": {"id": 1, "nim": id, "nama": "Test"},
    });
    Outgoing::new("", Some(key), payload.to_string())
}

pub async fn produce(kafka: &KafkaConfig, topic: &str, mut msgs: Vec<Outgoing>) {
    for m in &mut msgs {
        m.topic = topic.to_owned();
    }
    let producer = Producer::new(kafka).unwrap();
    for chunk in msgs.chunks(1000) {
        for r in producer.send_all(chunk).await {
            r.unwrap();
        }
    }
}
