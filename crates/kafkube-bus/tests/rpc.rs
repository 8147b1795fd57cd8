//! Request/reply across a rebalance of the requesters' reply group, against a real
//! Kafka-protocol broker (embedded, or `KAFKUBE_TEST_KAFKA_BROKERS`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kafkube_bus::rpc::{RpcClient, RpcSettings, reply};
use kafkube_bus::{Outgoing, Producer, Record, TopicSpec, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_testkit::{TestKafka, unique};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::time::Instant;

struct Requester {
    rpc: RpcClient,
    stop: Shutdown,
    listener: tokio::task::JoinHandle<kafkube_bus::Result<()>>,
}

impl Requester {
    fn start(kafka: &TestKafka, producer: &Producer, reply_topic: &str, group: &str, name: &str) -> Self {
        let stop = Shutdown::new();
        let mut settings = RpcSettings::new(reply_topic, group);
        settings.instance = name.into();
        let (rpc, listener) = RpcClient::new(&kafka.config(), producer.clone(), settings, &stop).unwrap();
        Self {
            rpc,
            stop,
            listener: tokio::spawn(listener.run()),
        }
    }

    async fn stop(self) {
        self.stop.trigger();
        self.listener.await.unwrap().unwrap();
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests in flight on reply partitions that a rebalance moves to a new requester replica still
/// get their replies: the replica that asked goes on reading the partitions it gave up until its
/// requests there are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_flight_on_a_moved_reply_partition_reach_their_requester() {
    let kafka = TestKafka::start();
    let requests = unique("rpc-requests");
    let replies = unique("rpc-replies");
    ensure_topics(
        &kafka.config(),
        &[TopicSpec::new(requests.clone(), 1), TopicSpec::new(replies.clone(), 4)],
    )
    .await
    .unwrap();
    let group = unique("rpc-requesters");
    let producer = Producer::new(&kafka.config()).unwrap();

    let first = Requester::start(&kafka, &producer, &replies, &group, "first");
    wait_until(
        "the first requester owns all four reply partitions",
        Duration::from_secs(30),
        || first.rpc.reply_partitions().len() == 4,
    )
    .await;

    // Sixteen requests, spread round robin over the first requester's four reply partitions.
    const N: usize = 16;
    let mut calls = Vec::new();
    for i in 0..N {
        let (rpc, topic) = (first.rpc.clone(), requests.clone());
        calls.push(tokio::spawn(async move {
            let request = Outgoing::new(topic, Some(format!("k{i}")), format!("q{i}"));
            rpc.request(request, Duration::from_secs(20)).await
        }));
    }

    // The responder reads all of them but holds the replies back.
    let responder: StreamConsumer = kafka
        .config()
        .consumer_config(&unique("rpc-responder"))
        .create()
        .unwrap();
    responder.subscribe(&[requests.as_str()]).unwrap();
    let mut held: Vec<Record> = Vec::new();
    while held.len() < N {
        let m = tokio::time::timeout(Duration::from_secs(30), responder.recv())
            .await
            .expect("the requests reach the request topic")
            .unwrap();
        held.push(Record::from_message(&m, chrono::Utc::now()));
        let _ = m.offset();
    }
    let mut used: Vec<&str> = held
        .iter()
        .filter_map(|r| r.headers.get_str(kafkube_bus::Header::REPLY_PARTITION))
        .collect();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), 4, "the requests use every reply partition: {used:?}");

    // A second requester joins: some of the first one's partitions move to it.
    let second = Requester::start(&kafka, &producer, &replies, &group, "second");
    wait_until("the reply partitions are shared out", Duration::from_secs(30), || {
        !second.rpc.reply_partitions().is_empty() && first.rpc.reply_partitions().len() < 4
    })
    .await;
    let mut owned = first.rpc.reply_partitions();
    owned.extend(second.rpc.reply_partitions());
    owned.sort_unstable();
    assert_eq!(owned, vec![0, 1, 2, 3]);

    // Only now do the replies go out, to the partitions the requests named.
    for request in &held {
        let body = format!("re:{}", String::from_utf8_lossy(request.payload()));
        producer.send(&reply(request, body).unwrap()).await.unwrap();
    }
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i} got no reply: {e}"));
        assert_eq!(String::from_utf8_lossy(answer.payload()), format!("re:q{i}"));
    }
    assert_eq!(first.rpc.pending(), 0);

    // And both replicas keep serving: each one's requests are answered on its own partitions.
    for (name, requester) in [("first", &first), ("second", &second)] {
        let (rpc, topic) = (requester.rpc.clone(), requests.clone());
        let call = tokio::spawn(async move {
            rpc.request(Outgoing::new(topic, Some("k"), "again"), Duration::from_secs(20))
                .await
        });
        let m = tokio::time::timeout(Duration::from_secs(30), responder.recv())
            .await
            .expect("the request reaches the request topic")
            .unwrap();
        let request = Record::from_message(&m, chrono::Utc::now());
        producer.send(&reply(&request, "again!").unwrap()).await.unwrap();
        let answer = call.await.unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.payload(), b"again!");
    }
    first.stop().await;
    second.stop().await;
}
