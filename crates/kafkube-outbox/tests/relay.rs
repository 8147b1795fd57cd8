//! The outbox relay against a real broker, on SQLite and PostgreSQL: what commits is published
//! exactly once and in order per key; what rolls back never is; on PostgreSQL, two relays on one
//! database (two API replicas) neither duplicate nor reorder.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use kafkube_bus::{Outgoing, Producer};
use kafkube_core::Shutdown;
use kafkube_outbox::{Relay, enqueue, migrations};
use kafkube_testkit::{Backend, TestDb, TestKafka, backend_tests, eventually};

const KEYS: usize = 8;
const PER_KEY: usize = 60;

async fn committed_events_are_published_once_in_key_order(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("outbox", 4).await;
    let db = TestDb::new(backend).await;
    db.db.migrate(&migrations()).await.unwrap();
    let producer = Producer::new(&kafka.config()).unwrap();
    let relays = if backend == Backend::Postgres { 2 } else { 1 };
    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    let mut notifiers = Vec::new();
    for _ in 0..relays {
        let relay = Relay::new(db.db.clone(), producer.clone());
        notifiers.push(relay.notifier());
        tasks.push(tokio::spawn(relay.run(shutdown.clone())));
    }

    // Writers for different keys run concurrently; each key's events commit in sequence.
    let writers = (0..KEYS).map(|k| {
        let (db, topic, notifiers) = (db.db.clone(), topic.clone(), notifiers.clone());
        async move {
            for seq in 0..PER_KEY {
                if seq % 10 == 9 {
                    // A rolled-back write: its event must never appear.
                    let mut tx = db.begin().await.unwrap();
                    enqueue(&mut tx, &Outgoing::new(&topic, Some(format!("key-{k}")), "rolled-back"))
                        .await
                        .unwrap();
                    drop(tx);
                }
                let mut tx = db.begin().await.unwrap();
                let msg = Outgoing::new(&topic, Some(format!("key-{k}")), format!("{k}:{seq}"));
                enqueue(&mut tx, &msg).await.unwrap();
                tx.commit().await.unwrap();
                notifiers[seq % notifiers.len()].notify();
            }
        }
    });
    futures::future::join_all(writers).await;

    let total = KEYS * PER_KEY;
    let records = kafka.read_exact(&topic, total, Duration::from_secs(20)).await;
    assert_eq!(records.len(), total, "every committed event once, nothing else");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for r in &records {
        let text = String::from_utf8(r.payload.clone()).unwrap();
        assert_ne!(text, "rolled-back");
        let (k, seq) = text.split_once(':').unwrap();
        let seq: i64 = seq.parse().unwrap();
        let prev = last.insert(k.to_owned(), seq).unwrap_or(-1);
        assert_eq!(seq, prev + 1, "key {k}: {seq} after {prev}");
        assert_eq!(r.key_str(), Some(format!("key-{k}").as_str()));
    }
    let empty = eventually(Duration::from_secs(5), || async {
        (kafkube_outbox::pending(&db.db).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(empty.is_some(), "published rows are deleted");
    shutdown.trigger();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn rows_committed_while_no_relay_runs_are_published_at_the_next_start(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("outbox", 1).await;
    let db = TestDb::new(backend).await;
    db.db.migrate(&migrations()).await.unwrap();
    for i in 0..3 {
        let mut tx = db.db.begin().await.unwrap();
        enqueue(&mut tx, &Outgoing::new(&topic, Some("k"), format!("{i}")))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let shutdown = Shutdown::new();
    let relay = Relay::new(db.db.clone(), Producer::new(&kafka.config()).unwrap());
    let task = tokio::spawn(relay.run(shutdown.clone()));
    let records = kafka.read_exact(&topic, 3, Duration::from_secs(15)).await;
    let payloads: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["0", "1", "2"]);
    shutdown.trigger();
    task.await.unwrap();
}

backend_tests!(
    committed_events_are_published_once_in_key_order,
    rows_committed_while_no_relay_runs_are_published_at_the_next_start,
);
