//! The broker behaviours Kafkube's apps rely on, checked on whichever broker the tests run on: the
//! embedded broker by default, a real cluster with `KAFKUBE_TEST_KAFKA_BROKERS`. A broker where
//! one of these fails cannot run the apps correctly, whatever their own tests say.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafkube_bus::{Outgoing, Producer, TopicSpec, ensure_topics};
use kafkube_testkit::{TestKafka, eventually, unique};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

fn partitions_of(kafka: &TestKafka, topic: &str) -> usize {
    let client: BaseConsumer = kafka.config().admin_config().create().unwrap();
    let md = client.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len())
}

/// Topics are created with the partition count asked for (the apps' parallelism and the hash
/// gateways' reply routing depend on it), and asking again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_get_the_partitions_asked_for_and_creating_twice_is_harmless() {
    let kafka = TestKafka::start();
    let name = unique("conf_parts");
    let spec = [TopicSpec::new(name.clone(), 6)];
    ensure_topics(&kafka.config(), &spec).await.unwrap();
    ensure_topics(&kafka.config(), &spec).await.unwrap();
    assert_eq!(partitions_of(&kafka, &name), 6);
}

/// Records with one key land on one partition in the order they were sent (the students' events
/// per student, the outbox's order), and the idempotent producer adds no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_keeps_one_partition_and_its_order() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("conf_order", 4).await;
    let producer = Producer::new(&kafka.config()).unwrap();
    let msgs: Vec<Outgoing> = (0..300)
        .map(|i| Outgoing::new(topic.as_str(), Some(format!("k{}", i % 7)), format!("{i}")))
        .collect();
    for r in producer.send_all(&msgs).await {
        r.unwrap();
    }
    let read = kafka.read_exact(&topic, 300, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 300, "every record once");
    let mut by_key: BTreeMap<String, (BTreeSet<i32>, Vec<u32>)> = BTreeMap::new();
    for r in &read {
        let e = by_key.entry(r.key_str().unwrap().to_owned()).or_default();
        e.0.insert(r.partition);
        e.1.push(String::from_utf8_lossy(&r.payload).parse().unwrap());
    }
    for (key, (partitions, seq)) in by_key {
        assert_eq!(partitions.len(), 1, "{key} on one partition");
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{key} in order: {seq:?}");
    }
}

/// A record sent to an explicit partition arrives there (request/reply addresses the replica
/// that asked through its partition of the reply topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_partition_is_honoured() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("conf_explicit", 4).await;
    let producer = Producer::new(&kafka.config()).unwrap();
    for p in 0..4 {
        let mut msg = Outgoing::new(topic.as_str(), Some("same-key"), format!("{p}"));
        msg.partition = Some(p);
        let d = producer.send(&msg).await.unwrap();
        assert_eq!(d.partition, p);
    }
    let read = kafka.read_exact(&topic, 4, Duration::from_secs(30)).await;
    for r in read {
        assert_eq!(r.partition.to_string(), String::from_utf8_lossy(&r.payload));
    }
}

fn group_member(kafka: &TestKafka, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = kafka.config().consumer_config(group).create().unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Members of one group split the partitions without overlap, and when one leaves, the other
/// takes over every partition (consumer replicas and failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_splits_partitions_and_a_survivor_takes_them_all() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("conf_group", 4).await;
    let group = unique("conf_group");
    let a = group_member(&kafka, &group, &topic);
    let b = group_member(&kafka, &group, &topic);
    let split = eventually(Duration::from_secs(40), || {
        // Polling drives the group protocol.
        let _ = (a.poll(Duration::from_millis(50)), b.poll(Duration::from_millis(50)));
        let (pa, pb) = (assigned(&a), assigned(&b));
        let ready = pa.len() + pb.len() == 4 && !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb);
        async move { ready.then_some(()) }
    })
    .await;
    assert!(split.is_some(), "a: {:?}, b: {:?}", assigned(&a), assigned(&b));
    a.unsubscribe();
    drop(a);
    let taken = eventually(Duration::from_secs(40), || {
        let _ = b.poll(Duration::from_millis(50));
        let all = assigned(&b).len() == 4;
        async move { all.then_some(()) }
    })
    .await;
    assert!(taken.is_some(), "b: {:?}", assigned(&b));
}

/// Committed offsets are what the next member starts from, and the lag a third party computes
/// (high watermark minus committed offset) is what was left unconsumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_resume_a_group_and_give_its_lag() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("conf_commit", 1).await;
    let group = unique("conf_commit");
    let producer = Producer::new(&kafka.config()).unwrap();
    let msgs: Vec<Outgoing> = (0..10)
        .map(|i| Outgoing::new(topic.as_str(), Some("k"), format!("{i}")))
        .collect();
    for r in producer.send_all(&msgs).await {
        r.unwrap();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(7)).unwrap();
    let first: StreamConsumer = kafka.config().consumer_config(&group).create().unwrap();
    first.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    let mut query = TopicPartitionList::new();
    query.add_partition(&topic, 0);
    let committed = first.committed_offsets(query, Duration::from_secs(10)).unwrap();
    let (_, high) = first.fetch_watermarks(&topic, 0, Duration::from_secs(10)).unwrap();
    let at = committed.elements()[0].offset();
    assert_eq!(at, Offset::Offset(7));
    assert_eq!(high - 7, 3, "lag");
    drop(first);

    let next = group_member(&kafka, &group, &topic);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first_read = loop {
        assert!(std::time::Instant::now() < deadline, "no record within 30 s");
        if let Some(Ok(m)) = next.poll(Duration::from_millis(100)) {
            break (m.offset(), m.payload().map(<[u8]>::to_vec));
        }
    };
    assert_eq!(first_read, (7, Some(b"7".to_vec())), "resumes at the commit");
}
