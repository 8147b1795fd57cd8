//! Throughput benchmarks of the ETL services (ignored by default; they print figures and assert
//! only correctness). Run them on a quiet machine with `scripts/test`'s databases up:
//!
//! ```sh
//! cargo test --release -p kafkube-etl --test bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! `ETL_BENCH_ROWS` sets the number of rows (default 200,000).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafkube_bus::{Outgoing, Producer};
use kafkube_etl::cdc::load_position;
use kafkube_etl::{CdcService, EtlArgs, Sink};
use kafkube_store::sqlx::{self, Executor};
use kafkube_testkit::{Backend, TestDb, TestKafka, TestMySql, spawn, unique};

mod common;
use common::cdc_args;

fn rows() -> usize {
    std::env::var("ETL_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

async fn sink_throughput(url: &str, label: &str) {
    let n = rows();
    let kafka = TestKafka::start();
    let topic = kafka.topic("enriched_orders", 4).await;
    let cfg = kafka.config();
    let producer = Producer::new(&cfg).unwrap();
    let records: Vec<Outgoing> = (0..n)
        .map(|i| {
            let id = format!("o-{i}");
            let body = format!(
                r#"{{"id":"{id}","order_id":"ORD-{i}","quantity":{},"unit_price":19.99,"total_value":{}.97,"processed_at":1700000000,"op":"upsert","version":{i}}}"#,
                i % 7 + 1,
                i % 50
            );
            Outgoing::new(&topic, Some(id), body)
        })
        .collect();
    for chunk in records.chunks(10_000) {
        for r in producer.send_all(chunk).await {
            r.unwrap();
        }
    }
    let mut a = EtlArgs::defaults();
    a.sink_topic = Some(topic.clone());
    a.sink_group = unique("sink");
    a.sink.url = Some(url.parse().unwrap());
    let started = Instant::now();
    let sink = spawn(Sink, a, &cfg).await.unwrap();
    let applied: Arc<AtomicU64> = sink.get();
    // The group join and the first fetch come before the first row: the rate is timed from the
    // first applied batch, the figure from the start is printed beside it.
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let done = applied.load(Ordering::Relaxed);
        if first.is_none() && done > 0 {
            first = Some((Instant::now(), done));
        }
        if done >= n as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "sink too slow: {done} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (t0, rows0) = first.unwrap();
    let steady = t0.elapsed().as_secs_f64();
    println!(
        "etl-sink {label}: {n} rows in {secs:.2} s from the sink's start = {:.0} rows/s; the first batch \
         ({rows0} rows) after {:.2} s, then {} rows in {steady:.2} s = {:.0} rows/s",
        n as f64 / secs,
        (t0 - started).as_secs_f64(),
        n as u64 - rows0,
        (n as u64 - rows0) as f64 / steady
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn sink_throughput_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    sink_throughput(&db.url, "PostgreSQL").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn sink_throughput_mariadb() {
    let db = TestMySql::new().await;
    sink_throughput(&db.url, "MariaDB").await;
}

/// Rows already in the binlog, read and published by a CDC started after them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn cdc_throughput() {
    let n = rows();
    let kafka = TestKafka::start();
    let topic = kafka.topic("raw_orders", 4).await;
    let cfg = kafka.config();
    let my = TestMySql::new().await;
    let state = TestDb::new(Backend::Sqlite).await;
    my.pool
        .execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, order_id VARCHAR(32), quantity INT, \
             unit_price DECIMAL(12,2), created DATETIME(6))",
        )
        .await
        .unwrap();
    let mut a = cdc_args(&my, &state, &topic);
    // Maxwell's records as they come by default, without the position field the tests ask for.
    a.cdc.output_binlog_position = None;
    if let Some(batch) = std::env::var("CDC_BATCH").ok().and_then(|b| b.parse().ok()) {
        a.cdc.batch = batch;
    }
    // A first run stores the current position, then stops.
    let cdc = spawn(CdcService, a.clone(), &cfg).await.unwrap();
    cdc.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cdc.stop().await;
    for start in (0..n).step_by(2000) {
        let values: Vec<String> = (start..(start + 2000).min(n))
            .map(|i| format!("({i}, 'ORD-{i}', {}, 19.99, NOW(6))", i % 9 + 1))
            .collect();
        sqlx::query(&format!("INSERT INTO orders VALUES {}", values.join(",")))
            .execute(&my.pool)
            .await
            .unwrap();
    }
    let (file, end): (String, u64) = {
        let row: (String, u64) = sqlx::query_as("SHOW MASTER STATUS")
            .fetch_one(&my.pool)
            .await
            .unwrap_or_default();
        row
    };
    let client = a.cdc.client_id.clone().unwrap();
    let started = Instant::now();
    let cdc = spawn(CdcService, a, &cfg).await.unwrap();
    loop {
        let p = load_position(&state.db, &client).await.unwrap();
        if p.as_ref().is_some_and(|p| p.file == file && p.offset >= end) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "CDC too slow: at {p:?}, end {file}:{end}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "etl-cdc: {n} row changes from the binlog to Kafka in {secs:.2} s = {:.0} changes/s; RSS of this \
         process (the CDC and its Kafka client, plus the embedded broker when it is used) {} MiB, peak {} MiB",
        n as f64 / secs,
        kib("VmRSS:") / 1024,
        kib("VmHWM:") / 1024
    );
    cdc.stop().await;
    // Counted by end offsets: the embedded broker keeps only the newest 5 MiB of a partition.
    assert_eq!(kafka.records_written(&topic), n as i64);
    let newest = kafka.read(&topic, 1, Duration::from_secs(10)).await;
    assert_eq!(newest[0].json()["type"], "insert");
}
