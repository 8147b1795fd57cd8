//! The aggregator contract on SQLite and PostgreSQL: body shapes, 400s that name the event and
//! field, deduplication by `(topic, event_id)` under concurrency and across restarts, the
//! counters' invariant, and HTTP and Kafka ingest deduplicated against each other.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kafkube_aggregator::api::{AppState, router};
use kafkube_aggregator::{AggregatorArgs, AggregatorService};
use kafkube_store::{Db, DbArgs};
use kafkube_testkit::{Backend, Spawned, TestDb, TestKafka, backend_tests, eventually, get_json, post_json, spawn};
use serde_json::{Value, json};
use tower::ServiceExt;

fn ev(topic: &str, id: &str) -> Value {
    json!({"topic": topic, "event_id": id, "timestamp": "2025-12-19T00:00:00Z", "source": "demo", "payload": {"x": 1}})
}

async fn app(backend: Backend) -> (TestDb, AppState) {
    let t = TestDb::new(backend).await;
    t.db.migrate(&kafkube_aggregator::migrations()).await.unwrap();
    let state = AppState::new(t.db.clone(), 2, 5000);
    (t, state)
}

async fn call(state: &AppState, method: &str, uri: &str, body: Option<String>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let res = router(state.clone())
        .oneshot(req.body(body.map_or_else(Body::empty, Body::from)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn publish(state: &AppState, body: Value) -> (StatusCode, Value) {
    call(state, "POST", "/publish", Some(body.to_string())).await
}

async fn stats_hold_the_invariant(state: &AppState) -> Value {
    let (status, s) = call(state, "GET", "/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    for key in ["received", "unique_processed", "duplicate_dropped", "topics", "uptime"] {
        assert!(s.get(key).is_some(), "missing {key}: {s}");
    }
    assert_eq!(
        s["received"].as_i64().unwrap(),
        s["unique_processed"].as_i64().unwrap() + s["duplicate_dropped"].as_i64().unwrap()
    );
    s
}

async fn body_shapes_and_deduplication(backend: Backend) {
    let (_t, state) = app(backend).await;
    assert_eq!(
        publish(&state, ev("auth", "A-1")).await,
        (StatusCode::OK, json!({"accepted": 1, "inserted": 1, "duplicates": 0}))
    );
    // Same id, other topic: a different event.
    assert_eq!(publish(&state, json!([ev("payment", "A-1")])).await.1["inserted"], 1);
    // A batch of 5 with 2 repeats (one of them of an earlier batch).
    let batch = json!({"events": [ev("orders", "o1"), ev("orders", "o2"), ev("orders", "o1"), ev("orders", "o3"), ev("auth", "A-1")]});
    assert_eq!(
        publish(&state, batch).await.1,
        json!({"accepted": 5, "inserted": 3, "duplicates": 2})
    );

    let (_, orders) = call(&state, "GET", "/events?topic=orders", None).await;
    let ids: Vec<_> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["o3", "o2", "o1"], "only that topic, newest first, no repeats");
    let first = &orders[0];
    for key in ["topic", "event_id", "timestamp", "source", "payload", "received_at"] {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    assert_eq!(first["payload"], json!({"x": 1}));
    assert_eq!(
        call(&state, "GET", "/events?topic=nope", None).await,
        (StatusCode::OK, json!([]))
    );
    assert_eq!(
        call(&state, "GET", "/events?topic=orders&limit=1", None)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for bad in ["limit=0", "limit=5001", "limit=x"] {
        assert_eq!(
            call(&state, "GET", &format!("/events?{bad}"), None).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(
        (
            s["received"].as_i64(),
            s["unique_processed"].as_i64(),
            s["duplicate_dropped"].as_i64()
        ),
        (Some(7), Some(5), Some(2))
    );
    assert_eq!(s["topics"], json!(["auth", "orders", "payment"]));
}

async fn schema_errors_are_400_naming_event_and_field(backend: Backend) {
    let (_t, state) = app(backend).await;
    let mut bad = ev("auth", "x");
    bad["timestamp"] = json!("not a time");
    let (status, err) = publish(&state, json!([ev("auth", "ok"), bad])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = err["error"].as_str().unwrap();
    assert!(msg.contains("events[1]") && msg.contains("timestamp"), "{msg}");
    let (status, err) = publish(&state, json!({"topic": "auth"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("event_id"), "{err}");
    let (status, err) = call(&state, "POST", "/publish", Some("{not json".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().starts_with("invalid JSON"));
    // The body must say it is JSON; a charset parameter is fine.
    for (content_type, expected) in [
        (None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some("application/json; charset=utf-8"), StatusCode::OK),
    ] {
        let mut req = Request::builder().method("POST").uri("/publish");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let body = Body::from(ev("auth", &format!("ct-{content_type:?}")).to_string());
        let res = router(state.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
        assert_eq!(res.status(), expected, "{content_type:?}");
    }
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(s["received"], 1, "only the accepted JSON body counts");
}

/// Text PostgreSQL cannot store (NUL, unpaired surrogates, nesting past its stack) is the
/// client's fault on every backend: 400 naming the event and the field, decided before the
/// database, whether the body takes the fast reading or the detailed one. Nothing of the batch
/// is stored, and the same events without the fault are accepted after.
async fn unstorable_text_is_400_on_every_backend(backend: Backend) {
    let (_t, state) = app(backend).await;
    let deep = format!(
        "{{\"topic\":\"t\",\"event_id\":\"deep\",\"timestamp\":\"2025-12-19T00:00:00Z\",\"source\":\"s\",\"payload\":{{\"p\":{}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let with = |field: &str, raw: &str| {
        let good = ev("auth", "fine").to_string();
        let one = ev("auth", "bad").to_string();
        let one = match field {
            "payload" => one.replacen(r#""payload":{"x":1}"#, &format!(r#""payload":{{"x":"{raw}"}}"#), 1),
            _ => one.replacen(&format!(r#""{field}":""#), &format!(r#""{field}":"{raw}"#), 1),
        };
        assert_ne!(one, ev("auth", "bad").to_string(), "{field} replaced");
        format!("[{good},{one}]")
    };
    let cases = [
        (
            with("topic", "\\u0000"),
            "events[1]: `topic` must not contain the NUL character",
        ),
        (
            with("event_id", "a\\u0000"),
            "events[1]: `event_id` must not contain the NUL character",
        ),
        (
            with("source", "\\u0000b"),
            "events[1]: `source` must not contain the NUL character",
        ),
        (
            with("payload", "\\u0000"),
            "events[1]: `payload` must not contain the NUL character",
        ),
        (
            with("payload", "\\ud800"),
            "events[1]: `payload` has an unpaired surrogate escape",
        ),
        (deep, "event: `payload` is nested deeper than 100 levels"),
        // A key given twice: PostgreSQL's jsonb would keep the last, SQLite both; a field given
        // twice would be last-wins. Refused, as every app refuses it.
        (
            with("payload", "1\",\"x\":\"2"),
            "events[1]: `payload` has the key \"x\" twice in one object",
        ),
        (
            ev("auth", "twice")
                .to_string()
                .replacen(r#""topic":"auth""#, r#""topic":"auth","topic":"other""#, 1),
            "duplicate field `topic`",
        ),
    ];
    for (body, expected) in cases {
        let (status, err) = call(&state, "POST", "/publish", Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}: {err}",
            &body[..body.len().min(200)]
        );
        let msg = err["error"].as_str().unwrap();
        assert!(msg.starts_with(expected), "{msg}");
    }
    // The detailed reading (taken when a body does not fit the shape: here events[1]'s topic
    // is a number) finds the first fault the same way.
    let mut nested = ev("auth", "nested");
    nested["payload"] = json!({"a": {"b": "x\u{0}"}});
    let mut misfit = ev("auth", "misfit");
    misfit["topic"] = json!(5);
    let (status, err) = publish(&state, json!([nested, misfit])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.starts_with("events[0]: `payload` must not contain the NUL"),
        "{msg}"
    );
    // Within the depth every backend stores, a deep payload is accepted and read back.
    let mut deep_ok = ev("auth", "deep-ok");
    deep_ok["payload"] = serde_json::from_str(&format!("{{\"p\":{}{}}}", "[".repeat(99), "]".repeat(99))).unwrap();
    let (status, err) = publish(&state, deep_ok).await;
    assert_eq!(status, StatusCode::OK, "{err}");
    // A NUL in a query is refused the same way.
    let (status, err) = call(&state, "GET", "/events?topic=a%00b", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, events) = call(&state, "GET", "/events?topic=auth", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.as_array().unwrap().len(), 1, "only the deep one: {events}");
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(s["received"], 1);
}

async fn rejected_bodies_store_nothing(backend: Backend) {
    let (_t, state) = app(backend).await;
    let mut bad = ev("auth", "x");
    bad["payload"] = json!("text");
    for body in [json!([ev("auth", "ok"), bad]), json!({"topic": "auth"})] {
        let (status, err) = publish(&state, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    }
    // A rejected body stores nothing and counts nothing.
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(s["received"], 0);
}

/// Seed 003's clients, unchanged: unknown fields, empty batches, zone-less and epoch timestamps,
/// and batches larger than 5,000 events are all accepted as its server accepts them.
async fn accepts_what_the_seeds_clients_send(backend: Backend) {
    let (_t, state) = app(backend).await;
    let state = AppState {
        max_events: 100_000,
        ..state
    };
    let mut extra = ev("seed", "extra");
    extra["trace"] = json!({"id": 7});
    extra["priority"] = json!("high");
    let forms = [
        ("extra", extra),
        (
            "naive",
            json!({"topic": "seed", "event_id": "naive", "timestamp": "2025-01-01T10:00:00", "source": "s", "payload": {}}),
        ),
        (
            "secs",
            json!({"topic": "seed", "event_id": "secs", "timestamp": 1_735_725_600, "source": "s", "payload": {}}),
        ),
        (
            "millis",
            json!({"topic": "seed", "event_id": "millis", "timestamp": 1_735_725_600_000_i64, "source": "s", "payload": {}}),
        ),
    ];
    for (name, body) in forms {
        let (status, res) = publish(&state, body).await;
        assert_eq!((status, &res["inserted"]), (StatusCode::OK, &json!(1)), "{name}: {res}");
    }
    let (_, stored) = call(&state, "GET", "/events?topic=seed", None).await;
    let time_of = |id: &str| {
        stored
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == id)
            .map(|e| e["timestamp"].as_str().unwrap().to_owned())
            .unwrap()
    };
    for id in ["naive", "secs", "millis"] {
        let t = chrono::DateTime::parse_from_rfc3339(&time_of(id)).unwrap();
        assert_eq!(t.timestamp(), 1_735_725_600, "{id} is 2025-01-01T10:00:00Z");
    }
    for empty in [json!([]), json!({"events": []})] {
        let (status, res) = publish(&state, empty).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(res, json!({"accepted": 0, "inserted": 0, "duplicates": 0}));
    }
    let big: Vec<Value> = (0..6000).map(|i| ev("bulk", &format!("b{i}"))).collect();
    let (status, res) = publish(&state, json!(big)).await;
    assert_eq!((status, &res["inserted"]), (StatusCode::OK, &json!(6000)), "{res}");
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(s["received"], 6004);
}

/// `GET /events` lists the most recently stored events first: arrival order, not the events' own
/// timestamps.
async fn events_are_listed_most_recently_stored_first(backend: Backend) {
    let (_t, state) = app(backend).await;
    for (id, time) in [
        ("first", "2025-03-01T00:00:00Z"),
        ("second", "2025-01-01T00:00:00Z"),
        ("third", "2025-02-01T00:00:00Z"),
    ] {
        let mut e = ev("order", id);
        e["timestamp"] = json!(time);
        assert_eq!(publish(&state, e).await.0, StatusCode::OK);
    }
    let (_, listed) = call(&state, "GET", "/events?topic=order", None).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["third", "second", "first"]);
    let (_, two) = call(&state, "GET", "/events?topic=order&limit=2", None).await;
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0]["event_id"], "third");
}

async fn concurrent_identical_posts_insert_once(backend: Backend) {
    let (_t, state) = app(backend).await;
    let body = json!([ev("auth", "same")]);
    let results = futures::future::join_all((0..50).map(|_| publish(&state, body.clone()))).await;
    assert!(results.iter().all(|(s, _)| *s == StatusCode::OK), "{results:?}");
    let inserted: i64 = results.iter().map(|(_, r)| r["inserted"].as_i64().unwrap()).sum();
    assert_eq!(inserted, 1);
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(
        (s["received"].as_i64(), s["unique_processed"].as_i64()),
        (Some(50), Some(1))
    );
}

async fn dedup_and_counters_survive_a_restart(backend: Backend) {
    let (t, state) = app(backend).await;
    publish(&state, json!([ev("auth", "r1"), ev("auth", "r2")])).await;
    t.db.close().await;
    // A new process: new pool, same database.
    let db = Db::connect(&t.url, &DbArgs::default()).await.unwrap();
    db.migrate(&kafkube_aggregator::migrations()).await.unwrap();
    let state = AppState::new(db, 2, 5000);
    assert_eq!(
        publish(&state, json!([ev("auth", "r1"), ev("auth", "r3")])).await.1,
        json!({"accepted": 2, "inserted": 1, "duplicates": 1})
    );
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(
        (s["received"].as_i64(), s["unique_processed"].as_i64()),
        (Some(4), Some(3))
    );
}

/// The whole service on a free port, ingesting `topic`; returns its base URL.
async fn start(kafka: &TestKafka, t: &TestDb, topic: &str) -> (String, Spawned) {
    start_with(kafka, t, topic, 1).await
}

/// [`start`] with `consumers` Kafka ingest consumers in the process.
async fn start_with(kafka: &TestKafka, t: &TestDb, topic: &str, consumers: usize) -> (String, Spawned) {
    let args = AggregatorArgs {
        port: 0,
        host: [127, 0, 0, 1].into(),
        database_url: t.url.parse().unwrap(),
        kafka_topics: vec![topic.to_owned()],
        group: kafkube_testkit::unique("aggregator"),
        consumers,
        ..AggregatorArgs::defaults()
    };
    let svc = spawn(AggregatorService, args, &kafka.config()).await.unwrap();
    (svc.url(""), svc)
}

async fn http_and_kafka_ingest_deduplicate_each_other(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("logs", 2).await;
    let t = TestDb::new(backend).await;
    let (base, svc) = start(&kafka, &t, &topic).await;

    let (status, res) = post_json(&format!("{base}/publish"), &json!([ev("auth", "k1"), ev("auth", "k2")])).await;
    assert_eq!((status, &res["inserted"]), (200, &json!(2)));
    // The same events and a new one over Kafka, plus a malformed record.
    let producer = kafkube_bus::Producer::new(&kafka.config()).unwrap();
    for payload in [
        json!([ev("auth", "k1"), ev("auth", "k3")]).to_string(),
        ev("auth", "k2").to_string(),
        "garbage".into(),
        // Text PostgreSQL cannot store: dead-lettered on every backend, with the reason.
        ev("auth\u{0}", "k4").to_string(),
    ] {
        producer
            .send(&kafkube_bus::Outgoing::new(&topic, Some("k"), payload))
            .await
            .unwrap();
    }
    let stats = eventually(Duration::from_secs(30), || async {
        let s = get_json(&format!("{base}/stats")).await;
        (s["received"] == 5).then_some(s)
    })
    .await
    .expect("the Kafka records are ingested");
    assert_eq!(
        (stats["unique_processed"].as_i64(), stats["duplicate_dropped"].as_i64()),
        (Some(3), Some(2))
    );
    let dead = kafka
        .read_exact(&format!("{topic}.dlq"), 2, Duration::from_secs(10))
        .await;
    assert_eq!(dead.len(), 2);
    let why = |i: usize| dead[i].header(kafkube_bus::Header::ERROR).unwrap().to_owned();
    assert!(why(0).contains("invalid JSON"), "{}", why(0));
    assert!(
        why(1).contains("`topic` must not contain the NUL character"),
        "{}",
        why(1)
    );
    assert_eq!(get_json(&format!("{base}/health")).await, json!({"ok": true}));
    svc.stop().await;
}

async fn the_load_generator_ends_at_the_exact_counts(backend: Backend) {
    let kafka = TestKafka::start();
    let t = TestDb::new(backend).await;
    let (url, svc) = start(&kafka, &t, &kafka.topic("logs", 1).await).await;
    let load = kafkube_aggregator::load::LoadArgs {
        url,
        count: 2000,
        dup_rate: 0.3,
        concurrency: 10,
        batch_size: 50,
        topics: vec!["auth".into(), "payment".into(), "orders".into()],
        seed: Some(1),
        via: kafkube_aggregator::load::Via::Http,
        kafka_topic: String::new(),
        kafka: kafka.args(),
        copy_ceiling: (backend == Backend::Postgres).then(|| t.url.clone()),
    };
    let report = kafkube_aggregator::load::run(&load).await.unwrap();
    assert!(report.ok, "{}", report.text);
    assert!(
        report
            .text
            .starts_with("done received=2000 inserted=1400 duplicates=600 dup_rate=30.0%"),
        "{}",
        report.text
    );
    if backend == Backend::Postgres {
        assert!(
            report.text.contains("ceiling    COPY of the same 1400 unique rows"),
            "{}",
            report.text
        );
    }
    // A second run with the same seed repeats every id of a new run id: counts stay exact.
    assert!(kafkube_aggregator::load::run(&load).await.unwrap().ok);
    svc.stop().await;
}

/// `load aggregator --via kafka`: the events as records on the ingest topic, counted exactly,
/// with two ingest consumers in the process (each takes one of the two partitions).
async fn the_load_generator_through_kafka_ends_at_the_exact_counts(backend: Backend) {
    let kafka = TestKafka::start();
    let t = TestDb::new(backend).await;
    let topic = kafka.topic("logs", 2).await;
    let (url, svc) = start_with(&kafka, &t, &topic, 2).await;
    let load = kafkube_aggregator::load::LoadArgs {
        url,
        count: 3000,
        dup_rate: 0.3,
        concurrency: 10,
        batch_size: 100,
        topics: vec!["auth".into(), "payment".into()],
        seed: Some(2),
        via: kafkube_aggregator::load::Via::Kafka,
        kafka_topic: topic,
        kafka: kafka.args(),
        copy_ceiling: None,
    };
    let report = kafkube_aggregator::load::run(&load).await.unwrap();
    assert!(report.ok, "{}", report.text);
    assert!(
        report.text.contains("check      /stats deltas match what was sent"),
        "{}",
        report.text
    );
    assert!(
        report.text.starts_with("done       3000 events through Kafka topic"),
        "{}",
        report.text
    );
    svc.stop().await;
}

/// Requests merged into one statement each get their own counts; an id two of them carry is
/// stored once and counted as inserted for the first.
async fn merged_requests_get_their_own_counts(backend: Backend) {
    use kafkube_aggregator::model::parse_body;
    use kafkube_aggregator::store::{Ingested, ingest_many};
    let (t, state) = app(backend).await;
    let a = parse_body(json!([ev("auth", "m1"), ev("auth", "m2"), ev("auth", "m1")]), 10).unwrap();
    let b = parse_body(json!([ev("auth", "m2"), ev("auth", "m3")]), 10).unwrap();
    let c = parse_body(json!([ev("orders", "m1")]), 10).unwrap();
    let counts = ingest_many(&t.db, &[&a, &b, &c]).await.unwrap();
    let ingested = |accepted, inserted| Ingested {
        accepted,
        inserted,
        duplicates: accepted - inserted,
    };
    assert_eq!(counts, vec![ingested(3, 2), ingested(2, 1), ingested(1, 1)]);
    let s = stats_hold_the_invariant(&state).await;
    assert_eq!(
        (s["received"].as_i64(), s["unique_processed"].as_i64()),
        (Some(6), Some(4))
    );
}

backend_tests!(
    merged_requests_get_their_own_counts,
    the_load_generator_ends_at_the_exact_counts,
    the_load_generator_through_kafka_ends_at_the_exact_counts,
    body_shapes_and_deduplication,
    schema_errors_are_400_naming_event_and_field,
    rejected_bodies_store_nothing,
    unstorable_text_is_400_on_every_backend,
    accepts_what_the_seeds_clients_send,
    events_are_listed_most_recently_stored_first,
    concurrent_identical_posts_insert_once,
    dedup_and_counters_survive_a_restart,
    http_and_kafka_ingest_deduplicate_each_other,
);

/// PostgreSQL goes away for longer than a connection wait (5 s) while `kafkube load aggregator`
/// sends: the batches answered 503 are sent again, as a client should, the report says how many,
/// and what was stored is exact (a retried batch stored before its answer was lost is only
/// counted as duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_retries_503s_and_the_counts_stay_exact() {
    let kafka = TestKafka::start();
    let t = TestDb::postgres().await;
    let (url, _svc) = start(&kafka, &t, &kafka.topic("logs", 1).await).await;
    let load = kafkube_aggregator::load::LoadArgs {
        url: url.clone(),
        count: 3000,
        dup_rate: 0.3,
        concurrency: 2,
        batch_size: 1,
        topics: vec!["auth".into()],
        seed: Some(7),
        via: kafkube_aggregator::load::Via::Http,
        kafka_topic: String::new(),
        kafka: kafka.args(),
        copy_ceiling: None,
    };
    let running = tokio::spawn(async move { kafkube_aggregator::load::run(&load).await.unwrap() });
    // Once events flow, the database goes away for 6 s.
    let flowing = eventually(Duration::from_secs(30), || async {
        (get_json(&format!("{url}/stats")).await["received"].as_i64()? >= 200).then_some(())
    })
    .await;
    assert!(flowing.is_some(), "events flow");
    t.set_reachable(false).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    t.set_reachable(true).await;
    let report = running.await.unwrap();
    assert!(report.ok, "{}", report.text);
    assert!(report.text.contains("retried "), "{}", report.text);
    assert!(report.text.contains("answered 503 and sent again"), "{}", report.text);
}

/// `GET /openapi.json` describes the routes and the contract's schemas.
#[tokio::test]
async fn openapi_document_describes_the_api() {
    let (_t, state) = app(Backend::Sqlite).await;
    let (status, doc) = call(&state, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/publish", "/events", "/stats"] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    assert!(doc["paths"]["/publish"]["post"]["responses"].get("400").is_some());
    let schemas = &doc["components"]["schemas"];
    let ingested: Vec<_> = schemas["Ingested"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(ingested, ["accepted", "duplicates", "inserted"]);
    assert_eq!(schemas["PublishBody"]["oneOf"].as_array().unwrap().len(), 3);
    let params: Vec<_> = doc["paths"]["/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["topic", "limit"]);
}
