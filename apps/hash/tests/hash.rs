//! The hash app over a real broker: the HTTP contract, 504 and 503, replies routed to the gateway
//! replica that asked, each request hashed once, no leaked pending requests, and what happens to
//! requests nobody can answer.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use kafkube_bus::{Header, Outgoing, Producer, RpcClient, RpcError};
use kafkube_hash::model::sha256_hex;
use kafkube_hash::{HashArgs, HashGateway, HashProcessor};
use kafkube_testkit::{Spawned, TestKafka, eventually, get_json, post_json, spawn, unique};
use serde_json::json;

const HELLO: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

/// One app deployment on a test broker: its own topics and groups.
struct Stack {
    kafka: TestKafka,
    args: HashArgs,
}

struct Gateway {
    base: String,
    rpc: RpcClient,
    svc: Spawned,
}

struct Processor {
    hashed: Arc<AtomicU64>,
    svc: Spawned,
}

impl Stack {
    async fn new(request_timeout: Duration) -> Self {
        let kafka = TestKafka::start();
        let args = HashArgs {
            request_topic: unique("hash_requests"),
            response_topic: unique("hash_responses"),
            request_timeout,
            host: [127, 0, 0, 1].into(),
            port: 0,
            gateway_group: unique("service_1"),
            processor_group: unique("service_2"),
            partitions: 4,
            ..HashArgs::defaults()
        };
        kafkube_bus::ensure_topics(&kafka.config(), &kafkube_hash::topics(&args))
            .await
            .unwrap();
        Self { kafka, args }
    }

    async fn gateway(&self) -> Gateway {
        let svc = spawn(HashGateway, self.args.clone(), &self.kafka.config())
            .await
            .unwrap();
        Gateway {
            base: svc.url(""),
            rpc: svc.get(),
            svc,
        }
    }

    async fn processor(&self) -> Processor {
        let svc = spawn(HashProcessor, self.args.clone(), &self.kafka.config())
            .await
            .unwrap();
        Processor { hashed: svc.get(), svc }
    }
}

impl Gateway {
    /// Waits until the gateway owns a reply partition (its group has been joined).
    async fn ready(&self) {
        let rpc = self.rpc.clone();
        eventually(Duration::from_secs(30), || {
            let ready = rpc.is_ready();
            async move { ready.then_some(()) }
        })
        .await
        .expect("the gateway joins its reply group");
    }

    async fn hash(&self, data: &str) -> (u16, serde_json::Value) {
        post_json(&format!("{}/hash", self.base), &json!({ "data": data })).await
    }

    /// Retries until a request is answered: proves the processor has joined too.
    async fn warm_up(&self) {
        self.ready().await;
        eventually(Duration::from_secs(40), || async {
            let (status, _) = self.hash("warm-up").await;
            (status == 200).then_some(())
        })
        .await
        .expect("a processor answers");
    }

    async fn stop(self) {
        self.svc.stop().await;
    }
}

impl Processor {
    /// Lets the processor catch up with every request, then stops it.
    async fn drain(self) -> u64 {
        self.svc.drain().await;
        self.hashed.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.svc.stop().await;
    }
}

async fn raw(method: reqwest::Method, url: &str, body: &'static str) -> (u16, serde_json::Value) {
    let res = kafkube_testkit::http_client()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_over_kafka_and_refuses_bad_input() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let processor = stack.processor().await;
    let gw = stack.gateway().await;
    gw.warm_up().await;

    let (status, body) = gw.hash("hello world").await;
    assert_eq!((status, body["hash"].as_str()), (200, Some(HELLO)));
    let id = uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    // The same data again: the same hash, another request id.
    let (_, again) = gw.hash("hello world").await;
    assert_eq!(again["hash"], HELLO);
    assert_ne!(again["id"].as_str().unwrap(), id.to_string());
    let (_, empty) = gw.hash("").await;
    assert_eq!(empty["hash"].as_str().unwrap(), sha256_hex(b""));

    let url = format!("{}/hash", gw.base);
    let (status, body) = raw(reqwest::Method::GET, &url, "").await;
    assert_eq!(status, 405);
    assert!(body["error"].is_string(), "{body}");
    for (bad, needle) in [
        ("{not json", "JSON"),
        ("{}", "missing field `data`"),
        (r#"{"data": 42}"#, "must be a string"),
        (r#"{"data": null}"#, "must be a string"),
        (r#"["data"]"#, "JSON object"),
        (r#"{"data": "a", "data": "b"}"#, "duplicate field `data`"),
    ] {
        let (status, body) = raw(reqwest::Method::POST, &url, bad).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{bad} -> {body}");
    }

    assert_eq!(get_json(&format!("{}/health", gw.base)).await, json!({"ok": true}));
    let ready = get_json(&format!("{}/ready", gw.base)).await;
    assert_eq!(ready["ready"], true, "{ready}");
    let doc = get_json(&format!("{}/openapi.json", gw.base)).await;
    assert!(doc["paths"]["/hash"]["post"]["responses"]["504"].is_object(), "{doc}");

    gw.stop().await;
    // Hashed: warm-up(s), two "hello world" and "" — the invalid bodies never reached Kafka.
    assert!(processor.drain().await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_processor_requests_time_out_and_nothing_stays_pending() {
    let stack = Stack::new(Duration::from_millis(800)).await;
    let gw = stack.gateway().await;
    gw.ready().await;

    let started = Instant::now();
    let answers = join_all((0..40).map(|i| gw.hash(Box::leak(format!("lost {i}").into_boxed_str())))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 504, "{body}");
        assert!(body["error"].as_str().unwrap().contains("no reply"), "{body}");
    }
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(gw.rpc.pending(), 0, "timed-out requests leave no pending entry");

    // A processor that starts late skips the requests whose gateway gave up, and answers new ones.
    let processor = stack.processor().await;
    let (status, body) = eventually(Duration::from_secs(40), || async {
        let (status, body) = gw.hash("hello world").await;
        (status == 200).then_some((status, body))
    })
    .await
    .expect("the late processor answers");
    assert_eq!((status, body["hash"].as_str()), (200, Some(HELLO)));
    assert_eq!(gw.rpc.pending(), 0);
    gw.stop().await;
    let hashed = processor.drain().await;
    // Only the requests made while it ran (at most the retries above), never the 40 expired ones.
    assert!((1..40).contains(&hashed), "hashed {hashed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_503_at_once_and_recovers() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let Some(broker) = stack.kafka.embedded().cloned() else {
        eprintln!("skipped: needs the embedded broker to take it down");
        return;
    };
    let processor = stack.processor().await;
    let gw = stack.gateway().await;
    gw.warm_up().await;

    broker.set_reachable(false).unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = gw.hash("hello world").await;
        assert_eq!(status, 503, "{body}");
        assert!(body["error"].as_str().unwrap().contains("unreachable"), "{body}");
        // Well before REQUEST_TIMEOUT (10 s): the gateway does not wait for a broker that is gone.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
    let ready = reqwest::get(format!("{}/ready", gw.base)).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(gw.rpc.pending(), 0);

    broker.set_reachable(true).unwrap();
    let body = eventually(Duration::from_secs(40), || async {
        let (status, body) = gw.hash("hello world").await;
        (status == 200).then_some(body)
    })
    .await
    .expect("requests succeed again once the broker is back");
    assert_eq!(body["hash"], HELLO);
    gw.stop().await;
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_processors_answer_1000_requests_once_each() {
    let stack = Stack::new(Duration::from_secs(20)).await;
    let processors = [stack.processor().await, stack.processor().await];
    let gateways = [stack.gateway().await, stack.gateway().await];
    for gw in &gateways {
        gw.warm_up().await;
    }
    // Each gateway reads its own reply partitions: together all of them, no partition twice.
    let owned: Vec<Vec<i32>> = gateways.iter().map(|g| g.rpc.reply_partitions()).collect();
    let mut all: Vec<i32> = owned.concat();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3], "reply partitions per gateway: {owned:?}");
    let warm: u64 = processors.iter().map(|p| p.hashed.load(Ordering::SeqCst)).sum();

    let answers = join_all((0..1000).map(|i| {
        let gw = &gateways[i % 2];
        async move {
            let data = format!("request {i}");
            let (status, body) = gw.hash(&data).await;
            (data, status, body)
        }
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for (data, status, body) in &answers {
        assert_eq!(*status, 200, "{data}: {body}");
        assert_eq!(body["hash"].as_str().unwrap(), sha256_hex(data.as_bytes()), "{data}");
        assert!(
            ids.insert(body["id"].as_str().unwrap().to_owned()),
            "repeated id {body}"
        );
    }
    for gw in &gateways {
        assert_eq!(gw.rpc.pending(), 0);
    }
    for gw in gateways {
        gw.stop().await;
    }
    let mut hashed = 0;
    for p in processors {
        hashed += p.drain().await;
    }
    assert_eq!(hashed - warm, 1000, "each request hashed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_nobody_can_answer_are_dead_lettered_or_answered_with_an_error() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let processor = stack.processor().await;
    let gw = stack.gateway().await;
    gw.warm_up().await;

    // Addressed, but not a hash request: the requester gets the processor's error at once.
    let bad = Outgoing::new(stack.args.request_topic.as_str(), Some("k"), "not json");
    match gw.rpc.request(bad, Duration::from_secs(10)).await {
        Err(RpcError::Remote(why)) => assert!(why.contains("invalid hash request"), "{why}"),
        other => panic!("expected the processor's error, got {other:?}"),
    }
    // No reply address: nobody to answer, so it is kept in the dead-letter topic.
    let producer = Producer::new(&stack.kafka.config()).unwrap();
    producer
        .send(&Outgoing::new(
            stack.args.request_topic.as_str(),
            Some("k"),
            json!({"id": "x", "data": "orphan"}).to_string(),
        ))
        .await
        .unwrap();
    let dead = stack
        .kafka
        .read_exact(&format!("{}.dlq", stack.args.request_topic), 1, Duration::from_secs(20))
        .await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].header(Header::ERROR).unwrap().contains("reply address"));
    // The bad records did not stop the processor.
    let (status, body) = gw.hash("after the bad ones").await;
    assert_eq!(
        (status, body["hash"].as_str().unwrap()),
        (200, sha256_hex(b"after the bad ones").as_str())
    );
    gw.stop().await;
    processor.stop().await;
}

/// A request that arrives while the gateway is still joining its reply group waits for its reply
/// partition instead of being refused with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_start_up_waits_for_the_reply_partition() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let processor = stack.processor().await;
    processor.svc.ready(Duration::from_secs(30)).await;
    let gw = stack.gateway().await;
    assert!(
        !gw.rpc.is_ready(),
        "the gateway has just been started: it owns no reply partition yet"
    );
    let (status, body) = gw.hash("hello world").await;
    assert_eq!((status, body["hash"].as_str()), (200, Some(HELLO)), "{body}");
    gw.stop().await;
    processor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_takes_over_the_reply_partitions() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let processor = stack.processor().await;
    let first = stack.gateway().await;
    first.warm_up().await;
    first.stop().await;
    let second = stack.gateway().await;
    second.warm_up().await;
    assert_eq!(second.rpc.reply_partitions(), vec![0, 1, 2, 3]);
    let (status, body) = second.hash("hello world").await;
    assert_eq!((status, body["hash"].as_str()), (200, Some(HELLO)));
    second.stop().await;
    processor.stop().await;
}

/// A second gateway replica joining a serving one: it owns a reply partition and answers within
/// a few seconds, and the first one answers every request meanwhile (none refused or lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_replica_serves_soon_and_the_first_never_stops() {
    let stack = Stack::new(Duration::from_secs(10)).await;
    let processor = stack.processor().await;
    let first = stack.gateway().await;
    first.warm_up().await;

    // A steady stream of requests to the first replica while the second one joins, four at a
    // time, so that some are in flight on the reply partitions that move to the second replica.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let (base, stop) = (first.base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (status, _) = post_json(&format!("{base}/hash"), &json!({"data": "steady"})).await;
                    statuses.push(status);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                statuses
            })
        })
        .collect();
    let started = Instant::now();
    let second = stack.gateway().await;
    let (status, body) = second.hash("hello world").await;
    let joined = started.elapsed();
    eprintln!("second replica answered its first request after {joined:?}");
    assert_eq!((status, body["hash"].as_str()), (200, Some(HELLO)), "{body}");
    assert!(second.rpc.is_ready());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for stream in streams {
        statuses.extend(stream.await.unwrap());
    }
    assert!(statuses.len() > 10, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the first replica refused: {statuses:?}"
    );
    let (mut a, b) = (first.rpc.reply_partitions(), second.rpc.reply_partitions());
    assert!(!b.is_empty() && !a.is_empty(), "{a:?} {b:?}");
    a.extend(b);
    a.sort_unstable();
    assert_eq!(a, vec![0, 1, 2, 3]);
    first.stop().await;
    second.stop().await;
    processor.stop().await;
}
