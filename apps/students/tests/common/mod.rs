//! Running students services inside a test, on a test broker and test databases.

#![allow(dead_code, clippy::unwrap_used)]

use kafkube_bus::{KafkaConfig, Outgoing, Producer};
use kafkube_students::{EventLogger, StudentsApi, StudentsArgs};
use kafkube_testkit::{Spawned, spawn};
use serde_json::json;

pub fn args(topic: &str, main_url: &str, log_url: &str) -> StudentsArgs {
    StudentsArgs {
        port: 0,
        host: [127, 0, 0, 1].into(),
        db: kafkube_students::config::StudentsDbArgs {
            database_url: main_url.parse().unwrap(),
            log: kafkube_students::config::LogDatabaseArgs {
                url: log_url.parse().unwrap(),
            },
        },
        topic: topic.to_owned(),
        logger_group: kafkube_testkit::unique("logger"),
        ..StudentsArgs::defaults()
    }
}

pub async fn start_api(args: &StudentsArgs, kafka: &KafkaConfig) -> Spawned {
    spawn(StudentsApi, args.clone(), kafka).await.unwrap()
}

pub async fn start_logger(args: &StudentsArgs, kafka: &KafkaConfig, instance: &str) -> Spawned {
    let args = StudentsArgs {
        logger_instance: Some(instance.to_owned()),
        ..args.clone()
    };
    spawn(EventLogger, args, kafka).await.unwrap()
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
