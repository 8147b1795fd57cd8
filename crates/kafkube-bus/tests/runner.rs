//! The consumer runner against a real Kafka-protocol broker (embedded, or
//! `KAFKUBE_TEST_KAFKA_BROKERS`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kafkube_bus::{
    BatchOutput, ConsumerRunner, ConsumerSettings, Handler, HandlerError, Header, Outgoing, Producer, Record,
};
use kafkube_core::Shutdown;
use kafkube_testkit::{TestKafka, unique};

/// Collects payloads; rejects "bad", fails permanently on "poison", transiently the first
/// `transient` calls.
#[derive(Default)]
struct Collect {
    seen: Mutex<Vec<String>>,
    transient: AtomicU32,
    forward_to: Option<String>,
}

impl Handler for Collect {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        if self.transient.load(Ordering::SeqCst) > 0 {
            self.transient.fetch_sub(1, Ordering::SeqCst);
            return Err(HandlerError::transient("database down"));
        }
        let texts: Vec<String> = batch
            .iter()
            .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
            .collect();
        if texts.iter().any(|t| t == "poison") {
            return Err(HandlerError::permanent("poison in batch"));
        }
        let mut out = BatchOutput::default();
        for (i, t) in texts.iter().enumerate() {
            if t == "bad" {
                out.reject(i, "bad record");
            } else {
                self.seen.lock().unwrap().push(t.clone());
                if let Some(to) = &self.forward_to {
                    out.produce
                        .push(Outgoing::new(to.clone(), r_key(&batch[i]), format!("fwd:{t}")));
                }
            }
        }
        Ok(out)
    }
}

fn r_key(r: &Record) -> Option<Vec<u8>> {
    r.key.clone()
}

async fn produce(p: &Producer, topic: &str, payloads: &[&str]) {
    let msgs: Vec<Outgoing> = payloads.iter().map(|t| Outgoing::new(topic, Some("k"), *t)).collect();
    for r in p.send_all(&msgs).await {
        r.unwrap();
    }
}

/// Runs the handler until `expected` payloads were seen, then shuts down.
async fn run_until(kafka: &TestKafka, topic: &str, group: &str, handler: Collect, expected: usize) -> Vec<String> {
    let producer = Producer::new(&kafka.config()).unwrap();
    let runner = ConsumerRunner::new(
        &kafka.config(),
        producer,
        ConsumerSettings::new(group, &[topic]),
        handler,
    )
    .unwrap();
    let handler = runner.handler().clone();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown.clone()));
    let done = kafkube_testkit::eventually(Duration::from_secs(30), || {
        let n = handler.seen.lock().unwrap().len();
        async move { (n >= expected).then_some(()) }
    })
    .await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert!(done.is_some(), "handler saw {:?}", handler.seen.lock().unwrap());
    handler.seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_poison_records_go_to_the_dead_letter_topic_and_the_rest_is_processed() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("runner", 1).await;
    let producer = Producer::new(&kafka.config()).unwrap();
    produce(&producer, &topic, &["a", "bad", "b", "poison", "c"]).await;

    let seen = run_until(&kafka, &topic, &unique("g"), Collect::default(), 3).await;
    assert_eq!(
        seen.iter().cloned().collect::<BTreeSet<_>>(),
        ["a", "b", "c"].map(String::from).into()
    );

    let dlq = kafka
        .read_exact(&format!("{topic}.dlq"), 2, Duration::from_secs(20))
        .await;
    let mut dead: Vec<_> = dlq
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.payload).into_owned(),
                r.header(Header::ERROR).unwrap().to_owned(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            ("bad".into(), "bad record".into()),
            ("poison".into(), "poison in batch".into())
        ]
    );
    assert_eq!(dlq[0].header(Header::SOURCE_TOPIC), Some(topic.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_without_loss_and_output_is_published() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("runner", 2).await;
    let out_topic = kafka.topic("runner_out", 2).await;
    let producer = Producer::new(&kafka.config()).unwrap();
    produce(&producer, &topic, &["x", "y"]).await;

    let handler = Collect {
        transient: AtomicU32::new(3),
        forward_to: Some(out_topic.clone()),
        ..Default::default()
    };
    let seen = run_until(&kafka, &topic, &unique("g"), handler, 2).await;
    assert_eq!(seen, vec!["x", "y"]);
    let out = kafka.read_exact(&out_topic, 2, Duration::from_secs(20)).await;
    let mut payloads: Vec<_> = out
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, vec!["fwd:x", "fwd:y"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_group_resumes_after_the_last_processed_record() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("runner", 1).await;
    let group = unique("g");
    let producer = Producer::new(&kafka.config()).unwrap();
    produce(&producer, &topic, &["1", "2"]).await;
    assert_eq!(
        run_until(&kafka, &topic, &group, Collect::default(), 2).await,
        vec!["1", "2"]
    );

    produce(&producer, &topic, &["3"]).await;
    // The same group again: only the record produced since is delivered.
    assert_eq!(
        run_until(&kafka, &topic, &group, Collect::default(), 1).await,
        vec!["3"]
    );
}

/// A member that drains after another member of its group stopped, and so inherited partitions
/// it has never consumed from, still sees that it is caught up (the group's committed offsets
/// are at the end) and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_after_inheriting_partitions_from_a_stopped_member_ends() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("runner", 4).await;
    let group = unique("g");
    let producer = Producer::new(&kafka.config()).unwrap();
    let payloads: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let msgs: Vec<Outgoing> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Outgoing::new(topic.as_str(), Some(format!("k{i}")), p.as_str()))
        .collect();
    for r in producer.send_all(&msgs).await {
        r.unwrap();
    }
    let start = |instance: &str| {
        let runner = ConsumerRunner::new(
            &kafka.config(),
            producer.clone(),
            ConsumerSettings::new(group.as_str(), &[topic.as_str()]).instance(instance),
            Collect::default(),
        )
        .unwrap();
        let handler = runner.handler().clone();
        let (stop, drain) = (Shutdown::new(), Shutdown::new());
        let task = tokio::spawn(runner.run_until_drained(stop.clone(), drain.clone()));
        (handler, stop, drain, task)
    };
    let (a, a_stop, a_drain, a_task) = start("a");
    let (b, b_stop, b_drain, b_task) = start("b");
    let all = kafkube_testkit::eventually(Duration::from_secs(40), || {
        let n = a.seen.lock().unwrap().len() + b.seen.lock().unwrap().len();
        async move { (n >= 100).then_some(()) }
    })
    .await;
    assert!(all.is_some(), "the group consumed every record");

    a_drain.trigger();
    tokio::time::timeout(Duration::from_secs(30), a_task)
        .await
        .expect("a drains")
        .unwrap()
        .unwrap();
    // Let the group hand a's partitions to b before b drains.
    tokio::time::sleep(Duration::from_secs(4)).await;
    b_drain.trigger();
    let drained = tokio::time::timeout(Duration::from_secs(20), b_task).await;
    a_stop.trigger();
    b_stop.trigger();
    drained
        .expect("b drains although it has not consumed from its new partitions")
        .unwrap()
        .unwrap();
}

/// Records every (partition, offset) it handles, slowly, so that a rebalance lands while records
/// of a revoked partition are already in the member's hands.
#[derive(Default)]
struct Tally {
    seen: Mutex<Vec<(i32, i64)>>,
}

impl Handler for Tally {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.seen
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| (r.partition, r.offset)));
        Ok(BatchOutput::default())
    }
}

/// A member joining mid-stream takes partitions over without a record being handled twice:
/// records of a revoked partition that the old owner had read but not yet handled are left to
/// the new owner, which reads them from the committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_mid_stream_hands_partitions_over_without_repeats() {
    const N: usize = 30_000;
    let kafka = TestKafka::start();
    let topic = kafka.topic("handover", 2).await;
    let group = unique("g");
    let producer = Producer::new(&kafka.config()).unwrap();
    let msgs: Vec<Outgoing> = (0..N)
        .map(|i| Outgoing::new(topic.as_str(), Some(format!("k{i}")), i.to_string()))
        .collect();
    for r in producer.send_all(&msgs).await {
        r.unwrap();
    }
    let start = |instance: &str| {
        let runner = ConsumerRunner::new(
            &kafka.config(),
            producer.clone(),
            ConsumerSettings::new(group.as_str(), &[topic.as_str()])
                .instance(instance)
                .max_batch(100),
            Tally::default(),
        )
        .unwrap();
        let handler = runner.handler().clone();
        let stop = Shutdown::new();
        let task = tokio::spawn(runner.run(stop.clone()));
        (handler, stop, task)
    };
    let (a, a_stop, a_task) = start("a");
    let started = kafkube_testkit::eventually(Duration::from_secs(30), || {
        let n = a.seen.lock().unwrap().len();
        async move { (n >= 1_000).then_some(()) }
    })
    .await;
    assert!(started.is_some(), "the first member consumes");
    let (b, b_stop, b_task) = start("b");
    let all = kafkube_testkit::eventually(Duration::from_secs(60), || {
        let distinct: BTreeSet<(i32, i64)> = a
            .seen
            .lock()
            .unwrap()
            .iter()
            .chain(b.seen.lock().unwrap().iter())
            .copied()
            .collect();
        async move { (distinct.len() >= N).then_some(()) }
    })
    .await;
    a_stop.trigger();
    b_stop.trigger();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
    assert!(all.is_some(), "every record handled");
    let (a, b) = (a.seen.lock().unwrap().clone(), b.seen.lock().unwrap().clone());
    assert!(!b.is_empty(), "the second member took partitions over");
    let handled = a.len() + b.len();
    assert_eq!(handled, N, "{} records handled twice", handled - N);
}
