//! The webhook sink (`etl-webhook`) against a real HTTP receiver on loopback: every change is
//! delivered with a stable idempotency key, 5xx answers and an unreachable receiver are retried
//! until delivered, a 4xx (and a record that is not JSON) goes to the dead-letter topic with the
//! reason, and batched POSTs carry JSON arrays.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kafkube_bus::{Outgoing, Producer};
use kafkube_etl::webhook::IDEMPOTENCY_KEY;
use kafkube_etl::{EtlArgs, Transform, WebhookService};
use kafkube_testkit::{TestKafka, spawn, unique};
use serde_json::{Value, json};

/// A webhook receiver: answers 503 to the first `fail_first` POSTs, 422 to any POST holding an
/// order `refuse-me`, 200 otherwise, and keeps what it accepted.
#[derive(Default)]
struct Receiver {
    fail_first: Mutex<u32>,
    /// (idempotency key, body) of every accepted POST, in arrival order.
    accepted: Mutex<Vec<(String, Value)>>,
    /// Idempotency keys of the POSTs answered 503.
    failed_keys: Mutex<Vec<String>>,
    /// Idempotency keys of every POST, in arrival order.
    keys: Mutex<Vec<String>>,
    posts: Mutex<u32>,
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    *rx.posts.lock().unwrap() += 1;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    rx.keys.lock().unwrap().push(key.clone());
    {
        let mut fail = rx.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            rx.failed_keys.lock().unwrap().push(key);
            return (StatusCode::SERVICE_UNAVAILABLE, "warming up".into());
        }
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "json please".into());
    }
    if body.contains("refuse-me") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "{\"error\": \"order refuse-me is not wanted\"}".into(),
        );
    }
    rx.accepted
        .lock()
        .unwrap()
        .push((key, serde_json::from_str(&body).unwrap()));
    (StatusCode::OK, "ok".into())
}

/// Serves `rx` on `addr` (port 0: any) until the test ends; returns the bound address.
async fn serve(rx: Arc<Receiver>, addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", post(receive)).with_state(rx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn args(raw: &str, enriched: &str, hook: SocketAddr, per_post: u32) -> EtlArgs {
    let mut a = EtlArgs::defaults();
    a.source_topics = vec![raw.to_owned()];
    a.target_topic = enriched.to_owned();
    a.sink_topic = Some(enriched.to_owned());
    a.transform_group = unique("etl");
    a.webhook.group = unique("hook");
    a.webhook.url = Some(format!("http://{hook}/hook").parse().unwrap());
    a.webhook.batch = per_post;
    a
}

async fn produce(kafka: &TestKafka, msgs: &[Outgoing]) {
    let producer = Producer::new(&kafka.config()).unwrap();
    for r in producer.send_all(msgs).await {
        r.unwrap();
    }
}

fn orders(raw: &str, n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| {
            let order_id = if i == 17 {
                "refuse-me".to_owned()
            } else {
                format!("ORD-{i}")
            };
            Outgoing::new(
                raw,
                Some(order_id.clone()),
                json!({"id": format!("o{i}"), "order_id": order_id, "quantity": 2, "unit_price": 1.25}).to_string(),
            )
        })
        .collect()
}

/// The accepted orders by id, each with the idempotency keys it arrived under.
fn delivered(rx: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, body) in rx.accepted.lock().unwrap().iter() {
        let records = match body {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        for r in records {
            assert_eq!(r["flag"], "transform", "the enriched order as it is on the topic: {r}");
            assert_eq!(r["total_value"], json!(2.5));
            by_id
                .entry(r["id"].as_str().unwrap().to_owned())
                .or_default()
                .insert(key.clone());
        }
    }
    by_id
}

async fn wait_for(rx: &Receiver, ids: usize) -> BTreeMap<String, BTreeSet<String>> {
    let got = kafkube_testkit::eventually(Duration::from_secs(60), || {
        let d = delivered(rx);
        async move { (d.len() >= ids).then_some(d) }
    })
    .await;
    got.unwrap_or_else(|| panic!("{} of {ids} orders delivered", delivered(rx).len()))
}

/// One order per POST: a receiver that answers 503 at first and one that refuses an order.
/// Every other order arrives under its own stable key; the refused one and a record that is not
/// JSON are dead-lettered with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_the_webhook_once_per_key_and_refusals_are_dead_lettered() {
    let kafka = TestKafka::start();
    let raw = kafka.topic("raw_orders", 2).await;
    let enriched = kafka.topic("enriched_orders", 2).await;
    let rx = Arc::new(Receiver {
        fail_first: Mutex::new(5),
        ..Default::default()
    });
    let hook = serve(rx.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let a = args(&raw, &enriched, hook, 1);
    let cfg = kafka.config();
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let webhook = spawn(WebhookService, a, &cfg).await.unwrap();
    produce(&kafka, &orders(&raw, 100)).await;
    produce(&kafka, &[Outgoing::new(enriched.as_str(), Some("x"), "not json {")]).await;

    let by_id = wait_for(&rx, 99).await;
    assert!(!by_id.contains_key("o17"), "the refused order was not accepted");
    for (id, keys) in &by_id {
        assert_eq!(keys.len(), 1, "{id} arrived under one key, got {keys:?}");
    }
    let keys: BTreeSet<&String> = by_id.values().flatten().collect();
    assert_eq!(keys.len(), 99, "one key per change");
    assert!(*rx.posts.lock().unwrap() >= 100 + 5, "the 503s were retried");
    let all_keys = rx.keys.lock().unwrap().clone();
    for key in rx.failed_keys.lock().unwrap().iter() {
        let sent = all_keys.iter().filter(|k| *k == key).count();
        assert!(
            sent >= 2,
            "the POST answered 503 under {key} was retried under the same key"
        );
    }

    let dead = kafka.read(&format!("{enriched}.dlq"), 2, Duration::from_secs(20)).await;
    let reasons: Vec<&str> = dead.iter().filter_map(|r| r.header("kafkube-error")).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("422") && r.contains("refuse-me is not wanted")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
    transform.stop().await;
    webhook.stop().await;
}

/// Batched POSTs (JSON arrays of up to 25) to a receiver that is not listening yet: the sink
/// retries until it comes up, then every order arrives; a POST sent again carries the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_posts_wait_for_an_unreachable_receiver() {
    let kafka = TestKafka::start();
    let raw = kafka.topic("raw_orders", 1).await;
    let enriched = kafka.topic("enriched_orders", 1).await;
    // A free port, closed until the receiver starts on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = args(&raw, &enriched, port, 25);
    let cfg = kafka.config();
    let transform = spawn(Transform, a.clone(), &cfg).await.unwrap();
    let webhook = spawn(WebhookService, a, &cfg).await.unwrap();
    let mut all = orders(&raw, 201);
    all.remove(17);
    produce(&kafka, &all).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rx = Arc::new(Receiver::default());
    serve(rx.clone(), port).await;

    let by_id = wait_for(&rx, 200).await;
    assert_eq!(by_id.len(), 200);
    let posts = rx.accepted.lock().unwrap().clone();
    assert!(
        posts
            .iter()
            .all(|(_, b)| b.as_array().is_some_and(|a| !a.is_empty() && a.len() <= 25)),
        "arrays of 1..=25 records"
    );
    // A key names one set of records: the same key never carries different records.
    let mut bodies: BTreeMap<&str, &Value> = BTreeMap::new();
    for (key, body) in &posts {
        assert_eq!(*bodies.entry(key.as_str()).or_insert(body), body, "key {key}");
    }
    let dead = kafka.read(&format!("{enriched}.dlq"), 1, Duration::from_secs(1)).await;
    assert!(dead.is_empty(), "nothing dead-lettered while the receiver was down");
    transform.stop().await;
    webhook.stop().await;
}
