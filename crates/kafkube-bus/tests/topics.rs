//! `TopicReader`: every topic's partitions with their first and end offsets, as the cluster has
//! them (on the embedded broker and on a real Kafka, whichever the leg runs).

use std::time::Duration;

use kafkube_bus::{Outgoing, Producer, TopicReader};
use kafkube_testkit::TestKafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_sees_every_partition_end_as_records_arrive() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("described", 3).await;
    let reader = TopicReader::new(&kafka.config()).unwrap();
    let find = |all: Vec<kafkube_bus::TopicOffsets>| all.into_iter().find(|t| t.name == topic);

    let empty = find(reader.describe(Duration::from_secs(10)).await.unwrap()).expect("the topic is listed");
    assert_eq!(empty.partitions, [(0, 0, 0), (1, 0, 0), (2, 0, 0)]);

    let producer = Producer::new(&kafka.config()).unwrap();
    for (partition, n) in [(0, 5), (2, 2)] {
        for i in 0..n {
            let mut msg = Outgoing::new(&topic, Some(format!("k{i}")), "x");
            msg.partition = Some(partition);
            producer.send(&msg).await.unwrap();
        }
    }
    // The same reader (one client, kept) sees the new ends.
    let now = find(reader.describe(Duration::from_secs(10)).await.unwrap()).unwrap();
    assert_eq!(now.partitions, [(0, 0, 5), (1, 0, 0), (2, 0, 2)]);
    assert_eq!((now.records(), now.written()), (7, 7));
    assert!(
        reader
            .describe(Duration::from_secs(10))
            .await
            .unwrap()
            .iter()
            .all(|t| !t.name.starts_with("__")),
        "internal topics are left out"
    );
}
