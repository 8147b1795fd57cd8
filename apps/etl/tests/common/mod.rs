//! What the CDC tests share: the CDC's options on a test's database and topic, a statement on
//! the source, the rows that reached a topic.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use kafkube_etl::{CdcService, EtlArgs};
use kafkube_store::sqlx::Executor;
use kafkube_testkit::{Backend, Spawned, TestDb, TestKafka, TestMySql, spawn, unique};

/// The CDC of `my`'s database into `topic`, its position stored in `state`.
pub fn cdc_args(my: &TestMySql, state: &TestDb, topic: &str) -> EtlArgs {
    let mut a = EtlArgs::defaults();
    a.cdc.mysql_url = Some(my.url.parse().unwrap());
    a.cdc.filter = Some(format!("exclude: *.*, include: {}.*", my.name));
    a.cdc.kafka_topic = Some(topic.to_owned());
    a.cdc.state_url = state.url.parse().unwrap();
    a.cdc.client_id = Some(unique("cdc"));
    a.cdc.server_id = Some(fastrand::u32(10_000..u32::MAX));
    a.cdc.output_binlog_position = Some(true);
    a
}

/// Runs `sql` on the source database.
pub async fn exec(my: &TestMySql, sql: &str) {
    my.pool.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The distinct row ids (`data.id`) of `topic`'s change records, read until `rows` of them have
/// arrived or `timeout` passes. At least once: a reconnect or an outage may repeat changes, so
/// `rows` records need not be `rows` rows; each read asks for as many more as are missing.
pub async fn distinct_rows(
    kafka: &TestKafka,
    topic: &str,
    rows: usize,
    timeout: Duration,
) -> std::collections::BTreeSet<i64> {
    let mut want = rows;
    loop {
        let recs = kafka.read(topic, want, timeout).await;
        let ids: std::collections::BTreeSet<i64> =
            recs.iter().filter_map(|r| r.json()["data"]["id"].as_i64()).collect();
        if ids.len() >= rows || recs.len() < want {
            return ids;
        }
        want = recs.len() + (rows - ids.len());
    }
}

/// A source table `orders (id INT PRIMARY KEY, order_id VARCHAR(32))` on a fresh database, and a
/// CDC reading it into `topic`, registered with the server (it starts from the current position).
/// The state database goes with it: the CDC's position lives there.
pub async fn orders_under_cdc(kafka: &TestKafka, topic: &str) -> (TestMySql, TestDb, Spawned) {
    let my = TestMySql::new().await;
    let state = TestDb::new(Backend::Sqlite).await;
    exec(&my, "CREATE TABLE orders (id INT PRIMARY KEY, order_id VARCHAR(32))").await;
    let cdc = spawn(CdcService, cdc_args(&my, &state, topic), &kafka.config())
        .await
        .unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    // Let the reader register before the first change.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (my, state, cdc)
}
