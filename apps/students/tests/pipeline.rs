//! API → outbox → Kafka, against a real broker: every change is exactly one keyed event, and a
//! broker outage delays events without losing or duplicating them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use kafkube_bus::Header;
use kafkube_testkit::{Backend, TestDb, TestKafka, backend_tests, post_json};
use serde_json::json;

async fn each_change_publishes_exactly_one_keyed_event(backend: Backend) {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 4).await;
    let db = TestDb::new(backend).await;
    let args = common::args(&topic, &db.url, &db.url);
    let api = common::start_api(&args, &kafka.config()).await;
    let http = reqwest::Client::new();

    let res = http
        .post(api.url("/api/mahasiswa"))
        .header("x-request-id", "req-42")
        .json(&json!({"nim": "2201", "nama": "Ani", "jurusan": "TI"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let event_id = res.headers()["x-event-id"].to_str().unwrap().to_owned();
    let row: serde_json::Value = res.json().await.unwrap();
    let item = api.url(&format!("/api/mahasiswa/{}", row["id"]));
    assert_eq!(
        http.put(&item)
            .json(&json!({"nama": "Ani S."}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(http.delete(&item).send().await.unwrap().status(), 200);
    // A refused write publishes nothing.
    let dup = http
        .post(api.url("/api/mahasiswa"))
        .json(&json!({"nim": "x", "nama": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 201);
    let again = http
        .post(api.url("/api/mahasiswa"))
        .json(&json!({"nim": "x", "nama": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    // Ask for one more than expected: a duplicate would show up.
    let records = kafka.read_exact(&topic, 4, Duration::from_secs(15)).await;
    assert_eq!(records.len(), 4, "expected 4 events, got {}", records.len());
    let key = row["id"].to_string();
    let ours: Vec<_> = records.iter().filter(|r| r.key_str() == Some(key.as_str())).collect();
    let types: Vec<_> = ours
        .iter()
        .map(|r| r.json()["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["MAHASISWA_CREATED", "MAHASISWA_UPDATED", "MAHASISWA_DELETED"]);
    let created = ours[0].json();
    assert_eq!(created["eventId"], event_id.as_str());
    assert!(created["timestamp_api_sent"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(created["data"], row);
    assert_eq!(ours[1].json()["data"]["nama"], "Ani S.");
    assert_eq!(ours[0].header(Header::EVENT_TYPE), Some("MAHASISWA_CREATED"));
    assert_eq!(ours[0].header(Header::CORRELATION_ID), Some("req-42"));
    assert!(ours[0].header(Header::TRACEPARENT).unwrap().starts_with("00-"));
    let ids: BTreeSet<_> = records
        .iter()
        .map(|r| r.json()["eventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(kafkube_outbox::pending(&db.db).await.unwrap(), 0);
    api.stop().await;
}

async fn a_broker_outage_delays_events_and_loses_none(backend: Backend) {
    let kafka = TestKafka::start();
    let Some(broker) = kafka.embedded() else {
        eprintln!("skipped: needs the embedded broker to take it down (KAFKUBE_TEST_KAFKA_BROKERS is set)");
        return;
    };
    let topic = kafka.topic("mahasiswa_events", 2).await;
    let db = TestDb::new(backend).await;
    let api = common::start_api(&common::args(&topic, &db.url, &db.url), &kafka.config()).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(api.url("/ready")).send().await.unwrap().status(), 200);

    broker.set_reachable(false).unwrap();
    for i in 0..5 {
        let res = http
            .post(api.url("/api/mahasiswa"))
            .json(&json!({"nim": format!("o{i}"), "nama": "Outage"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "writes are accepted while the broker is down");
    }
    let ready = http.get(api.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["kafka"]["ok"], false);
    assert_eq!(body["checks"]["database"]["ok"], true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        kafkube_outbox::pending(&db.db).await.unwrap() > 0,
        "events wait in the outbox"
    );

    broker.set_reachable(true).unwrap();
    let records = kafka.read_exact(&topic, 5, Duration::from_secs(20)).await;
    let nims: Vec<_> = records
        .iter()
        .map(|r| r.json()["data"]["nim"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(nims.iter().collect::<BTreeSet<_>>().len(), 5, "{nims:?}");
    assert_eq!(nims.len(), 5, "no duplicates: {nims:?}");
    let drained = kafkube_testkit::eventually(Duration::from_secs(10), || async {
        (kafkube_outbox::pending(&db.db).await.unwrap() == 0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    api.stop().await;
}

/// PostgreSQL only: a local SQLite file cannot become unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_then_recovers() {
    let backend = Backend::Postgres;
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 1).await;
    let db = TestDb::new(backend).await;
    let api = common::start_api(&common::args(&topic, &db.url, &db.url), &kafka.config()).await;
    let http = reqwest::Client::new();
    db.set_reachable(false).await;
    let student = json!({"nim": "d1", "nama": "Down"});
    let (status, err) = post_json(&api.url("/api/mahasiswa"), &student).await;
    assert_eq!((status, &err["error"]), (503, &json!("database unavailable")));
    assert_eq!(http.get(api.url("/ready")).send().await.unwrap().status(), 503);
    db.set_reachable(true).await;
    assert_eq!(post_json(&api.url("/api/mahasiswa"), &student).await.0, 201);
    assert_eq!(kafka.read_exact(&topic, 1, Duration::from_secs(15)).await.len(), 1);
    api.stop().await;
}

backend_tests!(
    each_change_publishes_exactly_one_keyed_event,
    a_broker_outage_delays_events_and_loses_none,
);

/// The plumbing every API shares: JSON errors for an oversized body, an unknown route and a
/// wrong method; the ops endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plumbing_errors_are_json_and_ops_endpoints_answer() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("mahasiswa_events", 1).await;
    let db = TestDb::sqlite().await;
    let api = common::start_api(&common::args(&topic, &db.url, &db.url), &kafka.config()).await;
    let http = reqwest::Client::new();

    let huge = format!(r#"{{"nim": "1", "nama": "{}"}}"#, "x".repeat(300 * 1024));
    let res = http
        .post(api.url("/api/mahasiswa"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    let res = http.get(api.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "no such route");
    let res = http.patch(api.url("/api/mahasiswa")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    let res = http
        .post(api.url("/api/mahasiswa"))
        .body(r#"{"nim":"1","nama":"A"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415, "a JSON body needs its content type");

    assert_eq!(
        http.get(api.url("/health"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap(),
        json!({"status": "ok"})
    );
    let ready: serde_json::Value = http.get(api.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["ready"], true);
    let metrics = kafkube_testkit::get_text(&api.url("/metrics")).await;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert_eq!(
        kafkube_outbox::pending(&db.db).await.unwrap(),
        0,
        "no failed request wrote an event"
    );
    api.stop().await;
}
