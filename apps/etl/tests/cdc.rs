//! The CDC service on a real MariaDB (binlog in ROW format): Maxwell records read back with a
//! plain Kafka consumer match the rows, column types included; CDC → transform → sink ends with
//! sink = source through a kill -9 of the CDC, an ALTER TABLE mid-stream, inserts, updates and
//! deletes across two tables.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kafkube_etl::sink::db::{SinkDb, SinkRow};
use kafkube_etl::{CdcService, EtlArgs, Sink, Transform};
use kafkube_store::sqlx;
use kafkube_testkit::{Backend, TestDb, TestKafka, TestMySql, spawn, unique};
use serde_json::Value;

mod common;
use common::{cdc_args, distinct_rows, exec, orders_under_cdc};

/// The transform and the sink of `a` on fresh groups: `raw` → `enriched` → `sink_db`.
fn pipeline(a: &mut EtlArgs, raw: &str, enriched: &str, sink_db: &TestDb) {
    a.source_topics = vec![raw.to_owned()];
    a.target_topic = enriched.to_owned();
    a.sink_topic = Some(enriched.to_owned());
    a.transform_group = unique("etl");
    a.sink_group = unique("sink");
    a.sink.url = Some(sink_db.url.parse().unwrap());
}

/// What a CDC → transform → sink test runs on: Kafka, the raw and the enriched topic, the source
/// database, the CDC's state database and the sink's.
struct Rig(TestKafka, String, String, TestMySql, TestDb, TestDb);

impl Rig {
    async fn new(partitions: i32) -> Self {
        let kafka = TestKafka::start();
        let raw = kafka.topic("raw_orders", partitions).await;
        let enriched = kafka.topic("enriched_orders", partitions).await;
        let my = TestMySql::new().await;
        let state = TestDb::new(Backend::Sqlite).await;
        Self(kafka, raw, enriched, my, state, TestDb::new(Backend::Sqlite).await)
    }
}

/// Source tables `orders_web` and `orders_shop`: the sink's columns, then `extra` (`, name TYPE…`).
async fn order_tables(my: &TestMySql, extra: &str) {
    for t in ["orders_web", "orders_shop"] {
        exec(
            my,
            &format!(
                "CREATE TABLE {t} (id BIGINT PRIMARY KEY, order_id VARCHAR(32) NOT NULL, quantity INT NOT NULL, \
                 unit_price DECIMAL(12,2) NOT NULL{extra}) CHARACTER SET utf8mb4"
            ),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxwell_records_match_the_rows_with_their_types() {
    kafkube_testkit::show_logs();
    let kafka = TestKafka::start();
    let topic = kafka.topic("cdc", 1).await;
    let my = TestMySql::new().await;
    let state = TestDb::new(Backend::Sqlite).await;
    exec(
        &my,
        "CREATE TABLE orders (id INT UNSIGNED PRIMARY KEY, order_id VARCHAR(32), quantity INT, \
         unit_price DECIMAL(12,2), created DATETIME(6), day DATE, note TEXT, status ENUM('new','paid'), \
         tags SET('a','b','c'), raw BLOB, doc JSON, f DOUBLE, big BIGINT UNSIGNED, neg SMALLINT, gone INT NULL) \
         CHARACTER SET utf8mb4",
    )
    .await;
    let cdc = spawn(CdcService, cdc_args(&my, &state, &topic), &kafka.config())
        .await
        .unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    // Let the reader register before the first change (it starts from the current position).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    exec(
        &my,
        "INSERT INTO orders VALUES (1, 'ORD-1', 3, 19.99, '2024-01-02 03:04:05.123456', '2024-02-29', \
         'héllo 😀', 'paid', 'a,c', x'00ff10', '{\"k\": [1, 2]}', 1.5, 18446744073709551615, -7, NULL)",
    )
    .await;
    exec(&my, "UPDATE orders SET quantity = 4, note = 'x' WHERE id = 1").await;
    exec(&my, "DELETE FROM orders WHERE id = 1").await;

    let recs = kafka.read_exact(&topic, 3, Duration::from_secs(120)).await;
    assert_eq!(recs.len(), 3, "{recs:?}");
    let (ins, upd, del) = (recs[0].json(), recs[1].json(), recs[2].json());
    assert_eq!(ins["database"], my.name.as_str());
    assert_eq!(
        (ins["table"].as_str(), ins["type"].as_str()),
        (Some("orders"), Some("insert"))
    );
    assert_eq!(ins["commit"], true);
    assert!(ins["xid"].as_u64().is_some() && ins["ts"].as_u64().is_some(), "{ins}");
    // The file the server writes, exactly (the stream's first event names it with a checksum
    // attached, which must not end up in the position).
    let (file,): (String,) = sqlx::query_as("SELECT @@GLOBAL.log_bin_basename")
        .fetch_one(&my.pool)
        .await
        .map(|(base,): (String,)| (base.rsplit('/').next().unwrap_or_default().to_owned(),))
        .unwrap();
    for r in [&ins, &upd, &del] {
        let position = r["position"].as_str().unwrap();
        let (f, offset) = position.rsplit_once(':').unwrap();
        assert!(
            f.strip_prefix(&file)
                .and_then(|n| n.strip_prefix('.'))
                .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit())),
            "{position} is not a file of {file}"
        );
        assert!(offset.parse::<u64>().is_ok(), "{position}");
    }
    let d = &ins["data"];
    let raw: Value = serde_json::from_slice(&recs[0].payload).unwrap();
    assert_eq!(raw["data"]["unit_price"].to_string(), "19.99");
    assert!(String::from_utf8_lossy(&recs[0].payload).contains("\"unit_price\":19.99"));
    assert_eq!(d["id"], 1);
    assert_eq!(d["order_id"], "ORD-1");
    assert_eq!(d["created"], "2024-01-02 03:04:05.123456");
    assert_eq!(d["day"], "2024-02-29");
    assert_eq!(d["note"], "héllo 😀");
    assert_eq!(d["status"], "paid");
    assert_eq!(d["tags"], serde_json::json!(["a", "c"]));
    assert_eq!(d["raw"], "AP8Q");
    assert_eq!(d["f"], 1.5);
    assert_eq!(d["big"].to_string(), "18446744073709551615");
    assert_eq!(d["neg"], -7);
    assert_eq!(d["gone"], Value::Null);
    // MariaDB keeps JSON as text.
    assert_eq!(
        serde_json::from_str::<Value>(d["doc"].as_str().unwrap()).unwrap(),
        serde_json::json!({"k": [1, 2]})
    );
    assert_eq!(
        recs[0].key_str(),
        Some(format!("{{\"database\":\"{}\",\"table\":\"orders\",\"pk.id\":1}}", my.name).as_str())
    );
    assert!(recs[0].header("kafkube-binlog-position").is_some());

    assert_eq!(upd["type"], "update");
    assert_eq!(
        (upd["data"]["quantity"].as_i64(), upd["old"]["quantity"].as_i64()),
        (Some(4), Some(3))
    );
    assert_eq!(upd["old"]["note"], "héllo 😀");
    assert!(
        upd["old"].get("order_id").is_none(),
        "old holds only changed columns: {upd}"
    );
    assert_eq!(
        (del["type"].as_str(), del["data"]["id"].as_i64()),
        (Some("delete"), Some(1))
    );
    cdc.stop().await;
}

/// The source tables, as the sink should end up: `(id, order_id, quantity, unit_price, total)`.
async fn source_rows(my: &TestMySql) -> Vec<SinkRow> {
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT CAST(id AS CHAR), order_id, quantity, CAST(unit_price AS CHAR) FROM orders_web \
         UNION ALL SELECT CAST(id AS CHAR), order_id, quantity, CAST(unit_price AS CHAR) FROM orders_shop",
    )
    .fetch_all(&my.pool)
    .await
    .unwrap();
    let mut out: Vec<SinkRow> = rows
        .into_iter()
        .map(|(id, order_id, q, price)| {
            let price: rust_decimal::Decimal = price.parse().unwrap();
            SinkRow {
                id,
                order_id: Some(order_id),
                quantity: Some(q),
                unit_price: Some(price.normalize().to_string()),
                total_value: Some((price * rust_decimal::Decimal::from(q)).normalize().to_string()),
            }
        })
        .collect();
    out.sort();
    out
}

/// Waits up to `timeout` for the sink table of `sink_db` to equal `expected`; otherwise fails
/// with how they differ (counts, and a few rows missing, unexpected or different).
async fn sink_equals(sink_db: &TestDb, expected: &[SinkRow], timeout: Duration) {
    let db = SinkDb::connect(&sink_db.url.parse().unwrap(), &Default::default(), &Default::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while std::time::Instant::now() < deadline {
        got = db.rows("orders").await.unwrap_or_default();
        if got == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ids = |rows: &[SinkRow]| {
        rows.iter()
            .map(|r| r.id.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    let (want, have) = (ids(expected), ids(&got));
    let missing: Vec<_> = expected.iter().filter(|r| !have.contains(&r.id)).take(3).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(&r.id)).take(3).collect();
    let differ: Vec<_> = got
        .iter()
        .filter(|r| want.contains(&r.id) && !expected.contains(r))
        .take(3)
        .collect();
    panic!(
        "sink {} rows, source {} after {timeout:?}: {} missing (e.g. {missing:?}), {} unexpected (e.g. {extra:?}), \
         different e.g. {differ:?}",
        got.len(),
        expected.len(),
        want.difference(&have).count(),
        have.difference(&want).count(),
    );
}

/// 3,000 changes across two tables while the CDC is killed (no flush, no stored position)
/// and restarted, and a column is added mid-stream: the sink equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_to_sink_equals_source_through_a_kill_and_an_alter_table() {
    kafkube_testkit::show_logs();
    let Rig(kafka, raw, enriched, my, state, sink_db) = Rig::new(4).await;
    let cfg = kafka.config();
    for (t, start) in [("orders_web", 1), ("orders_shop", 1_000_000)] {
        exec(
            &my,
            &format!(
                "CREATE TABLE {t} (id BIGINT PRIMARY KEY AUTO_INCREMENT, order_id VARCHAR(32) NOT NULL, \
                 quantity INT NOT NULL, unit_price DECIMAL(12,2) NOT NULL) AUTO_INCREMENT = {start}"
            ),
        )
        .await;
    }
    let mut a = cdc_args(&my, &state, &raw);
    pipeline(&mut a, &raw, &enriched, &sink_db);
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a.clone(), &cfg).await.unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut rng = fastrand::Rng::with_seed(5);
    let mut cdc = Some(cdc);
    for i in 0..3000 {
        let t = if rng.bool() { "orders_web" } else { "orders_shop" };
        let sql = match rng.u8(..10) {
            0..=4 => format!(
                "INSERT INTO {t} (order_id, quantity, unit_price) VALUES ('O-{i}', {}, {}.{:02})",
                rng.u32(1..20),
                rng.u32(0..500),
                rng.u32(0..100)
            ),
            5..=7 => format!(
                "UPDATE {t} SET quantity = quantity + 1, unit_price = unit_price + 0.01 ORDER BY RAND({i}) LIMIT 1"
            ),
            _ => format!("DELETE FROM {t} ORDER BY RAND({i}) LIMIT 1"),
        };
        exec(&my, &sql).await;
        if i == 1000 {
            cdc.take().unwrap().kill();
        }
        if i == 1400 {
            cdc = Some(spawn(CdcService, a.clone(), &cfg).await.unwrap());
        }
        if i == 2000 {
            exec(
                &my,
                "ALTER TABLE orders_web ADD COLUMN note VARCHAR(20) NULL AFTER order_id",
            )
            .await;
        }
    }
    let expected = source_rows(&my).await;
    assert!(expected.len() > 500, "{}", expected.len());
    sink_equals(&sink_db, &expected, Duration::from_secs(300)).await;
    // Through the kill and the restart, the stored position carries MariaDB's GTID position
    // there, as the server itself computes it for that file and offset.
    let client = a.cdc.client_id.as_deref().unwrap();
    let p = kafkube_etl::cdc::load_position(&state.db, client)
        .await
        .unwrap()
        .unwrap();
    let server: Option<String> = sqlx::query_scalar("SELECT BINLOG_GTID_POS(?, ?)")
        .bind(&p.file)
        .bind(p.offset)
        .fetch_one(&my.pool)
        .await
        .unwrap();
    assert!(p.gtid.as_deref().is_some_and(|g| g.contains('-')), "{p:?}");
    assert_eq!(p.gtid, server, "{p:?}");
    for s in [cdc.take().unwrap(), transform, sink] {
        s.stop().await;
    }
}

/// The server drops the CDC's connection (as a restart does) mid-stream: it reconnects and
/// resumes from its stored position; every change arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_resumes_when_the_server_drops_its_connection() {
    kafkube_testkit::show_logs();
    let kafka = TestKafka::start();
    let topic = kafka.topic("cdc", 1).await;
    let my = TestMySql::new().await;
    let state = TestDb::new(Backend::Sqlite).await;
    // A login of its own, so that dropping its connections touches no other test.
    let user = unique("ktu");
    exec(&my, &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")).await;
    exec(
        &my,
        &format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '{user}'@'%'"),
    )
    .await;
    exec(&my, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))").await;
    let mut a = cdc_args(&my, &state, &topic);
    let host = my.url.split('@').nth(1).unwrap().split('/').next().unwrap();
    a.cdc.mysql_url = Some(format!("mysql://{user}:pw@{host}").parse().unwrap());
    let cdc = spawn(CdcService, a, &kafka.config()).await.unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..300 {
        exec(&my, &format!("INSERT INTO t VALUES ({i}, 'v{i}')")).await;
        if i == 150 {
            exec(&my, &format!("KILL CONNECTION USER '{user}'")).await;
        }
    }
    let ids = distinct_rows(&kafka, &topic, 300, Duration::from_secs(180)).await;
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>(),
        "every change arrives (duplicates allowed)"
    );
    cdc.stop().await;
    exec(&my, &format!("DROP USER '{user}'@'%'")).await;
}

/// `kafkube load etl` against CDC → transform → sink: its report gives the commit → sink-row
/// latency and checks sink = source; pointed at a sink table the pipeline does not write, it
/// reports the mismatch instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_command_measures_the_pipeline_and_checks_the_sink() {
    // Once, on the sasl_ssl leg, nothing reached the sink: the services' warnings say why.
    kafkube_testkit::show_logs();
    let Rig(kafka, raw, enriched, my, state, sink_db) = Rig::new(2).await;
    let mut a = cdc_args(&my, &state, &raw);
    pipeline(&mut a, &raw, &enriched, &sink_db);
    let cfg = kafka.config();
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a.clone(), &cfg).await.unwrap();

    let mut load = kafkube_etl::load::LoadArgs {
        source_url: my.url.parse().unwrap(),
        database: my.name.clone(),
        changes: 600,
        rate: 300,
        connections: 4,
        updates: 20,
        deletes: 10,
        settle_secs: 60,
        seed: Some(3),
        sink: a.sink.clone(),
    };
    let report = kafkube_etl::load::run(&load).await.unwrap();
    println!("{}", report.text);
    assert!(report.ok, "{}", report.text);
    assert!(
        report.text.contains("table orders equals the source"),
        "{}",
        report.text
    );
    assert!(report.text.contains("source change → sink row"), "{}", report.text);
    // The rows the check compared are the sink's, not a copy of the source's.
    let rows = SinkDb::connect(&a.sink.url(), &Default::default(), &Default::default())
        .await
        .unwrap()
        .rows("orders")
        .await
        .unwrap();
    let live = source_live_rows(&my).await;
    assert!(
        live > 300 && rows.len() as i64 == live,
        "sink {} rows, source {live}",
        rows.len()
    );

    // A sink database the pipeline does not write: the check fails and says so.
    let other = TestDb::new(Backend::Sqlite).await;
    let other_url: kafkube_etl::config::SinkUrl = other.url.parse().unwrap();
    SinkDb::connect(&other_url, &Default::default(), &Default::default())
        .await
        .unwrap()
        .ensure_table("orders")
        .await
        .unwrap();
    load.sink.url = Some(other_url);
    load.changes = 50;
    load.settle_secs = 2;
    let report = kafkube_etl::load::run(&load).await.unwrap();
    assert!(!report.ok, "{}", report.text);
    assert!(report.text.contains("MISMATCH"), "{}", report.text);
    cdc.stop().await;
    transform.stop().await;
    sink.stop().await;
}

async fn source_live_rows(my: &TestMySql) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&my.pool)
        .await
        .unwrap()
}

/// `CDC_SNAPSHOT`: rows that existed before the CDC's first start reach the sink as Maxwell
/// `bootstrap-insert` records, and the changes made while the snapshot is read follow from the
/// binlog: sink = source. A restart with a stored position takes no second snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_brings_the_existing_rows_and_the_changes_follow() {
    kafkube_testkit::show_logs();
    let Rig(kafka, raw, enriched, my, state, sink_db) = Rig::new(2).await;
    let cfg = kafka.config();
    order_tables(&my, ", created DATETIME(6), tags SET('a','b','c'), raw BLOB, note TEXT").await;
    for (t, base) in [("orders_web", 0), ("orders_shop", 1_000_000)] {
        let values: Vec<String> = (1..=1500)
            .map(|i| {
                format!(
                    "({}, 'O-{i}', {}, 19.99, '2024-01-02 03:04:05.123456', 'a,c', x'00ff', 'héllo 😀')",
                    base + i,
                    i % 7 + 1
                )
            })
            .collect();
        exec(&my, &format!("INSERT INTO {t} VALUES {}", values.join(","))).await;
    }
    let mut a = cdc_args(&my, &state, &raw);
    a.cdc.snapshot = Some(true);
    pipeline(&mut a, &raw, &enriched, &sink_db);
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a.clone(), &cfg).await.unwrap();
    // Changes while (or right after) the snapshot is read.
    exec(&my, "UPDATE orders_web SET quantity = quantity + 10 WHERE id <= 100").await;
    exec(&my, "DELETE FROM orders_shop WHERE id BETWEEN 1000200 AND 1000250").await;
    exec(
        &my,
        "INSERT INTO orders_web (id, order_id, quantity, unit_price) VALUES (5001, 'O-new', 3, 0.10)",
    )
    .await;

    let expected = source_rows(&my).await;
    assert_eq!(expected.len(), 3000 - 51 + 1);
    sink_equals(&sink_db, &expected, Duration::from_secs(180)).await;

    // A snapshot record as a plain consumer reads it.
    let recs = kafka.read(&raw, 5, Duration::from_secs(20)).await;
    let boot = recs
        .iter()
        .map(|r| r.json())
        .find(|j| j["type"] == "bootstrap-insert")
        .expect("a bootstrap-insert record");
    let d = &boot["data"];
    assert_eq!(boot["database"], my.name.as_str());
    assert_eq!(d["created"], "2024-01-02 03:04:05.123456");
    assert_eq!(d["tags"], serde_json::json!(["a", "c"]));
    assert_eq!(d["raw"], "AP8=");
    assert_eq!(d["note"], "héllo 😀");
    assert!(
        recs.iter()
            .any(|r| String::from_utf8_lossy(&r.payload).contains("\"unit_price\":19.99")),
        "DECIMAL as its exact number"
    );

    // Restarted with its position stored: no second snapshot.
    let written = kafka.records_written(&raw);
    cdc.stop().await;
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        kafka.records_written(&raw),
        written,
        "no records after a restart without changes"
    );
    for s in [cdc, transform, sink] {
        s.stop().await;
    }
}

/// A snapshot killed halfway is taken again on the next start, and the rows the first try sent
/// that were deleted in between leave the sink too: the binlog is read from where the first try
/// began, so their deletes arrive (neither the second snapshot nor the binlog after it mentions
/// them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_halfway_is_retaken_and_rows_deleted_meanwhile_leave_the_sink() {
    kafkube_testkit::show_logs();
    let Rig(kafka, raw, enriched, my, state, sink_db) = Rig::new(2).await;
    let cfg = kafka.config();
    order_tables(&my, "").await;
    let values: Vec<String> = (1..=20_000).map(|i| format!("({i}, 'O-{i}', 1, 2.50)")).collect();
    exec(&my, &format!("INSERT INTO orders_web VALUES {}", values.join(","))).await;
    let mut a = cdc_args(&my, &state, &raw);
    a.cdc.snapshot = Some(true);
    // Small batches: the snapshot takes long enough to be killed in the middle.
    a.cdc.batch = 20;
    pipeline(&mut a, &raw, &enriched, &sink_db);
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a.clone(), &cfg).await.unwrap();
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    let started = kafkube_testkit::eventually(Duration::from_secs(60), || {
        let n = kafka.records_written(&raw);
        async move { (n >= 40).then_some(()) }
    })
    .await;
    assert!(started.is_some(), "the snapshot's first records");
    cdc.kill();
    let client = a.cdc.client_id.clone().unwrap();
    assert_eq!(
        kafkube_etl::cdc::load_position(&state.db, &client).await.unwrap(),
        None,
        "killed before the snapshot was complete (make the table larger if this fails)"
    );
    let sent = kafka.records_written(&raw);
    assert!(sent < 20_000, "killed halfway: {sent} records out");

    // The first 20 rows went out in the first batch; they go, and others change.
    exec(&my, "DELETE FROM orders_web WHERE id <= 20").await;
    exec(&my, "UPDATE orders_web SET quantity = 7 WHERE id BETWEEN 21 AND 30").await;
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    exec(&my, "INSERT INTO orders_shop VALUES (1000001, 'O-after', 2, 1.25)").await;

    let expected = source_rows(&my).await;
    assert_eq!(expected.len(), 20_000 - 20 + 1);
    sink_equals(&sink_db, &expected, Duration::from_secs(180)).await;
    for s in [cdc, transform, sink] {
        s.stop().await;
    }
}

/// The broker unreachable for a while under the CDC: the changes made meanwhile wait in the
/// binlog (the stored position moves only after Kafka acknowledged) and all of them arrive
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_waits_out_a_broker_outage_and_loses_nothing() {
    kafkube_testkit::show_logs();
    let kafka = TestKafka::start();
    let Some(broker) = kafka.embedded() else {
        eprintln!("skipped: needs the embedded broker to take it down (KAFKUBE_TEST_KAFKA_BROKERS is set)");
        return;
    };
    let topic = kafka.topic("cdc", 2).await;
    let (my, _state, cdc) = orders_under_cdc(&kafka, &topic).await;
    let insert = |from: u32, to: u32| {
        let values: Vec<String> = (from..to).map(|i| format!("({i}, 'O-{i}')")).collect();
        format!("INSERT INTO orders VALUES {}", values.join(","))
    };
    for i in 0..10 {
        exec(&my, &insert(i * 10, i * 10 + 10)).await;
    }
    broker.set_reachable(false).unwrap();
    for i in 10..40 {
        exec(&my, &insert(i * 10, i * 10 + 10)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.set_reachable(true).unwrap();
    exec(&my, &insert(400, 500)).await;

    let ids = distinct_rows(&kafka, &topic, 500, Duration::from_secs(90)).await;
    assert_eq!(ids.len(), 500, "every change arrived (at least once)");
    assert_eq!(ids.last(), Some(&499));
    cdc.stop().await;
}
