//! A consumer group's committed offsets and lag as Kafkube's `/metrics` reports them — also
//! while the handler waits for a database that is down — and, on a real Kafka
//! (`KAFKUBE_TEST_KAFKA_CLUSTER`, set by scripts/test), as Kafka's own consumer-groups tool
//! describes the same group.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafkube_bus::{BatchOutput, ConsumerRunner, ConsumerSettings, Handler, HandlerError, Outgoing, Producer, Record};
use kafkube_core::Shutdown;
use kafkube_testkit::{TestKafka, eventually, unique};

/// Processes records, or fails them as "database down" (transient: retried) while `down`.
#[derive(Default)]
struct Db {
    down: AtomicBool,
}

impl Handler for Db {
    async fn handle(&self, _batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(HandlerError::transient("database down"));
        }
        Ok(BatchOutput::default())
    }
}

/// (committed, end, lag) per partition of `topic` in `group`, from this process's `/metrics`.
fn reported(group: &str, topic: &str) -> BTreeMap<i32, (i64, i64, i64)> {
    let text = kafkube_core::telemetry::metrics_handle().render();
    let mut out: BTreeMap<i32, [Option<i64>; 3]> = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let slot = match series.split('{').next() {
            Some("kafkube_consumer_committed_offset") => 0,
            Some("kafkube_consumer_end_offset") => 1,
            Some("kafkube_consumer_lag") => 2,
            _ => continue,
        };
        if !series.contains(&format!("group=\"{group}\"")) || !series.contains(&format!("topic=\"{topic}\"")) {
            continue;
        }
        let partition: i32 = series
            .split("partition=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        out.entry(partition).or_default()[slot] = Some(value.parse::<f64>().unwrap() as i64);
    }
    out.into_iter()
        .filter_map(|(p, v)| Some((p, (v[0]?, v[1]?, v[2]?))))
        .collect()
}

/// (committed, end, lag) per partition of `topic` in `group`, as `kafka-consumer-groups.sh
/// --describe` shows them (through scripts/kafka).
fn described(cluster: &str, group: &str, topic: &str) -> BTreeMap<i32, (i64, i64, i64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka");
    let out = Command::new("bash")
        .args([script, "tool", "consumer-groups", "--describe", "--group", group])
        .env("KAFKUBE_KAFKA_DIR", cluster)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "kafka-consumer-groups failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .find(|l| l.starts_with("GROUP"))
        .unwrap_or_else(|| panic!("no table in {text}"))
        .split_whitespace()
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (t, p, c, e, l) = (
        col("TOPIC"),
        col("PARTITION"),
        col("CURRENT-OFFSET"),
        col("LOG-END-OFFSET"),
        col("LAG"),
    );
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(t) == Some(&topic))
        .map(|f| {
            let n = |i: usize| f[i].parse::<i64>().unwrap_or(-1);
            (f[p].parse().unwrap(), (n(c), n(e), n(l)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_offsets_and_lag_as_kafka_itself_sees_them() {
    let kafka = TestKafka::start();
    let cluster = std::env::var("KAFKUBE_TEST_KAFKA_CLUSTER")
        .ok()
        .filter(|c| !c.is_empty());
    if cluster.is_none() {
        eprintln!(
            "note: the comparison with Kafka's consumer-groups tool needs a real Kafka (KAFKUBE_TEST_KAFKA_CLUSTER)"
        );
    }
    let topic = kafka.topic("lag", 2).await;
    let group = unique("lag-group");
    let producer = Producer::new(&kafka.config()).unwrap();
    let produce = |counts: [usize; 2]| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            for (partition, n) in counts.into_iter().enumerate() {
                for i in 0..n {
                    let mut m = Outgoing::new(&topic, Some(format!("k{i}")), "x");
                    m.partition = Some(i32::try_from(partition).unwrap());
                    producer.send(&m).await.unwrap();
                }
            }
        }
    };
    produce([4, 6]).await;

    let runner = ConsumerRunner::new(
        &kafka.config(),
        producer.clone(),
        ConsumerSettings::new(&group, &[topic.as_str()]),
        Db::default(),
    )
    .unwrap();
    let db = runner.handler().clone();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown.clone()));
    let wait_for = |want: BTreeMap<i32, (i64, i64, i64)>| {
        let (group, topic) = (group.clone(), topic.clone());
        async move {
            let seen = eventually(Duration::from_secs(40), || {
                let now = reported(&group, &topic);
                let ok = now == want;
                async move { ok.then_some(()) }
            })
            .await;
            assert!(
                seen.is_some(),
                "metrics report {:?}, expected {want:?}",
                reported(&group, &topic)
            );
        }
    };

    // Caught up: committed at the end, no lag.
    let caught_up = BTreeMap::from([(0, (4, 4, 0)), (1, (6, 6, 0))]);
    wait_for(caught_up.clone()).await;
    if let Some(c) = &cluster {
        assert_eq!(described(c, &group, &topic), caught_up);
    }

    // The database goes down and records keep coming: nothing is committed, the lag grows,
    // and the metrics show it while the handler retries.
    db.down.store(true, Ordering::SeqCst);
    produce([3, 2]).await;
    let behind = BTreeMap::from([(0, (4, 7, 3)), (1, (6, 8, 2))]);
    wait_for(behind.clone()).await;
    if let Some(c) = &cluster {
        assert_eq!(
            described(c, &group, &topic),
            behind,
            "Kafka's tool and Kafkube's metrics disagree"
        );
    }

    // Back up: everything processed and committed.
    db.down.store(false, Ordering::SeqCst);
    wait_for(BTreeMap::from([(0, (7, 7, 0)), (1, (8, 8, 0))])).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
}
