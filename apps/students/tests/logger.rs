//! The event logger against a real broker and real databases: exactly one `event_logs` row per
//! event with several replicas, through restarts, redeliveries and a database outage; malformed
//! records dead-lettered.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use kafkube_bus::{Header, Outgoing};
use kafkube_store::{Db, on_db};
use kafkube_students::logger::count;
use kafkube_testkit::{Backend, TestDb, TestKafka, backend_tests, eventually};

async fn distinct_event_ids(db: &Db) -> i64 {
    let (n,): (i64,) =
        on_db!(db, p => sqlx::query_as("SELECT COUNT(DISTINCT event_id) FROM event_logs").fetch_one(p).await).unwrap();
    n
}

async fn wait_for_rows(db: &Db, n: i64, timeout: Duration) -> i64 {
    eventually(timeout, || async {
        let c = count(db).await.unwrap_or(0);
        (c >= n).then_some(c)
    })
    .await
    .unwrap_or(-1)
}

async fn three_replicas_log_5000_events_exactly_once_and_a_restart_adds_no_duplicates(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 4).await;
    let db = TestDb::new(backend).await;
    let args = common::args(&topic, &db.url, &db.url);
    let cfg = kafka.config();

    let loggers = [
        common::start_logger(&args, &cfg, "logger-a").await,
        common::start_logger(&args, &cfg, "logger-b").await,
        common::start_logger(&args, &cfg, "logger-c").await,
    ];
    let events: Vec<Outgoing> = (0..5000)
        .map(|i| common::event(&format!("e{i}"), &format!("s{}", i % 97)))
        .collect();
    common::produce(&cfg, &topic, events.clone()).await;

    assert_eq!(wait_for_rows(&db.db, 5000, Duration::from_secs(60)).await, 5000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&db.db).await.unwrap(), 5000);
    assert_eq!(distinct_event_ids(&db.db).await, 5000);
    for l in loggers {
        l.stop().await;
    }

    // A restarted logger, and the same events delivered again (a relay that retried): still one
    // row each. One key, so the marker event after them is logged after they were processed.
    let restarted = common::start_logger(&args, &cfg, "logger-restarted").await;
    let mut again: Vec<Outgoing> = events[..200]
        .iter()
        .cloned()
        .map(|mut m| {
            m.key = Some(b"same".to_vec());
            m
        })
        .collect();
    again.push(common::event("marker", "same"));
    common::produce(&cfg, &topic, again).await;
    assert_eq!(wait_for_rows(&db.db, 5001, Duration::from_secs(30)).await, 5001);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&db.db).await.unwrap(), 5001);
    assert_eq!(distinct_event_ids(&db.db).await, 5001);
    restarted.stop().await;
}

async fn malformed_records_are_dead_lettered_and_the_rest_logged(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 1).await;
    let db = TestDb::new(backend).await;
    let args = common::args(&topic, &db.url, &db.url);
    let cfg = kafka.config();
    let logger = common::start_logger(&args, &cfg, "logger").await;
    let bad = |payload: &str| Outgoing::new("", Some("k"), payload.to_owned());
    common::produce(
        &cfg,
        &topic,
        vec![
            common::event("good-1", "k"),
            bad("not json"),
            bad(r#"{"eventType": "MAHASISWA_CREATED", "timestamp_api_sent": 1}"#),
            bad(r#"{"eventId": "x", "eventType": "MAHASISWA_CREATED", "timestamp_api_sent": "yesterday"}"#),
            common::event("good-2", "k"),
        ],
    )
    .await;
    assert_eq!(wait_for_rows(&db.db, 2, Duration::from_secs(30)).await, 2);
    let dead = kafka
        .read_exact(&format!("{topic}.dlq"), 3, Duration::from_secs(15))
        .await;
    assert_eq!(dead.len(), 3);
    assert!(
        dead[0].header(Header::ERROR).unwrap().contains("invalid JSON"),
        "{:?}",
        dead[0].headers
    );
    assert!(
        dead[1].header(Header::ERROR).unwrap().contains("eventId"),
        "{:?}",
        dead[1].headers
    );
    assert_eq!(dead[2].header(Header::SOURCE_OFFSET), Some("3"));
    logger.stop().await;
    assert_eq!(count(&db.db).await.unwrap(), 2);
}

backend_tests!(
    three_replicas_log_5000_events_exactly_once_and_a_restart_adds_no_duplicates,
    malformed_records_are_dead_lettered_and_the_rest_logged,
);

/// PostgreSQL only (a local SQLite file cannot become unreachable): events that arrive while
/// the log database is down are logged once it is back, none lost, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_database_outage_is_waited_out() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 2).await;
    let db = TestDb::new(Backend::Postgres).await;
    let args = common::args(&topic, &db.url, &db.url);
    let cfg = kafka.config();
    let logger = common::start_logger(&args, &cfg, "logger").await;
    common::produce(
        &cfg,
        &topic,
        (0..100)
            .map(|i| common::event(&format!("a{i}"), &format!("{i}")))
            .collect(),
    )
    .await;
    assert_eq!(wait_for_rows(&db.db, 100, Duration::from_secs(30)).await, 100);

    db.set_reachable(false).await;
    common::produce(
        &cfg,
        &topic,
        (0..100)
            .map(|i| common::event(&format!("b{i}"), &format!("{i}")))
            .collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.set_reachable(true).await;

    let check = Db::connect(&db.url, &Default::default()).await.unwrap();
    assert_eq!(wait_for_rows(&check, 200, Duration::from_secs(30)).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(distinct_event_ids(&check).await, 200);
    assert_eq!(count(&check).await.unwrap(), 200);
    assert!(
        kafka
            .read(&format!("{topic}.dlq"), 1, Duration::from_secs(2))
            .await
            .is_empty(),
        "an outage must not dead-letter"
    );
    logger.stop().await;
}
