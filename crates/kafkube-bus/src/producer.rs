//! The idempotent producer every app publishes through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::link::{Link, LinkContext};
use crate::{BusError, HeaderMap, KafkaConfig, Result};

/// One record to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    pub topic: String,
    /// Partitioning key: records with the same key keep their order.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HeaderMap,
    /// An explicit partition (request/reply addresses a replica's partition); usually `None`.
    pub partition: Option<i32>,
}

impl Outgoing {
    pub fn new(topic: impl Into<String>, key: Option<impl Into<Vec<u8>>>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: key.map(Into::into),
            payload: payload.into(),
            headers: HeaderMap::default(),
            partition: None,
        }
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(key, value);
        self
    }
}

/// Where the broker put a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// Cheap to clone: clones share one librdkafka producer (and its connections and batches).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<LinkContext>,
    link: Link,
    /// When the last reachability probe failed (probes are single-flight, at most one a second).
    probe: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let link = Link::default();
        let mut cc = config.producer_config();
        cc.set("statistics.interval.ms", crate::link::STATS_INTERVAL_MS);
        Ok(Self {
            inner: cc.create_with_context(LinkContext { link: link.clone() })?,
            link,
            probe: Arc::default(),
        })
    }

    /// The broker link as this producer sees it (see [`Link`]).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Can the broker be reached now? Answers at once while the link is up; when it is down,
    /// confirms with a metadata request (at most one every second, bounded to 500 ms), so a
    /// request path can refuse quickly and still notice a recovery without other traffic.
    pub async fn reachable(&self) -> bool {
        if self.link.is_up() {
            return true;
        }
        let mut last_failure = self.probe.lock().await;
        if self.link.is_up() {
            return true;
        }
        if last_failure.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        let ok = self.ping(Duration::from_millis(500)).await.is_ok();
        if ok {
            self.link.set(true);
            *last_failure = None;
        } else {
            *last_failure = Some(Instant::now());
        }
        ok
    }

    /// Publishes one record and waits for the broker's acknowledgement.
    pub async fn send(&self, msg: &Outgoing) -> Result<Delivery> {
        let mut results = self.send_all(std::slice::from_ref(msg)).await;
        results.pop().unwrap_or(Err(BusError::Shutdown))
    }

    /// Publishes records in the given order and waits for every acknowledgement. Records are
    /// enqueued in order, and the idempotent producer keeps that order per partition, retries
    /// included. A full local queue is waited out, not reported.
    pub async fn send_all(&self, msgs: &[Outgoing]) -> Vec<Result<Delivery>> {
        let mut pending = Vec::with_capacity(msgs.len());
        for msg in msgs {
            pending.push(self.enqueue(msg).await);
        }
        let waits = pending.into_iter().zip(msgs).map(|(p, msg)| async move {
            let future = p?;
            match future.await {
                Ok(Ok(d)) => {
                    self.link.set(true);
                    Ok(Delivery {
                        partition: d.partition,
                        offset: d.offset,
                    })
                }
                Ok(Err((source, _))) => Err(BusError::Delivery {
                    topic: msg.topic.clone(),
                    source,
                }),
                Err(_canceled) => Err(BusError::Delivery {
                    topic: msg.topic.clone(),
                    source: KafkaError::Canceled,
                }),
            }
        });
        join_all(waits).await
    }

    async fn enqueue(&self, msg: &Outgoing) -> Result<rdkafka::producer::DeliveryFuture> {
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&msg.topic)
                .payload(&msg.payload)
                .headers(msg.headers.to_kafka());
            if let Some(key) = &msg.key {
                record = record.key(key.as_slice());
            }
            if let Some(p) = msg.partition {
                record = record.partition(p);
            }
            match self.inner.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until everything enqueued has been acknowledged or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        Ok(self.inner.flush(timeout)?)
    }

    /// Asks the cluster for metadata: proof that a broker answers (used by `/ready`).
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.client().fetch_metadata(None, timeout).map(drop))
            .await
            .map_err(|e| BusError::Config(format!("metadata task failed: {e}")))?
            .map_err(|e| match e.rdkafka_error_code() {
                Some(code) if crate::link::is_connection_error(code) => {
                    BusError::Unreachable(crate::link::reach::last_failure())
                }
                _ => e.into(),
            })
    }
}
