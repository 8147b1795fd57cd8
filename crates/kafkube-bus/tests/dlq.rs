//! Dead letters read back and replayed to their origin, each once, against a real Kafka-protocol
//! broker (embedded, or `KAFKUBE_TEST_KAFKA_BROKERS`).

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafkube_bus::dlq::{self, Position, Selection};
use kafkube_bus::{
    BatchOutput, BusError, ConsumerRunner, ConsumerSettings, Handler, HandlerError, Outgoing, Producer, Record,
};
use kafkube_core::Shutdown;
use kafkube_testkit::{TestKafka, eventually, unique};

const WAIT: Duration = Duration::from_secs(30);

/// Refuses records starting with "bad" until the cause is fixed; remembers what it accepted.
#[derive(Default)]
struct Picky {
    fixed: AtomicBool,
    seen: Mutex<Vec<String>>,
}

impl Handler for Picky {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        for (i, r) in batch.iter().enumerate() {
            let text = String::from_utf8_lossy(r.payload()).into_owned();
            if text.starts_with("bad") && !self.fixed.load(Ordering::SeqCst) {
                out.reject(i, "the price list is missing");
            } else {
                self.seen.lock().unwrap().push(text);
            }
        }
        Ok(out)
    }
}

impl Picky {
    fn count(&self, text: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|t| *t == text).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_with_their_origin_and_replayed_once_each() {
    let kafka = TestKafka::start();
    let config = kafka.config();
    let topic = kafka.topic("dlq", 2).await;
    let dlq_topic = dlq::dlq_topic(&topic);
    let producer = Producer::new(&config).unwrap();
    let records: Vec<Outgoing> = [("k1", "a"), ("k2", "bad-1"), ("k3", "b"), ("k4", "bad-2")]
        .iter()
        .map(|(k, v)| Outgoing::new(&topic, Some(*k), *v).header("correlation-id", format!("c-{v}")))
        .collect();
    for r in producer.send_all(&records).await {
        r.unwrap();
    }

    let runner = ConsumerRunner::new(
        &config,
        producer.clone(),
        ConsumerSettings::new(unique("g"), &[&topic]),
        Picky::default(),
    )
    .unwrap();
    let handler = runner.handler().clone();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown.clone()));

    // The two bad records are dead-lettered, with the error and where they came from.
    let letters = eventually(WAIT, || {
        let config = config.clone();
        let dlq_topic = dlq_topic.clone();
        async move { dlq::read(&config, &dlq_topic, WAIT).await.ok().filter(|l| l.len() == 2) }
    })
    .await
    .expect("two dead letters");
    let payloads: Vec<_> = letters
        .iter()
        .map(|l| String::from_utf8_lossy(&l.payload).into_owned())
        .collect();
    assert_eq!(
        payloads
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        ["bad-1", "bad-2"].into()
    );
    for l in &letters {
        assert_eq!(l.error(), "the price list is missing");
        let origin = l.origin(&dlq_topic);
        assert_eq!(origin.topic, topic);
        assert!(origin.partition.is_some() && origin.offset.is_some(), "{origin:?}");
    }
    assert!(dlq::replayed(&config, &dlq_topic, WAIT).await.unwrap().is_empty());
    let bad1 = letters[payloads.iter().position(|p| p == "bad-1").unwrap()].position;

    // The cause is fixed; one letter replayed, then all: each reaches the handler once.
    handler.fixed.store(true, Ordering::SeqCst);
    let one = dlq::replay(
        &config,
        &producer,
        &dlq_topic,
        &Selection::Only(vec![bad1]),
        false,
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(one.replayed, vec![(bad1, topic.clone())]);
    let rest = dlq::replay(&config, &producer, &dlq_topic, &Selection::All, false, WAIT)
        .await
        .unwrap();
    assert_eq!((rest.replayed.len(), rest.already.clone()), (1, vec![bad1]));
    let again = dlq::replay(&config, &producer, &dlq_topic, &Selection::All, false, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (again.replayed.len(), again.already.len()),
        (0, 2),
        "a second replay re-sends nothing"
    );

    let both = eventually(WAIT, || {
        let done = handler.count("bad-1") >= 1 && handler.count("bad-2") >= 1;
        async move { done.then_some(()) }
    })
    .await;
    assert!(
        both.is_some(),
        "replays not consumed: {:?}",
        handler.seen.lock().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((handler.count("bad-1"), handler.count("bad-2")), (1, 1));
    assert_eq!(kafka.records_written(&topic), 6, "4 records and 2 replays");
    assert_eq!(dlq::replayed(&config, &dlq_topic, WAIT).await.unwrap().len(), 2);

    // A position that is not there is reported, not an error; `again` sends a letter once more.
    let absent = Position {
        partition: 0,
        offset: 999,
    };
    let missing = dlq::replay(
        &config,
        &producer,
        &dlq_topic,
        &Selection::Only(vec![absent]),
        false,
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!((missing.missing, missing.replayed.len()), (vec![absent], 0));
    let forced = dlq::replay(&config, &producer, &dlq_topic, &Selection::Only(vec![bad1]), true, WAIT)
        .await
        .unwrap();
    assert_eq!(forced.replayed.len(), 1);
    let twice = eventually(WAIT, || {
        let n = handler.count("bad-1");
        async move { (n == 2).then_some(()) }
    })
    .await;
    assert!(twice.is_some(), "a forced replay is sent");

    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_does_not_exist_is_named() {
    let kafka = TestKafka::start();
    let name = unique("nothing-here.dlq");
    match dlq::read(&kafka.config(), &name, Duration::from_secs(10)).await {
        Err(BusError::Config(msg)) => assert!(msg.contains(&name), "{msg}"),
        other => panic!("expected a missing-topic error, got {other:?}"),
    }
}
