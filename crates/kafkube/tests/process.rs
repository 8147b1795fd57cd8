//! The `kafkube` binary as users and Kubernetes run it: `up` in an empty directory, and logger
//! and hash processor replicas as separate processes, one of them killed with SIGKILL mid-stream.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Guard, banner_url, broker_in, free_port, kafkube, scalar, signal, spawn_reading, up_in, up_in_with};
use kafkube_bus::{Outgoing, Producer};
use kafkube_store::{Db, DbArgs};
use kafkube_testkit::{TestDb, TestKafka, eventually, unique};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_in_an_empty_directory_logs_writes_and_drains_on_ctrl_c() {
    if std::env::var("KAFKUBE_TEST_KAFKA_BROKERS").is_ok() {
        eprintln!("note: `up` is tested with its embedded broker even when KAFKUBE_TEST_KAFKA_BROKERS is set");
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, banner, rx) = up_in(dir.path());
    let url = banner_url(&banner, "students-api");
    let aggregator = banner_url(&banner, "aggregator");
    let hash = banner_url(&banner, "hash-gateway");

    let http = reqwest::Client::new();
    let started = Instant::now();
    for i in 0..20 {
        let res = http
            .post(&url)
            .json(&json!({"nim": format!("u{i}"), "nama": "Up"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let logs = Db::connect(
        &format!("sqlite:{}", dir.path().join("data/event-logs.db").display()),
        &DbArgs::default(),
    )
    .await
    .unwrap();
    let logged = eventually(Duration::from_secs(30), || async {
        (scalar(&logs, "SELECT COUNT(*) FROM event_logs").await >= 1).then_some(())
    })
    .await;
    assert!(logged.is_some(), "a POST reaches event_logs");
    eprintln!("first event logged {:?} after the first POST", started.elapsed());
    let metrics = kafkube_testkit::get_text(&url.replace("/api/mahasiswa", "/metrics")).await;
    assert!(metrics.contains("end_to_end_latency_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("kafkube_outbox_published_total"), "{metrics}");

    // The log aggregator runs in the same process.
    let event =
        json!({"topic": "auth", "event_id": "up-1", "timestamp": "2025-12-19T00:00:00Z", "source": "t", "payload": {}});
    let res = kafkube_testkit::post_json(&aggregator, &json!([event, event])).await;
    assert_eq!(res, (200, json!({"accepted": 2, "inserted": 1, "duplicates": 1})));

    // And the hash app: gateway and processor, over the embedded broker.
    let answer = eventually(Duration::from_secs(40), || async {
        let (status, body) = kafkube_testkit::post_json(&hash, &json!({"data": "hello world"})).await;
        (status == 200).then_some(body)
    })
    .await
    .expect("the hash gateway answers");
    assert_eq!(
        answer["hash"],
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );

    // The seed's latency test, as users run it against `up`.
    let csv = dir.path().join("latency.csv");
    let out = kafkube()
        .args([
            "latency",
            "--count",
            "50",
            "--url",
            &url.replace("/api/mahasiswa", ""),
            "--csv",
        ])
        .arg(&csv)
        .env(
            "LOG_DATABASE_URL",
            format!("sqlite:{}", dir.path().join("data/event-logs.db").display()),
        )
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in ["L_end_to_end", "L_kafka_queue", "L_consumer_processing"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} in\n{table}"));
        assert_eq!(line.split_whitespace().count(), 7, "{line}");
    }
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["latency", "(ms)", "avg", "min", "max", "P50", "P95", "P99"])
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 51, "header and one row per event");
    assert!(rows.starts_with("event_id,timestamp_api_sent,timestamp_kafka_received,timestamp_processed,"));

    // Outside `up`'s directory the default log database is not the event logger's: it says so
    // before sending a single student, and creates no file there.
    let elsewhere = tempfile::tempdir().unwrap();
    let students_before = http.get(&url).send().await.unwrap().headers()["x-total-count"].clone();
    let out = kafkube()
        .args(["latency", "--count", "5", "--url", &url.replace("/api/mahasiswa", "")])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("data/event-logs.db does not exist"), "{said}");
    assert!(said.contains("--log-database-url"), "{said}");
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing created"
    );
    let students_after = http.get(&url).send().await.unwrap().headers()["x-total-count"].clone();
    assert_eq!(students_before, students_after, "no student sent");

    // More writes, then Ctrl-C at once: the drain must still log every one of them.
    for i in 20..60 {
        http.post(&url)
            .json(&json!({"nim": format!("u{i}"), "nama": "Up"}))
            .send()
            .await
            .unwrap();
    }
    let before_stop = rx.try_iter().count(); // the lines below are the stop's
    eprintln!("{before_stop} lines logged before the stop");
    signal(&guard.0, "-INT");
    let status = tokio::task::spawn_blocking(move || {
        let s = guard.0.wait().unwrap();
        std::mem::forget(guard);
        s
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Every line, up to the end of both pipes.
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    assert!(lines.iter().any(|l| l.contains("kafkube stopped")), "{lines:?}");
    // The broker stops after the last client: no client reports it gone on the way out.
    let complaints: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("cannot reach Kafka"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");

    assert_eq!(scalar(&logs, "SELECT COUNT(*) FROM event_logs").await, 110);
    let main = Db::connect(
        &format!("sqlite:{}", dir.path().join("data/students.db").display()),
        &DbArgs::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        scalar(&main, "SELECT COUNT(*) FROM kafkube_outbox").await,
        0,
        "nothing left unpublished"
    );
}

/// Three `kafkube serve event-logger` processes in one group; one is killed with SIGKILL while
/// events stream in. Its partitions move to the survivors, and every event is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logger_replica_killed_mid_stream_loses_and_duplicates_nothing() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 4).await;
    let db = TestDb::postgres().await;
    // The replicas migrate too (concurrently, under sqlx's migration lock); migrating here first
    // lets the test query the table from the start.
    db.db.migrate(&kafkube_students::log_migrations()).await.unwrap();
    let group = unique("logger");
    let spawn = |name: &str| {
        Guard(
            kafkube()
                .args(["serve", "event-logger"])
                .envs(kafka.client_env())
                .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
                .env("LOG_DATABASE_URL", &db.url)
                .env("MAHASISWA_TOPIC", &topic)
                .env("EVENT_LOGGER_GROUP_ID", &group)
                .env("EVENT_LOGGER_INSTANCE", name)
                .env("EVENT_LOGGER_BATCH", "50")
                .env("OPS_PORT", "0")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut replicas = [spawn("r0"), spawn("r1"), spawn("r2")];

    // Stream 5,000 events over a few seconds.
    let cfg = kafka.config();
    let topic2 = topic.clone();
    let producer_task = tokio::spawn(async move {
        let producer = Producer::new(&cfg).unwrap();
        for chunk in 0..50 {
            let msgs: Vec<Outgoing> = (chunk * 100..(chunk + 1) * 100)
                .map(|i| {
                    let v = json!({"eventId": format!("k{i}"), "eventType": "MAHASISWA_CREATED",
                                   "timestamp_api_sent": kafkube_core::time::now_epoch_ms(), "data": {"id": i}});
                    Outgoing::new(&topic2, Some(format!("{}", i % 31)), v.to_string())
                })
                .collect();
            for r in producer.send_all(&msgs).await {
                r.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });

    // Once a replica has written rows, kill it without warning.
    let victim = eventually(Duration::from_secs(60), || async {
        let (n, name): (i64, String) = match &db.db {
            Db::Postgres(p) => sqlx::query_as("SELECT COUNT(*), MIN(consumer) FROM event_logs HAVING COUNT(*) > 500")
                .fetch_optional(p)
                .await
                .unwrap()?,
            Db::Sqlite(_) => unreachable!(),
        };
        Some((n, name))
    })
    .await
    .expect("replicas log events");
    let idx: usize = victim.1.trim_start_matches('r').parse().unwrap();
    signal(&replicas[idx].0, "-KILL");
    let _ = replicas[idx].0.wait();
    eprintln!("killed {} after {} rows", victim.1, victim.0);

    producer_task.await.unwrap();
    let done = eventually(Duration::from_secs(90), || async {
        (scalar(&db.db, "SELECT COUNT(*) FROM event_logs").await >= 5000).then_some(())
    })
    .await;
    let rows = scalar(&db.db, "SELECT COUNT(*) FROM event_logs").await;
    assert!(done.is_some(), "only {rows} of 5000 events logged");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scalar(&db.db, "SELECT COUNT(*) FROM event_logs").await, 5000);
    assert_eq!(
        scalar(&db.db, "SELECT COUNT(DISTINCT event_id) FROM event_logs").await,
        5000
    );

    // The survivors stop cleanly on SIGTERM.
    for (i, r) in replicas.iter_mut().enumerate() {
        if i != idx {
            signal(&r.0, "-TERM");
            assert!(r.0.wait().unwrap().success());
        }
    }
}

/// Two `kafkube serve hash-processor` processes behind one `kafkube serve hash-gateway`; one
/// processor is killed with SIGKILL mid-load. Every request gets the right hash or a 504, never
/// a wrong one, and the survivor takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_processor_killed_mid_load_never_yields_a_wrong_hash() {
    use kafkube_hash::model::sha256_hex;
    use std::sync::atomic::{AtomicU64, Ordering};

    let kafka = TestKafka::start();
    let (requests, responses) = (unique("hash_requests"), unique("hash_responses"));
    let (gateway_group, processor_group) = (unique("service_1"), unique("service_2"));
    // The topics do not exist: the services cannot create them through the Admin API (the
    // embedded broker of another process has none), so they ask the broker to auto-create them.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let service = |what: &str| {
        let mut c = kafkube();
        c.args(["serve", what])
            .envs(kafka.client_env())
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_REQUEST_TOPIC", &requests)
            .env("KAFKA_RESPONSE_TOPIC", &responses)
            .env("SERVICE_1_GROUP_ID", &gateway_group)
            .env("SERVICE_2_GROUP_ID", &processor_group)
            .env("SERVICE_1_HOST", "127.0.0.1")
            .env("SERVICE_1_PORT", port.to_string())
            .env("REQUEST_TIMEOUT", "2s")
            .env("HASH_PARTITIONS", "4")
            .env("OPS_PORT", "0")
            .stdout(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let mut gateway = service("hash-gateway");
    let mut processors = [service("hash-processor"), service("hash-processor")];
    let url: &'static str = Box::leak(format!("http://127.0.0.1:{port}/hash").into_boxed_str());
    let hash = move |data: String| async move {
        let (status, body) = kafkube_testkit::post_json(url, &json!({ "data": data })).await;
        (data, status, body)
    };
    // The gateway listens once its topics are set up (about 6 s against another process's
    // embedded broker, which has no Admin API); until then connections are refused.
    eventually(Duration::from_secs(60), || async {
        let res = kafkube_testkit::http_client()
            .post(url)
            .json(&json!({"data": "warm-up"}))
            .send()
            .await
            .ok()?;
        (res.status() == 200).then_some(())
    })
    .await
    .expect("gateway and processors answer");

    // 40 clients send requests until told to stop; one processor dies a moment in.
    let (ok, timed_out, stop) = (
        std::sync::Arc::new(AtomicU64::new(0)),
        std::sync::Arc::new(AtomicU64::new(0)),
        kafkube_core::Shutdown::new(),
    );
    let clients: Vec<_> = (0..40)
        .map(|c| {
            let (ok, timed_out, stop, hash) = (ok.clone(), timed_out.clone(), stop.clone(), hash);
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.is_triggered() {
                    let (data, status, body) = hash(format!("client {c} request {i}")).await;
                    match status {
                        200 => {
                            assert_eq!(body["hash"].as_str().unwrap(), sha256_hex(data.as_bytes()), "{data}");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        504 => drop(timed_out.fetch_add(1, Ordering::Relaxed)),
                        other => panic!("{data}: unexpected {other} {body}"),
                    }
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = ok.load(Ordering::Relaxed);
    assert!(before_kill > 0, "requests succeed before the kill");
    signal(&processors[0].0, "-KILL");
    let _ = processors[0].0.wait();
    // The survivor takes the dead one's partitions after the session timeout (6 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after_takeover = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.trigger();
    for c in clients {
        c.await.unwrap();
    }
    let (ok, timed_out) = (ok.load(Ordering::Relaxed), timed_out.load(Ordering::Relaxed));
    eprintln!("{ok} right hashes, {timed_out} timeouts ({before_kill} before the kill)");
    assert!(
        ok > after_takeover,
        "the surviving processor answers everything after the takeover"
    );
    let (_, status, body) = hash("hello world".into()).await;
    assert_eq!(
        (status, body["hash"].as_str()),
        (
            200,
            Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        )
    );

    // After the burst of timeouts, the gateway holds no pending request.
    let metrics = kafkube_testkit::get_text(&url.replace("/hash", "/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "kafkube_rpc_pending 0"),
        "pending gauge: {:?}",
        metrics
            .lines()
            .filter(|l| l.starts_with("kafkube_rpc"))
            .collect::<Vec<_>>()
    );

    for p in [&mut processors[1], &mut gateway] {
        signal(&p.0, "-TERM");
        assert!(p.0.wait().unwrap().success());
    }
}

/// `kafkube broker` alone, with `serve` processes against it: the apps' topics exist with the
/// partition counts their environment asks for, and a record produced to the aggregator's topic
/// is ingested by a separate `serve aggregator` process. SIGTERM stops it and removes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_alone_serves_separate_processes() {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let dir = tempfile::tempdir().unwrap();
    let (broker, bootstrap) = broker_in(dir.path(), &[("HASH_PARTITIONS", "5")]).await;

    let metadata_consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let md =
        tokio::task::spawn_blocking(move || metadata_consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap())
            .await
            .unwrap();
    let partitions = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len())
    };
    assert_eq!(partitions("hash_requests"), Some(5), "HASH_PARTITIONS is honoured");
    assert_eq!(partitions("hash_responses"), Some(5));
    assert_eq!(partitions("mahasiswa_events"), Some(4));
    assert_eq!(partitions("logs"), Some(4));
    assert!(partitions("logs.dlq").is_some());

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _aggregator = Guard(
        kafkube()
            .args(["serve", "aggregator"])
            .env("KAFKA_BROKERS", &bootstrap)
            .env(
                "AGGREGATOR_DATABASE_URL",
                format!("sqlite:{}", dir.path().join("agg.db").display()),
            )
            .env("AGGREGATOR_HOST", "127.0.0.1")
            .env("AGGREGATOR_PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let producer = Producer::new(&kafkube_bus::KafkaConfig::new(bootstrap.clone())).unwrap();
    let event = json!({"topic": "audit", "event_id": "via-kafka", "timestamp": "2025-12-19T00:00:00Z",
                       "source": "test", "payload": {"n": 1}});
    producer
        .send(&Outgoing::new("logs", Some("k"), event.to_string()))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/events?topic=audit");
    let stored = eventually(Duration::from_secs(60), || async {
        let res = reqwest::get(&url).await.ok()?;
        let events: serde_json::Value = res.json().await.ok()?;
        (events.as_array()?.len() == 1).then_some(events)
    })
    .await
    .expect("the record reaches the aggregator in the other process");
    assert_eq!(stored[0]["event_id"], "via-kafka");

    let mut broker = broker;
    signal(&broker.0, "-TERM");
    let status = broker.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !dir.path().join("bootstrap").exists(),
        "the bootstrap file is removed on exit"
    );
}

/// The README's scale-out: several `kafkube serve hash-processor` on one machine without
/// `OPS_PORT`. The first takes the default ops port (9090) unless something else has it; every
/// other one says the port is taken and serves `/health`, `/ready` and `/metrics` on a free port.
/// An `OPS_PORT` that is taken is an error naming the port and the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_replicas_on_one_machine_each_find_an_ops_port() {
    let kafka = TestKafka::start();
    let requests = kafka.topic("hash_requests", 4).await;
    let responses = kafka.topic("hash_responses", 4).await;
    let group = unique("processors");
    let start = |ops_port: Option<u16>| {
        let mut c = kafkube();
        c.args(["serve", "hash-processor"])
            .envs(kafka.client_env())
            .env("RUST_LOG", "kafkube_runtime=info,warn")
            .env("KAFKA_REQUEST_TOPIC", &requests)
            .env("KAFKA_RESPONSE_TOPIC", &responses)
            .env("SERVICE_2_GROUP_ID", &group);
        if let Some(p) = ops_port {
            c.env("OPS_PORT", p.to_string());
        }
        spawn_reading(&mut c)
    };
    // The port each one announces (after a warning when the default was taken).
    let ops_port = |rx: &std::sync::mpsc::Receiver<String>| {
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Some(port) = line.split("/health, /ready and /metrics on port ").nth(1) {
                return (port.trim().parse::<u16>().unwrap(), lines);
            }
            lines.push(line);
        }
        panic!("no ops port announced: {lines:?}");
    };
    let (_a, a_out) = start(None);
    let (a_port, _) = ops_port(&a_out);
    let (_b, b_out) = start(None);
    let (b_port, b_lines) = ops_port(&b_out);
    assert_ne!(a_port, b_port);
    if a_port == 9090 {
        assert!(
            b_lines
                .iter()
                .any(|l| l.contains("port 9090 is taken") && l.contains("OPS_PORT")),
            "{b_lines:?}"
        );
    }
    for port in [a_port, b_port] {
        let ready = eventually(Duration::from_secs(30), || async move {
            let res = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await.ok()?;
            res.status().is_success().then_some(())
        })
        .await;
        assert!(ready.is_some(), "port {port} answers /ready");
    }

    let (mut c, c_out) = start(Some(a_port));
    let status = tokio::task::spawn_blocking(move || c.0.wait().unwrap()).await.unwrap();
    assert!(!status.success());
    let said: Vec<String> = c_out.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("cannot listen on port {a_port} (OPS_PORT)"))),
        "{said:?}"
    );
}

/// `serve` with `KAFKA_BROKERS` at a port where nothing listens: one clear line that says where
/// and why (not librdkafka's retries, a hundred lines a second), `/ready` 503 with the same
/// cause, and Ctrl-C within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_that_is_not_there_is_said_once_clearly() {
    let (closed, port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let (mut child, rx) = spawn_reading(
        kafkube()
            .args(["serve", "aggregator"])
            .current_dir(dir.path())
            .env("KAFKA_BROKERS", format!("127.0.0.1:{closed}"))
            .env("RUST_LOG", "info")
            .env("AGGREGATOR_HOST", "127.0.0.1")
            .env("AGGREGATOR_PORT", port.to_string()),
    );
    let ready = eventually(Duration::from_secs(30), || async {
        let res = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await.ok()?;
        Some((res.status().as_u16(), res.json::<serde_json::Value>().await.ok()?))
    })
    .await
    .expect("the API answers while Kafka is away");
    let cause = format!("cannot reach Kafka at 127.0.0.1:{closed}: Connection refused");
    assert_eq!(ready.0, 503);
    assert_eq!(ready.1["checks"]["kafka"]["error"], cause.as_str(), "{}", ready.1);
    // Several seconds of librdkafka retrying, for three clients.
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(&child.0, "-INT");
    let stopping = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    let stop_took = stopping.elapsed();
    let lines: Vec<String> = rx.try_iter().collect();
    // Once in the log; the readiness report ("still waiting … for") quotes it every 5 s.
    let said = lines
        .iter()
        .filter(|l| l.contains(&cause) && !l.starts_with("still waiting"))
        .count();
    assert_eq!(said, 1, "said once: {lines:#?}");
    assert!(lines.len() < 30, "{} lines: {lines:#?}", lines.len());
    assert!(!lines.iter().any(|l| l.contains("librdkafka")), "{lines:#?}");
    assert!(status.success(), "{status:?}");
    assert!(stop_took < Duration::from_secs(10), "Ctrl-C took {stop_took:?}");
}

/// A database that is not there: the cause, said once while `serve` waits for it (connection
/// refused — not sqlx's "pool timed out", not a line per retry); a database that does not exist
/// or an SQLite directory that does not exist: the cause, and `serve` exits non-zero. No
/// directory is created outside ./data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_there_is_said_once_with_its_cause() {
    let kafka = TestKafka::start();
    let dir = tempfile::tempdir().unwrap();
    let students = |url: &str| {
        let mut c = kafkube();
        c.args(["serve", "students-api"])
            .current_dir(dir.path())
            .envs(kafka.client_env())
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", url)
            .env("PORT", free_port().to_string());
        c
    };
    // Unreachable: waits, saying why once.
    let closed = free_port();
    let (mut child, rx) = spawn_reading(&mut students(&format!("postgres://postgres@127.0.0.1:{closed}/x")));
    tokio::time::sleep(Duration::from_secs(8)).await;
    signal(&child.0, "-INT");
    let _ = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("cannot reach the database"))
        .collect();
    assert_eq!(said.len(), 1, "{lines:#?}");
    assert!(said[0].contains("Connection refused"), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("pool timed out")), "{lines:#?}");

    // No such database, no such directory: the cause, once, and a failed start.
    let missing = format!("kafkube_missing_{}", unique("db"));
    let base = kafkube_testkit::postgres_url();
    let no_db = format!("{}/{missing}", base.rsplit_once('/').unwrap().0);
    let no_dir = format!("sqlite:{}/no/such/dir/x.db", dir.path().display());
    for (url, cause) in [
        (no_db.as_str(), format!("database \"{missing}\" does not exist")),
        (
            no_dir.as_str(),
            format!("the directory {}/no/such/dir does not exist", dir.path().display()),
        ),
    ] {
        let out = tokio::task::spawn_blocking({
            let mut c = students(url);
            move || c.output().unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert_eq!(text.matches(&cause).count(), 1, "{cause}: {text}");
    }
    assert!(!dir.path().join("no").exists(), "no directory created outside ./data");
}

/// Ctrl-C while the log database is down: `up` does not stop silently with accepted events
/// unlogged. It waits, saying which group waits for how many records; once the database is back
/// every event is logged and `up` exits 0. A second Ctrl-C instead abandons them: exit status 1,
/// and the count is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_with_the_log_database_down_loses_no_event_silently() {
    const EVENTS: usize = 12;
    let log_db = TestDb::postgres().await;
    for abandon in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (guard, banner, rx) = up_in_with(dir.path(), &[("LOG_DATABASE_URL", &log_db.url)]);
        let url = banner_url(&banner, "students-api");
        let before = scalar(&log_db.db, "SELECT COUNT(*) FROM event_logs").await;
        log_db.set_reachable(false).await;
        let http = reqwest::Client::new();
        for i in 0..EVENTS {
            let res = http
                .post(&url)
                .json(&json!({"nim": format!("stop-{abandon}-{i}"), "nama": "Stop"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
        // The process's own /ready covers the consumers: it names the event logger's database
        // (the students API's own /ready is fine: its database is).
        let ready_url = banner
            .iter()
            .find_map(|l| l.strip_prefix("Every service's readiness: "))
            .and_then(|l| l.split_whitespace().next())
            .expect("the banner gives the process's /ready")
            .replace("localhost", "127.0.0.1");
        let not_ready = eventually(Duration::from_secs(20), || async {
            let res = http.get(&ready_url).send().await.ok()?;
            let body: serde_json::Value = res.json().await.ok()?;
            (body["checks"]["event-logger/database"]["ok"] == false).then_some(body)
        })
        .await
        .expect("/ready names the event logger's database");
        assert_eq!(not_ready["ready"], false, "{not_ready}");
        assert_eq!(not_ready["checks"]["students-api/database"]["ok"], true, "{not_ready}");
        signal(&guard.0, "-INT");
        // It says what it waits for.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let waiting = loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                panic!("`up` never said what it waits for: {seen:#?}");
            };
            if line.contains("stopping: waiting for group") {
                break line;
            }
            seen.push(line);
        };
        assert!(
            waiting.contains(&format!("handle {EVENTS} more record(s)")),
            "{waiting}"
        );
        let mut guard = guard;
        assert!(guard.0.try_wait().unwrap().is_none(), "still running while it waits");
        if abandon {
            signal(&guard.0, "-INT");
        } else {
            log_db.set_reachable(true).await;
        }
        let (status, _guard) = tokio::task::spawn_blocking(move || (guard.0.wait().unwrap(), guard))
            .await
            .unwrap();
        // The last lines may trail the exit by a moment.
        std::thread::sleep(Duration::from_millis(300));
        let rest: Vec<String> = rx.try_iter().collect();
        if abandon {
            log_db.set_reachable(true).await;
            assert_eq!(status.code(), Some(1), "{rest:#?}");
            assert!(
                rest.iter()
                    .any(|l| l.contains(&format!("stopped with {EVENTS} record(s) of group"))),
                "{rest:#?}"
            );
        } else {
            assert!(status.success(), "{status:?}: {rest:#?}");
            let logged = scalar(&log_db.db, "SELECT COUNT(*) FROM event_logs").await - before;
            assert_eq!(logged, EVENTS as i64, "every accepted event logged before the exit");
        }
    }
}

/// "kafkube is up" means up: the first request to each service's main route, sent the moment
/// the banner is printed and never retried, succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_answers_every_service_as_soon_as_it_says_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let (guard, banner, _rest) = up_in(dir.path());
    assert!(banner.iter().any(|l| l.starts_with("kafkube is up")), "{banner:?}");
    let students = banner_url(&banner, "students-api");
    let aggregator = banner_url(&banner, "aggregator");
    let hash = banner_url(&banner, "hash-gateway");
    let orders = format!("{}orders", banner_url(&banner, "restaurants"));
    let event =
        json!({"topic": "t", "event_id": "first", "timestamp": "2025-12-19T00:00:00Z", "source": "s", "payload": {}});
    let (student, data) = (json!({"nim": "first", "nama": "First"}), json!({"data": "hello world"}));
    let order = json!({"email": "first@example.com", "creditCard": "4242424242424242", "restaurant": "Sabich"});
    let (s, a, h, o) = tokio::join!(
        kafkube_testkit::post_json(&students, &student),
        kafkube_testkit::post_json(&aggregator, &event),
        kafkube_testkit::post_json(&hash, &data),
        kafkube_testkit::post_json(&orders, &order),
    );
    assert_eq!(s.0, 201, "students: {s:?}");
    assert_eq!(a.0, 200, "aggregator: {a:?}");
    assert_eq!(h.0, 200, "hash: {h:?}");
    assert_eq!(o.0, 202, "restaurants: {o:?}");
    assert_eq!(
        h.1["hash"],
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    signal(&guard.0, "-TERM");
    let mut guard = guard;
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `kafkube migrate` applies every app's migrations to each database it is given, and says so
/// without printing a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_migrates_every_app_database() {
    let main = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let log = format!("sqlite:{}", dir.path().join("log.db").display());
    let aggregator = TestDb::postgres().await;
    let with_password = aggregator.url.replacen("postgres@", "postgres:not-needed@", 1);
    let out = kafkube()
        .arg("migrate")
        .env("DATABASE_URL", &main.url)
        .env("LOG_DATABASE_URL", &log)
        .env("AGGREGATOR_DATABASE_URL", &with_password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("not-needed"), "a password was printed:\n{stdout}");
    assert!(stdout.contains("aggregator"), "{stdout}");
    let log_db = Db::connect(&log, &DbArgs::default()).await.unwrap();
    for (db, table) in [
        (&main.db, "mahasiswa"),
        (&main.db, "kafkube_outbox"),
        (&log_db, "event_logs"),
        (&aggregator.db, "agg_events"),
        (&aggregator.db, "agg_stats"),
    ] {
        // Fails (the query errors) unless the table was created.
        let rows = scalar(db, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert!(rows >= 0, "{table}");
    }
}

/// The restaurants chain as three processes against a bank over HTTP; `serve
/// restaurant-payments` is killed with SIGKILL while orders stream in, then started again. Every
/// order is charged once (the bank makes one charge per idempotency key, so a payments service
/// that re-keyed a retried charge would show as a second charge), reaches `email_sent` once, and
/// has one e-mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payments_process_killed_mid_stream_charges_every_order_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};

    const ORDERS: usize = 300;
    let kafka = TestKafka::start();
    let (order, confirm, status) = (
        kafka.topic("order", 4).await,
        kafka.topic("order_confirm", 4).await,
        kafka.topic("order_status", 4).await,
    );
    let orders_db = TestDb::postgres().await;
    let payments_db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = dir.path().join("mail");

    // The bank: one charge per idempotency key (asked again, it answers with the same charge),
    // a few milliseconds per request.
    #[derive(Default)]
    struct Bank {
        requests: u64,
        /// Requests per key.
        charges: HashMap<String, u32>,
    }
    let bank = Arc::new(Mutex::new(Bank::default()));
    let state = bank.clone();
    let app = axum::Router::new().route(
        "/charges",
        axum::routing::post(move |headers: HeaderMap| {
            let state = state.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                let Some(key) = headers.get("idempotency-key").and_then(|k| k.to_str().ok()) else {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"error": "no Idempotency-Key"})),
                    );
                };
                let mut b = state.lock().unwrap();
                b.requests += 1;
                *b.charges.entry(key.to_owned()).or_insert(0) += 1;
                (StatusCode::CREATED, axum::Json(json!({"id": format!("ch_{key}")})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bank_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let port = common::free_port();
    let service = |name: &str| {
        let mut c = kafkube();
        c.args(["serve", name])
            .envs(kafka.client_env())
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("ORDER_TOPIC", &order)
            .env("ORDER_CONFIRM_TOPIC", &confirm)
            .env("ORDER_STATUS_TOPIC", &status)
            .env("ORDER_STATUS_GROUP_ID", unique("status"))
            .env("PAYMENTS_GROUP_ID", format!("{order}-payments"))
            .env("MAILER_GROUP_ID", unique("mailer"))
            .env("RESTAURANTS_DATABASE_URL", &orders_db.url)
            .env("PAYMENTS_DATABASE_URL", &payments_db.url)
            .env(
                "MAILER_DATABASE_URL",
                format!("sqlite:{}", dir.path().join("mailer.db").display()),
            )
            .env("MAIL_DIR", &mail_dir)
            .env("BANK_URL", &bank_url)
            .env("RESTAURANTS_PORT", port.to_string())
            .env("OPS_PORT", "0")
            .current_dir(dir.path())
            .stdout(Stdio::null());
        Guard(c.spawn().unwrap())
    };
    let mut api = service("restaurants");
    let mut payments = service("restaurant-payments");
    let mut mailer = service("restaurant-mailer");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(60), || async {
        let r = client.get(format!("{base}/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
    .expect("the restaurants API gets ready");

    // ~100 orders a second; payments is killed once the bank has seen a third of them.
    let mut ids = Vec::with_capacity(ORDERS);
    let mut killed_at = None;
    for i in 0..ORDERS {
        let res = client
            .post(format!("{base}/orders"))
            .json(&json!({"email": format!("guest{i}@example.com"), "creditCard": "4242 4242 4242 4242", "restaurant": "Sabich"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let body: serde_json::Value = res.json().await.unwrap();
        ids.push(body["order_id"].as_str().unwrap().to_owned());
        let charged = bank.lock().unwrap().charges.len();
        if killed_at.is_none() && charged >= ORDERS / 3 {
            signal(&payments.0, "-KILL");
            let _ = payments.0.wait();
            killed_at = Some(charged);
            tokio::time::sleep(Duration::from_millis(500)).await;
            payments = service("restaurant-payments");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = killed_at.expect("the bank charged a third of the orders while they streamed in");
    assert!(killed_at < ORDERS, "killed mid-stream");

    let done = eventually(Duration::from_secs(120), || async {
        let n = scalar(&orders_db.db, "SELECT COUNT(*) FROM orders WHERE status = 'email_sent'").await;
        (n == ORDERS as i64).then_some(())
    })
    .await;
    let sent = scalar(&orders_db.db, "SELECT COUNT(*) FROM orders WHERE status = 'email_sent'").await;
    assert!(done.is_some(), "{sent} of {ORDERS} orders reached email_sent");

    {
        // A charge per key: a key that is not an order id would be a second charge of some order.
        let b = bank.lock().unwrap();
        for id in &ids {
            assert!(b.charges.contains_key(id), "order {id} was charged under its id");
        }
        assert_eq!(b.charges.len(), ORDERS, "one charge per order, no other keys");
        let asked_again = b.charges.values().filter(|&&n| n > 1).count();
        eprintln!(
            "payments killed after {killed_at} charges; the bank saw {} requests for {ORDERS} orders \
             ({asked_again} orders asked again with their key after the kill)",
            b.requests
        );
    }
    assert_eq!(
        scalar(&orders_db.db, "SELECT COUNT(*) FROM order_status WHERE status = 'paid'").await,
        ORDERS as i64
    );
    let mails = std::fs::read_dir(&mail_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "eml"));
    assert_eq!(mails.count(), ORDERS, "one e-mail per order");

    for p in [&mut api, &mut payments, &mut mailer] {
        signal(&p.0, "-TERM");
        assert!(p.0.wait().unwrap().success());
    }
}
