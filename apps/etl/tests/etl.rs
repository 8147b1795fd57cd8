//! The ETL app against a real broker and real databases (SQLite, PostgreSQL, MariaDB): the
//! transform's enrichment and schema guard, the sink's upsert/delete/ordering on each backend,
//! 10,000 mixed changes through both services ending with sink = source, a sink database outage
//! and a sink killed mid-stream losing nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use kafkube_bus::{KafkaConfig, Outgoing, Producer};
use kafkube_etl::config::SinkUrl;
use kafkube_etl::order::POSITION_HEADER;
use kafkube_etl::sink::db::{SinkDb, SinkRow};
use kafkube_etl::{EtlArgs, Sink, Transform};
use kafkube_testkit::{Backend, TestDb, TestKafka, TestMySql, spawn, unique};
use serde_json::{Value, json};

/// A sink database of a test, on one of the three backends.
enum SinkTarget {
    Sql(TestDb),
    MySql(TestMySql),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

impl SinkTarget {
    async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => Self::Sql(TestDb::new(Backend::Sqlite).await),
            Kind::Postgres => Self::Sql(TestDb::new(Backend::Postgres).await),
            Kind::MySql => Self::MySql(TestMySql::new().await),
        }
    }

    fn url(&self) -> SinkUrl {
        match self {
            Self::Sql(t) => t.url.parse().unwrap(),
            Self::MySql(t) => t.url.parse().unwrap(),
        }
    }

    async fn db(&self) -> SinkDb {
        SinkDb::connect(&self.url(), &Default::default(), &Default::default())
            .await
            .unwrap()
    }
}

/// One test per sink backend from one body.
macro_rules! sink_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(super::Kind::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(super::Kind::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() { super::$name(super::Kind::MySql).await }
        }
    )*};
}

fn args(kafka_raw: &str, enriched: &str, sink: &SinkUrl) -> EtlArgs {
    let mut a = EtlArgs::defaults();
    a.source_topics = vec![kafka_raw.to_owned()];
    a.target_topic = enriched.to_owned();
    a.sink_topic = Some(enriched.to_owned());
    a.transform_group = unique("etl");
    a.sink_group = unique("sink");
    a.sink.url = Some(sink.clone());
    a
}

async fn produce(kafka: &KafkaConfig, msgs: &[Outgoing]) {
    let producer = Producer::new(kafka).unwrap();
    for chunk in msgs.chunks(2000) {
        for r in producer.send_all(chunk).await {
            r.unwrap();
        }
    }
}

fn record(topic: &str, key: &str, v: &Value) -> Outgoing {
    Outgoing::new(topic, Some(key), v.to_string())
}

/// Waits until the sink table holds exactly `expected` (sorted by id).
async fn wait_for_rows(db: &SinkDb, expected: &[SinkRow], timeout: Duration) -> Vec<SinkRow> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = Vec::new();
    let mut got = None;
    while std::time::Instant::now() < deadline {
        if let Ok(rows) = db.rows("orders").await {
            if rows == expected {
                got = Some(());
                last = rows;
                break;
            }
            last = rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if got.is_none() {
        let missing = expected
            .iter()
            .filter(|r| !last.contains(r))
            .take(3)
            .collect::<Vec<_>>();
        let extra = last
            .iter()
            .filter(|r| !expected.contains(r))
            .take(3)
            .collect::<Vec<_>>();
        panic!(
            "sink has {} rows, expected {}; e.g. missing {missing:?}, unexpected {extra:?}",
            last.len(),
            expected.len()
        );
    }
    last
}

async fn no_dead_letters(kafka: &TestKafka, topics: &[&str]) {
    for t in topics {
        let dead = kafka.read(&format!("{t}.dlq"), 1, Duration::from_secs(1)).await;
        assert!(
            dead.is_empty(),
            "{t}.dlq: {:?}",
            dead.first().map(|r| r.header("kafkube-error"))
        );
    }
}

fn row(id: &str, order_id: &str, quantity: i64, price: &str, total: &str) -> SinkRow {
    SinkRow {
        id: id.into(),
        order_id: Some(order_id.into()),
        quantity: Some(quantity),
        unit_price: Some(price.into()),
        total_value: Some(total.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transform_enriches_orders_and_dead_letters_what_the_schema_guard_refuses() {
    let kafka = TestKafka::start();
    let raw = kafka.topic("raw_orders", 2).await;
    let enriched = kafka.topic("enriched_orders", 2).await;
    let cfg = kafka.config();
    let a = args(&raw, &enriched, &"sqlite::memory:".parse().unwrap());
    let transform = spawn(Transform, a, &cfg).await.unwrap();

    let change = json!({"database": "app_producer", "table": "orders", "type": "insert", "ts": 1_700_000_000,
        "xid": 1, "commit": true, "data": {"id": 7, "order_id": "CDC-7", "quantity": 3, "unit_price": 19.99}, "old": null});
    produce(
        &cfg,
        &[
            record(
                &raw,
                "a",
                &json!({"order_id": "ORD-1", "quantity": 3, "unit_price": 19.99}),
            ),
            record(&raw, "b", &change).header(POSITION_HEADER, "binlog.000002:900"),
            Outgoing::new(&raw, Some("c"), "{not json"),
            record(
                &raw,
                "d",
                &json!({"order_id": "ORD-2", "quantity": "many", "unit_price": 1}),
            ),
        ],
    )
    .await;
    let out = kafka.read_exact(&enriched, 2, Duration::from_secs(30)).await;
    assert_eq!(out.len(), 2, "{out:?}");
    let by_order: BTreeMap<String, Value> = out
        .iter()
        .map(|r| (r.json()["order_id"].as_str().unwrap().to_owned(), r.json()))
        .collect();
    let plain = &by_order["ORD-1"];
    assert_eq!(plain["total_value"].to_string(), "59.97");
    assert_eq!(
        (plain["flag"].as_str(), plain["op"].as_str()),
        (Some("transform"), Some("upsert"))
    );
    assert!(plain["sync_at"].as_i64().unwrap() >= 1_700_000_000);
    let cdc = &by_order["CDC-7"];
    assert_eq!(
        (cdc["id"].as_str(), cdc["source"].as_str()),
        (Some("7"), Some("app_producer.orders"))
    );
    assert_eq!(cdc["version"].as_i64(), Some((2 << 32) | 900));
    // Keyed by the order's id, so one order's changes stay in one partition, in order.
    for r in &out {
        assert_eq!(r.key_str(), r.json()["id"].as_str());
    }
    let dead = kafka
        .read_exact(&format!("{raw}.dlq"), 2, Duration::from_secs(20))
        .await;
    let mut reasons: Vec<&str> = dead.iter().map(|r| r.header("kafkube-error").unwrap()).collect();
    reasons.sort_unstable();
    assert!(reasons[0].contains("quantity"), "{reasons:?}");
    assert!(reasons[1].contains("not a JSON object"), "{reasons:?}");
    transform.stop().await;
}

/// Upserts, an older change after a newer one, deletes and malformed records, on each backend.
async fn sink_applies_changes_newest_wins_and_dead_letters_malformed(kind: Kind) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("enriched_orders", 2).await;
    let cfg = kafka.config();
    let target = SinkTarget::new(kind).await;
    let sink = spawn(Sink, args("unused", &topic, &target.url()), &cfg).await.unwrap();
    let db = target.db().await;
    let order = |id: &str, q: i64, price: &str, total: &str, version: i64| {
        record(
            &topic,
            id,
            &json!({"id": id, "order_id": format!("ORD-{id}"), "quantity": q,
                "unit_price": serde_json::from_str::<Value>(price).unwrap(),
                "total_value": serde_json::from_str::<Value>(total).unwrap(), "processed_at": 1_700_000_000,
                "flag": "transform", "op": "upsert", "version": version}),
        )
    };
    produce(
        &cfg,
        &[
            order("a", 3, "19.99", "59.97", 10),
            order("b", 1, "5", "5", 10),
            order("c", 2, "0.10", "0.20", 10),
            order("a", 4, "19.99", "79.96", 20),
            Outgoing::new(&topic, Some("x"), "not json"),
            record(&topic, "y", &json!({"order_id": "no id"})),
        ],
    )
    .await;
    let expected = vec![
        row("a", "ORD-a", 4, "19.99", "79.96"),
        row("b", "ORD-b", 1, "5", "5"),
        row("c", "ORD-c", 2, "0.1", "0.2"),
    ];
    wait_for_rows(&db, &expected, Duration::from_secs(30)).await;

    // An older change of `a` arrives late (a replay): it must not overwrite the newer row. `b` is
    // deleted; the hand-written record (no version: its timestamp) adds `d`.
    produce(
        &cfg,
        &[
            order("a", 1, "1", "1", 15),
            record(&topic, "b", &json!({"id": "b", "op": "delete", "version": 30})),
            record(
                &topic,
                "d",
                &json!({"id": "d", "order_id": "TEST-002", "quantity": 3, "unit_price": 25.50,
                "total_value": 76.50, "processed_at": 1_699_267_200}),
            ),
        ],
    )
    .await;
    let expected = vec![
        row("a", "ORD-a", 4, "19.99", "79.96"),
        row("c", "ORD-c", 2, "0.1", "0.2"),
        row("d", "TEST-002", 3, "25.5", "76.5"),
    ];
    wait_for_rows(&db, &expected, Duration::from_secs(30)).await;
    let dead = kafka
        .read_exact(&format!("{topic}.dlq"), 2, Duration::from_secs(20))
        .await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter()
            .any(|r| r.header("kafkube-error").unwrap().contains("`id` is missing"))
    );
    sink.stop().await;
}

/// The source: two tables of orders, changed 10,000 times (inserts, updates, deletes), as
/// Maxwell change records with growing binlog positions; and what the sink must end up with.
fn mixed_changes(topic: &str, n: usize, seed: u64) -> (Vec<Outgoing>, Vec<SinkRow>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut source: BTreeMap<String, (i64, u32)> = BTreeMap::new(); // id → (quantity, price cents)
    let mut out = Vec::with_capacity(n);
    let mut next_id = 0u64;
    for i in 0..n {
        let table = if rng.bool() { "orders_web" } else { "orders_shop" };
        let existing: Option<String> = if source.is_empty() || rng.u8(..10) < 4 {
            None
        } else {
            source.keys().nth(rng.usize(..source.len())).cloned()
        };
        let (kind, id) = match existing {
            None => {
                next_id += 1;
                ("insert", format!("{table}-{next_id}"))
            }
            Some(id) if rng.u8(..3) == 0 => ("delete", id),
            Some(id) => ("update", id),
        };
        let (q, cents) = (rng.i64(1..20), rng.u32(1..100_000));
        let data = if kind == "delete" {
            json!({"id": id})
        } else {
            source.insert(id.clone(), (q, cents));
            json!({"id": id, "order_id": format!("O-{id}"), "quantity": q,
                "unit_price": serde_json::from_str::<Value>(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap()})
        };
        if kind == "delete" {
            source.remove(&id);
        }
        let change = json!({"database": "app_producer", "table": table, "type": kind, "ts": 1_700_000_000 + i,
            "xid": i, "commit": true, "data": data});
        out.push(record(topic, &id, &change).header(POSITION_HEADER, format!("binlog.000001:{}", 4 + i * 100)));
    }
    let expected = source
        .into_iter()
        .map(|(id, (q, cents))| {
            let price = rust_decimal::Decimal::new(cents.into(), 2);
            let total = price * rust_decimal::Decimal::from(q);
            SinkRow {
                order_id: Some(format!("O-{id}")),
                id,
                quantity: Some(q),
                unit_price: Some(price.normalize().to_string()),
                total_value: Some(total.normalize().to_string()),
            }
        })
        .collect();
    (out, expected)
}

/// 10,000 mixed changes through the transform and the sink: the sink equals the source.
async fn ten_thousand_mixed_changes_end_with_sink_equal_to_source(kind: Kind) {
    let kafka = TestKafka::start();
    let raw = kafka.topic("raw_orders", 4).await;
    let enriched = kafka.topic("enriched_orders", 4).await;
    let cfg = kafka.config();
    let target = SinkTarget::new(kind).await;
    let a = args(&raw, &enriched, &target.url());
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a, &cfg).await.unwrap();
    let (changes, expected) = mixed_changes(&raw, 10_000, 13);
    produce(&cfg, &changes).await;
    let db = target.db().await;
    wait_for_rows(&db, &expected, Duration::from_secs(300)).await;
    no_dead_letters(&kafka, &[&raw, &enriched]).await;
    transform.stop().await;
    sink.stop().await;
}

/// The sink's database refuses connections for 10 s while changes keep coming: nothing lost,
/// nothing dead-lettered. Then the sink is killed (SIGKILL-like: no commit) mid-stream and a new
/// one takes over: the sink still equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_loses_nothing_through_a_database_outage_and_a_kill() {
    let kafka = TestKafka::start();
    let raw = kafka.topic("raw_orders", 4).await;
    let enriched = kafka.topic("enriched_orders", 4).await;
    let cfg = kafka.config();
    let pg = TestDb::new(Backend::Postgres).await;
    let target: SinkUrl = pg.url.parse().unwrap();
    let a = args(&raw, &enriched, &target);
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let sink = spawn(Sink, a.clone(), &cfg).await.unwrap();
    let (changes, expected) = mixed_changes(&raw, 6000, 7);

    produce(&cfg, &changes[..1500]).await;
    pg.set_reachable(false).await;
    produce(&cfg, &changes[1500..3000]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg.set_reachable(true).await;
    produce(&cfg, &changes[3000..4500]).await;
    sink.kill();
    let sink = spawn(Sink, a, &cfg).await.unwrap();
    produce(&cfg, &changes[4500..]).await;

    let db = SinkDb::connect(&target, &Default::default(), &Default::default())
        .await
        .unwrap();
    wait_for_rows(&db, &expected, Duration::from_secs(300)).await;
    no_dead_letters(&kafka, &[&raw, &enriched]).await;
    transform.stop().await;
    sink.stop().await;
}

/// A table the seed's sink made (no `version` column) is taken over: the column is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_table_without_version_gets_the_column() {
    let my = TestMySql::new().await;
    kafkube_store::sqlx::query(
        "CREATE TABLE orders (id VARCHAR(64) PRIMARY KEY, order_id VARCHAR(64), quantity INT, \
         unit_price DECIMAL(10,2), total_value DECIMAL(10,2), processed_at BIGINT, \
         created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    )
    .execute(&my.pool)
    .await
    .unwrap();
    let db = SinkDb::connect(&my.url.parse().unwrap(), &Default::default(), &Default::default())
        .await
        .unwrap();
    db.ensure_table("orders").await.unwrap();
    db.ensure_table("orders").await.unwrap();
    assert_eq!(
        my.scalar(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
                   AND table_name = 'orders' AND column_name = 'version'"
        )
        .await,
        1
    );
}

sink_tests!(
    sink_applies_changes_newest_wins_and_dead_letters_malformed,
    ten_thousand_mixed_changes_end_with_sink_equal_to_source,
);
