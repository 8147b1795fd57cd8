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

/// `payload` holds the event's `data` (the student's row) as seed 000 stores it, so the seed's
/// scripts find a student with `payload->>'nim'`; the envelope is in its own columns. A log
/// database written before that is converted by the migration.
async fn payload_is_the_students_row_and_the_envelope_has_columns(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 1).await;
    let db = TestDb::new(backend).await;
    // A row as the logger wrote it before: the whole event in `payload`.
    let old_event =
        r#"{"eventId":"old-1","eventType":"MAHASISWA_CREATED","timestamp_api_sent":1,"data":{"id":9,"nim":"old-nim"}}"#;
    let only_1101 = |mut m: sqlx::migrate::Migrator| {
        m.migrations = m.migrations.iter().filter(|m| m.version == 1101).cloned().collect();
        m
    };
    let (migrations, sqlite) = (kafkube_students::log_migrations(), matches!(db.db, Db::Sqlite(_)));
    match &db.db {
        Db::Sqlite(p) => only_1101(migrations.sqlite).run(p).await.unwrap(),
        Db::Postgres(p) => only_1101(migrations.postgres).run(p).await.unwrap(),
    }
    let (payload, now) = if sqlite {
        ("$1", "'2025-01-01T00:00:00Z'")
    } else {
        ("$1::jsonb", "now()")
    };
    let insert = format!(
        "INSERT INTO event_logs (event_id, event_type, payload, timestamp_api_sent, timestamp_kafka_received, \
         timestamp_processed, kafka_partition, kafka_offset, consumer) \
         VALUES ('old-1', 'MAHASISWA_CREATED', {payload}, {now}, {now}, {now}, 0, 0, 'old')"
    );
    on_db!(&db.db, p => sqlx::query(&insert).bind(old_event).execute(p).await.map(drop)).unwrap();

    let args = common::args(&topic, &db.url, &db.url);
    let logger = common::start_logger(&args, &kafka.config(), "logger").await;
    common::produce(&kafka.config(), &topic, vec![common::event("new-1", "s1")]).await;
    assert_eq!(wait_for_rows(&db.db, 2, Duration::from_secs(30)).await, 2);
    logger.stop().await;

    let nim_sql = if sqlite {
        "SELECT json_extract(payload, '$.nim'), event_type FROM event_logs WHERE event_id = $1"
    } else {
        "SELECT payload->>'nim', event_type FROM event_logs WHERE event_id = $1"
    };
    for (id, nim) in [("new-1", "new-1"), ("old-1", "old-nim")] {
        let (got, event_type): (String, String) =
            on_db!(&db.db, p => sqlx::query_as(nim_sql).bind(id).fetch_one(p).await).unwrap();
        assert_eq!((got.as_str(), event_type.as_str()), (nim, "MAHASISWA_CREATED"), "{id}");
    }
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
    payload_is_the_students_row_and_the_envelope_has_columns,
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
