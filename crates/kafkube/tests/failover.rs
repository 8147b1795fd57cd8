//! Broker failures on a real 3-node Kafka cluster (replication factor 3, `min.insync.replicas=2`,
//! `acks=all`, idempotent producers), with the services running as `kafkube serve` processes:
//!
//! - the leader of the busiest partition is killed with SIGKILL while students POSTs, aggregator
//!   events (through Kafka) and hash requests flow, and restarted later: nothing is lost or
//!   duplicated, every hash is right or a 504, and the consumers move on without help;
//! - the whole cluster is stopped and started again (data on disk): POSTs keep succeeding
//!   (the outbox holds their events), and every event arrives once the cluster is back.
//!
//! They need the cluster's control (`scripts/kafka` and its state directory), so they are
//! `#[ignore]`d in the ordinary legs; `scripts/test` runs them in its `failover` leg with
//! `KAFKUBE_TEST_KAFKA_CLUSTER` set to the state directory of a 3-node cluster it started.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Guard, free_port, kafkube, scalar};
use kafkube_bus::{Outgoing, Producer};
use kafkube_hash::model::sha256_hex;
use kafkube_store::Db;
use kafkube_testkit::{TestDb, TestKafka, eventually, post_json, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

/// Control of the test's cluster through `scripts/kafka`.
struct ClusterCtl {
    state: String,
}

impl ClusterCtl {
    /// The 3-node cluster of the failover leg, or `None` (skipped) elsewhere.
    fn from_env() -> Option<Self> {
        match std::env::var("KAFKUBE_TEST_KAFKA_CLUSTER") {
            Ok(state) if !state.is_empty() => Some(Self { state }),
            _ => {
                eprintln!("skipped: needs a 3-node cluster it can control (KAFKUBE_TEST_KAFKA_CLUSTER, scripts/test)");
                None
            }
        }
    }

    /// Runs `scripts/kafka ARGS` on a blocking thread (starting a broker takes seconds, and the
    /// load must go on meanwhile).
    async fn run(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka");
        let started = Instant::now();
        let mut command = Command::new("bash");
        command
            .arg(script)
            .args(args)
            .env("KAFKUBE_KAFKA_DIR", &self.state)
            .stdout(Stdio::null());
        let status = tokio::task::spawn_blocking(move || command.status().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "scripts/kafka {args:?} failed");
        eprintln!("scripts/kafka {} took {:?}", args.join(" "), started.elapsed());
    }
}

/// `GET url` answers 200.
async fn answers(url: &str) -> bool {
    reqwest::get(url).await.is_ok_and(|r| r.status() == 200)
}

/// The partition with the most records among `topics`, and the broker that leads it.
fn busiest_partition(kafka: &TestKafka, topics: &[&str]) -> (String, i32, i32) {
    let consumer: BaseConsumer = kafka.config().consumer_config(&unique("probe")).create().unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut best = (String::new(), -1, -1, -1i64);
    for t in md.topics().iter().filter(|t| topics.contains(&t.name())) {
        for p in t.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .unwrap();
            if high > best.3 {
                best = (t.name().to_owned(), p.id(), p.leader(), high);
            }
        }
    }
    eprintln!(
        "busiest partition: {}[{}] with {} records, led by broker {}",
        best.0, best.1, best.3, best.2
    );
    (best.0, best.1, best.2)
}

/// The leader of `topic[partition]` now (`None` while it has none). On a blocking thread: the
/// request may wait for a broker that is gone, and must not stall the other measurements.
async fn leader_of(kafka: &TestKafka, topic: &str, partition: i32) -> Option<i32> {
    let consumer: BaseConsumer = kafka.config().consumer_config(&unique("probe")).create().unwrap();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)).ok()?;
        let p = md.topics().first()?.partitions().iter().find(|p| p.id() == partition)?;
        (p.leader() >= 0).then_some(p.leader())
    })
    .await
    .unwrap()
}

/// The offset `group` has committed on `topic[partition]` (-1 when none or unknown).
async fn committed(kafka: &TestKafka, group: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = kafka.config().consumer_config(group).create().unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tokio::task::spawn_blocking(move || {
        consumer
            .committed_offsets(tpl, Duration::from_secs(2))
            .ok()
            .and_then(|t| t.elements().first().and_then(|e| e.offset().to_raw()))
            .unwrap_or(-1)
    })
    .await
    .unwrap()
}

/// When `count` first grows after `since`, polled every 100 ms for up to `limit`.
async fn resumes_after(db: &Db, sql: &str, since: Instant, limit: Duration) -> Option<Duration> {
    let before = scalar(db, sql).await;
    while since.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if scalar(db, sql).await > before {
            return Some(since.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a 3-node Kafka it can control: scripts/test runs it in the failover leg"]
async fn a_killed_partition_leader_loses_and_duplicates_nothing() {
    let Some(ctl) = ClusterCtl::from_env() else { return };
    let kafka = TestKafka::start();
    let students_topic = kafka.topic("mahasiswa_events", 4).await;
    let logs_topic = kafka.topic("logs", 4).await;
    let hash_requests = kafka.topic("hash_requests", 4).await;
    let hash_responses = kafka.topic("hash_responses", 4).await;
    let students_db = TestDb::postgres().await;
    let aggregator_db = TestDb::postgres().await;
    for m in kafkube_students::main_migrations() {
        students_db.db.migrate(&m).await.unwrap();
    }
    students_db
        .db
        .migrate(&kafkube_students::log_migrations())
        .await
        .unwrap();
    aggregator_db
        .db
        .migrate(&kafkube_aggregator::migrations())
        .await
        .unwrap();

    let (logger_group, aggregator_group, processor_group) =
        (unique("logger"), unique("aggregator"), unique("service_2"));
    let (students_port, aggregator_port, gateway_port) = (free_port(), free_port(), free_port());
    let (logger_ops, processor_ops) = (free_port(), free_port());
    let serve = |service: &str, ops: u16| {
        let mut c = kafkube();
        c.args(["serve", service])
            .envs(kafka.client_env())
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_TIMEOUT", "60")
            .env("OPS_PORT", ops.to_string())
            .env("DATABASE_URL", &students_db.url)
            .env("LOG_DATABASE_URL", &students_db.url)
            .env("MAHASISWA_TOPIC", &students_topic)
            .env("STUDENTS_HOST", "127.0.0.1")
            .env("STUDENTS_PORT", students_port.to_string())
            .env("EVENT_LOGGER_GROUP_ID", &logger_group)
            .env("AGGREGATOR_DATABASE_URL", &aggregator_db.url)
            .env("AGGREGATOR_TOPICS", &logs_topic)
            .env("AGGREGATOR_GROUP_ID", &aggregator_group)
            .env("AGGREGATOR_HOST", "127.0.0.1")
            .env("AGGREGATOR_PORT", aggregator_port.to_string())
            .env("KAFKA_REQUEST_TOPIC", &hash_requests)
            .env("KAFKA_RESPONSE_TOPIC", &hash_responses)
            .env("SERVICE_1_GROUP_ID", unique("service_1"))
            .env("SERVICE_2_GROUP_ID", &processor_group)
            .env("SERVICE_1_HOST", "127.0.0.1")
            .env("SERVICE_1_PORT", gateway_port.to_string())
            .env("REQUEST_TIMEOUT", "5s")
            .stdout(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let _services = [
        serve("students-api", 0),
        serve("event-logger", logger_ops),
        serve("aggregator", 0),
        serve("hash-gateway", 0),
        serve("hash-processor", processor_ops),
    ];
    let students = format!("http://127.0.0.1:{students_port}");
    let aggregator = format!("http://127.0.0.1:{aggregator_port}");
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    for ready in [
        format!("{students}/ready"),
        format!("{aggregator}/ready"),
        format!("{gateway}/ready"),
        format!("http://127.0.0.1:{logger_ops}/ready"),
        format!("http://127.0.0.1:{processor_ops}/ready"),
    ] {
        eventually(Duration::from_secs(90), || async {
            answers(&ready).await.then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{ready} never answered 200"));
    }

    // Load, until `stop`: students POSTs (~50/s), aggregator events through Kafka (~1,000/s),
    // and two hash clients.
    let stop = Arc::new(AtomicBool::new(false));
    let students_load = tokio::spawn({
        let (stop, url) = (stop.clone(), format!("{students}/api/mahasiswa"));
        async move {
            let (mut created, mut other) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = post_json(&url, &json!({"nim": format!("f{i}"), "nama": format!("N{i}")})).await;
                if status == 201 {
                    created += 1;
                } else {
                    other.push((status, body));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (created, other)
        }
    });
    // Each batch is sent on its own task, so that records for a partition whose leader is gone
    // do not hold back those for the others (as independent producers would not).
    let aggregator_load = tokio::spawn({
        let (stop, cfg, topic) = (stop.clone(), kafka.config(), logs_topic.clone());
        async move {
            let producer = Producer::new(&cfg).unwrap();
            let mut batches = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ids: Vec<String> = (i..i + 50).map(|n| format!("e{n}")).collect();
                i += 50;
                let (producer, topic) = (producer.clone(), topic.clone());
                batches.push(tokio::spawn(async move {
                    let msgs: Vec<Outgoing> = ids
                        .iter()
                        .map(|id| {
                            let event = json!({"topic": "failover", "event_id": id, "timestamp": "2026-11-24T00:00:00Z",
                                               "source": "failover-test", "payload": {"id": id}});
                            Outgoing::new(&topic, Some(id.as_str()), event.to_string())
                        })
                        .collect();
                    let results = producer.send_all(&msgs).await;
                    ids.into_iter().zip(results).collect::<Vec<_>>()
                }));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (mut acked, mut failed) = (HashSet::new(), HashSet::new());
            for batch in batches {
                for (id, r) in batch.await.unwrap() {
                    if r.is_ok() {
                        acked.insert(id);
                    } else {
                        failed.insert(id);
                    }
                }
            }
            (acked, failed)
        }
    });
    let hash_load: Vec<_> = (0..2)
        .map(|c| {
            let (stop, url) = (stop.clone(), format!("{gateway}/hash"));
            tokio::spawn(async move {
                let (mut right, mut timeouts, mut wrong, mut other) = (0u64, 0u64, Vec::new(), Vec::new());
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let data = format!("c{c}-{i}");
                    let (status, body) = post_json(&url, &json!({ "data": data })).await;
                    match status {
                        200 if body["hash"] == sha256_hex(data.as_bytes()) => right += 1,
                        200 => wrong.push((data, body)),
                        504 => timeouts += 1,
                        _ => other.push((status, body)),
                    }
                    i += 1;
                }
                (right, timeouts, wrong, other)
            })
        })
        .collect();

    // Let it run, then kill the leader of the busiest partition.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (topic, partition, leader) = busiest_partition(&kafka, &[&students_topic, &logs_topic, &hash_requests]);
    let group = if topic == students_topic {
        &logger_group
    } else if topic == logs_topic {
        &aggregator_group
    } else {
        &processor_group
    };
    let committed_before = committed(&kafka, group, &topic, partition).await;
    eprintln!("killing broker {leader}, which leads {topic}[{partition}] (group {group})");
    let killed_at = Instant::now();
    ctl.run(&["kill-broker", &leader.to_string()]).await;

    // The consumers move on by themselves: rows keep coming from the partitions whose leader
    // lives, and the group commits past the killed leader's partition once Kafka has moved it.
    let limit = Duration::from_secs(40);
    let watch = async {
        let (mut new_leader, mut moved_on, mut others) = (None, None, None);
        let partitions = 4;
        let mut before = Vec::new();
        for p in 0..partitions {
            before.push(committed(&kafka, group, &topic, p).await);
        }
        while killed_at.elapsed() < limit && (moved_on.is_none() || new_leader.is_none() || others.is_none()) {
            if new_leader.is_none() && leader_of(&kafka, &topic, partition).await.is_some_and(|l| l != leader) {
                new_leader = Some(killed_at.elapsed());
            }
            for p in 0..partitions {
                let now = committed(&kafka, group, &topic, p).await;
                if now > before[usize::try_from(p).unwrap()] {
                    if p == partition {
                        moved_on.get_or_insert(killed_at.elapsed());
                    } else {
                        others.get_or_insert(killed_at.elapsed());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (new_leader, moved_on, others)
    };
    let (logger_rows, aggregator_rows, (new_leader, moved_on, others)) = tokio::join!(
        resumes_after(&students_db.db, "SELECT COUNT(*) FROM event_logs", killed_at, limit),
        resumes_after(&aggregator_db.db, "SELECT COUNT(*) FROM agg_events", killed_at, limit),
        watch
    );
    eprintln!(
        "after the kill: rows written again after {logger_rows:?} (event logger) and {aggregator_rows:?} (aggregator); \
         {topic}[{partition}] had a new leader after {new_leader:?}, and group {group} committed past offset \
         {committed_before} there after {moved_on:?} (on its other partitions after {others:?}; consumer session \
         timeout 6 s)"
    );
    assert!(
        logger_rows.is_some(),
        "the event logger did not move on within {limit:?}"
    );
    assert!(
        aggregator_rows.is_some(),
        "the aggregator did not move on within {limit:?}"
    );
    assert!(
        moved_on.is_some(),
        "group {group} did not move on on {topic}[{partition}] within {limit:?}"
    );

    // Later the broker comes back, and the load goes on a little longer.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(killed_at.elapsed())).await;
    ctl.run(&["start-broker", &leader.to_string()]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::SeqCst);

    let (created, refused) = students_load.await.unwrap();
    let (acked, failed) = aggregator_load.await.unwrap();
    let (mut right, mut timeouts) = (0, 0);
    for h in hash_load {
        let (r, t, wrong, other) = h.await.unwrap();
        assert!(wrong.is_empty(), "wrong hashes: {wrong:?}");
        assert!(other.is_empty(), "hash answers neither right nor 504: {other:?}");
        right += r;
        timeouts += t;
    }
    eprintln!(
        "load: {created} students created ({} refused), {} aggregator events acknowledged ({} failed), {right} hashes right, {timeouts} timed out (504)",
        refused.len(),
        acked.len(),
        failed.len()
    );
    assert!(refused.is_empty(), "POSTs refused while a broker was down: {refused:?}");
    assert!(created > 100 && acked.len() > 1000 && right > 100);

    // Everything arrives, once.
    let created = i64::try_from(created).unwrap();
    let logged = eventually(Duration::from_secs(60), || async {
        (scalar(&students_db.db, "SELECT COUNT(*) FROM event_logs").await >= created).then_some(())
    })
    .await;
    let rows = scalar(&students_db.db, "SELECT COUNT(*) FROM event_logs").await;
    assert!(logged.is_some(), "{rows} of {created} events logged");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scalar(&students_db.db, "SELECT COUNT(*) FROM event_logs").await,
        created,
        "duplicates logged"
    );
    assert_eq!(
        scalar(&students_db.db, "SELECT COUNT(DISTINCT event_id) FROM event_logs").await,
        created
    );
    assert_eq!(scalar(&students_db.db, "SELECT COUNT(*) FROM mahasiswa").await, created);

    let stored = eventually(Duration::from_secs(60), || async {
        let Db::Postgres(p) = &aggregator_db.db else {
            unreachable!()
        };
        let ids: Vec<(String,)> = sqlx::query_as("SELECT event_id FROM agg_events WHERE topic = 'failover'")
            .fetch_all(p)
            .await
            .unwrap();
        let ids: HashSet<String> = ids.into_iter().map(|(id,)| id).collect();
        acked.is_subset(&ids).then_some(ids)
    })
    .await
    .expect("every acknowledged aggregator event is stored");
    // A send that failed may still have been written (the broker died before it answered);
    // nothing else may appear.
    assert!(
        stored.iter().all(|id| acked.contains(id) || failed.contains(id)),
        "events stored that were never sent"
    );
    let stats: serde_json::Value = reqwest::get(format!("{aggregator}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["received"].as_i64().unwrap(),
        stats["unique_processed"].as_i64().unwrap() + stats["duplicate_dropped"].as_i64().unwrap(),
        "{stats}"
    );
    assert_eq!(
        stats["unique_processed"].as_i64().unwrap(),
        i64::try_from(stored.len()).unwrap(),
        "{stats}"
    );
    eprintln!("aggregator stats: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a 3-node Kafka it can control: scripts/test runs it in the failover leg"]
async fn a_whole_cluster_stopped_and_restarted_loses_nothing() {
    let Some(ctl) = ClusterCtl::from_env() else { return };
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 4).await;
    let db = TestDb::postgres().await;
    for m in kafkube_students::main_migrations() {
        db.db.migrate(&m).await.unwrap();
    }
    db.db.migrate(&kafkube_students::log_migrations()).await.unwrap();
    let (port, logger_ops) = (free_port(), free_port());
    let serve = |service: &str, ops: u16| {
        let mut c = kafkube();
        c.args(["serve", service])
            .envs(kafka.client_env())
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("OPS_PORT", ops.to_string())
            .env("DATABASE_URL", &db.url)
            .env("LOG_DATABASE_URL", &db.url)
            .env("MAHASISWA_TOPIC", &topic)
            .env("STUDENTS_HOST", "127.0.0.1")
            .env("STUDENTS_PORT", port.to_string())
            .env("EVENT_LOGGER_GROUP_ID", unique("logger"))
            .stdout(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let _services = [serve("students-api", 0), serve("event-logger", logger_ops)];
    let api = format!("http://127.0.0.1:{port}");
    for ready in [format!("{api}/ready"), format!("http://127.0.0.1:{logger_ops}/ready")] {
        eventually(Duration::from_secs(90), || async {
            answers(&ready).await.then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{ready} never answered 200"));
    }
    let post = |i: u32| {
        let url = format!("{api}/api/mahasiswa");
        async move { post_json(&url, &json!({"nim": format!("s{i}"), "nama": format!("N{i}")})).await }
    };
    let count = || scalar(&db.db, "SELECT COUNT(*) FROM event_logs");
    for i in 0..20 {
        assert_eq!(post(i).await.0, 201);
    }
    eventually(Duration::from_secs(30), || async {
        (count().await == 20).then_some(())
    })
    .await
    .expect("the first 20 events are logged");

    // The whole cluster goes down; writes go on (their events wait in the outbox).
    ctl.run(&["stop"]).await;
    for i in 20..70 {
        let (status, body) = post(i).await;
        assert_eq!(status, 201, "POST while the cluster is down: {body}");
    }
    let waiting = kafkube_outbox::pending(&db.db).await.unwrap();
    eprintln!("cluster down: 50 POSTs answered 201, {waiting} events waiting in the outbox");
    assert_eq!(count().await, 20);

    // Back with its data: everything arrives, once.
    let restarted = Instant::now();
    ctl.run(&["resume"]).await;
    let arrived = eventually(Duration::from_secs(90), || async {
        (count().await >= 70).then_some(())
    })
    .await;
    eprintln!(
        "cluster back: all 70 events logged {:?} after `scripts/kafka resume` began",
        restarted.elapsed()
    );
    assert!(arrived.is_some(), "only {} of 70 events logged", count().await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count().await, 70);
    assert_eq!(
        scalar(&db.db, "SELECT COUNT(DISTINCT event_id) FROM event_logs").await,
        70
    );
}
