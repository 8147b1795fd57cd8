//! A consumer's waiting fetch ends when data arrives, as on a real broker — also on the embedded
//! one, whose mock cluster Kafkube patches for it (upstream, the mock holds an empty fetch for the
//! whole `fetch.wait.max.ms`). Against `KAFKUBE_TEST_KAFKA_BROKERS` it checks the real broker.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kafkube_bus::{Outgoing, Producer};
use kafkube_testkit::{TestKafka, unique};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_returns_as_soon_as_a_record_arrives() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("fetch_wait", 2).await;
    // A wait far longer than the test allows: only an early answer lets the record through.
    const WAIT: Duration = Duration::from_secs(25);
    let consumer: StreamConsumer = kafka
        .config()
        .consumer_config(&unique("fetch_wait"))
        .set("fetch.wait.max.ms", WAIT.as_millis().to_string())
        .set("socket.timeout.ms", (WAIT.as_millis() + 10_000).to_string())
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let producer = Producer::new(&kafka.config()).unwrap();

    for round in 0..3 {
        // Let the consumer's fetches reach the broker and start waiting on the empty partitions.
        let _ = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
        let sent = Instant::now();
        let payload = format!("round {round}");
        producer
            .send(&Outgoing::new(&topic, Some(format!("k{round}")), payload.clone()))
            .await
            .unwrap();
        let msg = tokio::time::timeout(WAIT / 2, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the record did not end the fetch wait"))
            .unwrap();
        assert_eq!(msg.payload_view::<str>().unwrap().unwrap(), payload);
        eprintln!("round {round}: received {:?} after sending", sent.elapsed());
    }
}
