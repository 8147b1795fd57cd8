//! Request/reply over Kafka, for any number of requester and responder replicas.
//!
//! **Requester** ([`RpcClient`]): each replica joins one consumer group on the reply topic, so the
//! group hands every replica its own reply partitions. A request carries its correlation id and
//! its *reply address* — the reply topic and one of the requester's own partitions — in headers,
//! plus a deadline. The pending entry is removed on reply, on timeout, when the caller gives up
//! (its future is dropped) and on shutdown; `kafkube_rpc_pending` shows how many there are.
//! Replies are therefore read only by the replica that asked: nothing is broadcast.
//!
//! **Responder**: an ordinary [`Handler`](crate::Handler) that returns [`reply`] records in its
//! [`BatchOutput`](crate::BatchOutput); the consumer runner publishes them before it stores the
//! request's offset. [`expired`] lets it skip requests whose requester has already given up.
//!
//! A new reply partition starts at its end as the rebalance assigns it (the end is read inside
//! the rebalance callback), so a reply to any request sent after that cannot be skipped.
//! Partitions move between requester replicas only when replicas come or go (the assignor is
//! `cooperative-sticky`); requests in flight on a partition that moves time out, and the replica
//! that receives their replies counts them in `kafkube_rpc_replies_unmatched_total`. The reply
//! topic needs at least as many partitions as there are requester replicas; a replica without
//! one is not ready.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use kafkube_core::Shutdown;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{BusError, Header, KafkaConfig, Outgoing, Producer, Record, Result};

/// Where and how a requester receives replies.
#[derive(Clone, Debug)]
pub struct RpcSettings {
    /// The topic replies are sent to; each requester replica reads its own partitions of it.
    pub reply_topic: String,
    /// The requesters' consumer group on the reply topic (it shares the partitions out).
    pub group_id: String,
    /// Instance name, for logs.
    pub instance: String,
}

impl RpcSettings {
    pub fn new(reply_topic: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            reply_topic: reply_topic.into(),
            group_id: group_id.into(),
            instance: crate::consumer::default_instance_name(),
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no reply within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the Kafka broker is unreachable: {0}")]
    Unreachable(String),
    #[error(
        "this replica has no partition of the reply topic `{0}` yet (joining its consumer group; the topic must exist)"
    )]
    NoRoute(String),
    #[error("the request could not be published: {0}")]
    Publish(BusError),
    #[error("the responder reported an error: {0}")]
    Remote(String),
    #[error("a request with correlation id `{0}` is already waiting for its reply")]
    DuplicateId(String),
    #[error("shutting down")]
    Shutdown,
}

impl RpcError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::NoRoute(_) => "no_route",
            Self::Publish(_) => "publish_failed",
            Self::Remote(_) => "remote_error",
            Self::DuplicateId(_) => "duplicate_id",
            Self::Shutdown => "shutdown",
        }
    }
}

/// The reply partitions this replica owns, shared with the rebalance callback.
#[derive(Debug, Default)]
struct Routes {
    partitions: RwLock<Vec<i32>>,
    next: AtomicUsize,
    /// Woken whenever the owned partitions change, for requests waiting for a first one.
    changed: tokio::sync::Notify,
}

impl Routes {
    fn update(&self, f: impl FnOnce(&mut BTreeSet<i32>)) -> Vec<i32> {
        let mut guard = self
            .partitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut set: BTreeSet<i32> = guard.iter().copied().collect();
        f(&mut set);
        *guard = set.into_iter().collect();
        metrics::gauge!("kafkube_rpc_reply_partitions").set(guard.len() as f64);
        self.changed.notify_waiters();
        guard.clone()
    }

    /// [`pick`](Self::pick), waiting until `until` for a partition when this replica owns none
    /// yet (it is joining its group, or a rebalance moved its partitions).
    async fn pick_or_wait(&self, until: Instant) -> Option<i32> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so an assignment between the two is not missed.
            changed.as_mut().enable();
            if let Some(p) = self.pick() {
                return Some(p);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => return self.pick(),
            }
        }
    }

    /// The next owned partition, round robin.
    fn pick(&self) -> Option<i32> {
        let guard = self
            .partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % guard.len();
        Some(guard[i])
    }

    fn snapshot(&self) -> Vec<i32> {
        self.partitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

type Pending = Mutex<HashMap<String, oneshot::Sender<Record>>>;

/// How long a request waits for this replica's first reply partition before it is refused.
const START_WAIT: Duration = Duration::from_secs(5);

struct Inner {
    producer: Producer,
    reply_topic: String,
    pending: Pending,
    routes: Arc<Routes>,
    shutdown: Shutdown,
}

impl Inner {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Record>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes a pending entry. The gauge moves by one per entry (not `set`), so it stays right
    /// with several clients in one process.
    fn take(&self, id: &str) -> Option<oneshot::Sender<Record>> {
        let taken = self.pending().remove(id);
        if taken.is_some() {
            metrics::gauge!("kafkube_rpc_pending").decrement(1.0);
        }
        taken
    }
}

/// Sends requests and matches their replies. Cheap to clone; clones share the pending map.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("reply_topic", &self.inner.reply_topic)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

/// Removes a pending entry however the request ends.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.take(&self.id);
    }
}

impl RpcClient {
    /// Creates the requester and its reply listener; run the listener ([`ReplyListener::run`])
    /// for as long as requests are made. Both stop on `shutdown`.
    pub fn new(
        config: &KafkaConfig,
        producer: Producer,
        settings: RpcSettings,
        shutdown: &Shutdown,
    ) -> Result<(Self, ReplyListener)> {
        let routes = Arc::new(Routes::default());
        let mut cc = config.consumer_config(&settings.group_id);
        cc.set("client.id", format!("kafkube-{}-replies", settings.instance))
            // Replies are only useful to the request that waits for them: nothing to resume.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        let consumer: StreamConsumer<ReplyContext> = cc.create_with_context(ReplyContext {
            topic: settings.reply_topic.clone(),
            group: settings.group_id.clone(),
            routes: routes.clone(),
        })?;
        consumer.subscribe(&[settings.reply_topic.as_str()])?;
        let inner = Arc::new(Inner {
            producer,
            reply_topic: settings.reply_topic.clone(),
            pending: Mutex::default(),
            routes,
            shutdown: shutdown.clone(),
        });
        let listener = ReplyListener {
            consumer,
            inner: inner.clone(),
            settings,
        };
        Ok((Self { inner }, listener))
    }

    /// Requests in flight on this replica.
    pub fn pending(&self) -> usize {
        self.inner.pending().len()
    }

    /// The reply partitions this replica owns now.
    pub fn reply_partitions(&self) -> Vec<i32> {
        self.inner.routes.snapshot()
    }

    /// Ready to send requests: a reply partition is assigned.
    pub fn is_ready(&self) -> bool {
        !self.reply_partitions().is_empty()
    }

    pub fn reply_topic(&self) -> &str {
        &self.inner.reply_topic
    }

    /// Publishes `request` with a correlation id (kept when the caller set one), its reply address
    /// and its deadline, and waits up to `timeout` for the reply. A broker that cannot be reached
    /// is reported at once, not after `timeout`.
    pub async fn request(&self, request: Outgoing, timeout: Duration) -> std::result::Result<Record, RpcError> {
        let started = Instant::now();
        let result = self.request_inner(request, started + timeout, timeout).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!("kafkube_rpc_requests_total", "outcome" => outcome).increment(1);
        metrics::histogram!("kafkube_rpc_request_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn request_inner(
        &self,
        mut request: Outgoing,
        deadline: Instant,
        timeout: Duration,
    ) -> std::result::Result<Record, RpcError> {
        let inner = &*self.inner;
        if inner.shutdown.is_triggered() {
            return Err(RpcError::Shutdown);
        }
        // A request that arrives while this replica joins its reply group (start-up, a rebalance)
        // waits for a reply partition, up to START_WAIT within its own timeout, rather than
        // being refused.
        let partition = inner
            .routes
            .pick_or_wait(deadline.min(Instant::now() + START_WAIT))
            .await
            .ok_or_else(|| RpcError::NoRoute(inner.reply_topic.clone()))?;
        if !inner.producer.reachable().await {
            return Err(RpcError::Unreachable("no broker answers".into()));
        }
        let id = match request.headers.get_str(Header::CORRELATION_ID) {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                request.headers.insert(Header::CORRELATION_ID, id.as_str());
                id
            }
        };
        if request.headers.get(Header::TRACEPARENT).is_none() {
            request
                .headers
                .insert(Header::TRACEPARENT, crate::headers::new_traceparent());
        }
        let deadline_ms = Utc::now().timestamp_millis() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        request.headers.insert(Header::REPLY_TOPIC, inner.reply_topic.as_str());
        request.headers.insert(Header::REPLY_PARTITION, partition.to_string());
        request.headers.insert(Header::DEADLINE_MS, deadline_ms.to_string());

        let (tx, rx) = oneshot::channel();
        let _guard = {
            let mut pending = inner.pending();
            if pending.contains_key(&id) {
                return Err(RpcError::DuplicateId(id));
            }
            pending.insert(id.clone(), tx);
            metrics::gauge!("kafkube_rpc_pending").increment(1.0);
            PendingGuard { inner, id }
        };
        let link = inner.producer.link();
        tokio::select! {
            biased;
            sent = inner.producer.send(&request) => match sent {
                Ok(_) => {}
                Err(e) if e.is_unreachable() => return Err(RpcError::Unreachable(e.to_string())),
                Err(e) => return Err(RpcError::Publish(e)),
            },
            () = link.down() => return Err(RpcError::Unreachable("the connection to the broker was lost".into())),
            () = tokio::time::sleep_until(deadline) => return Err(RpcError::Timeout(timeout)),
            () = inner.shutdown.cancelled() => return Err(RpcError::Shutdown),
        }
        tokio::select! {
            biased;
            reply = rx => match reply {
                Ok(r) => match r.headers.get_str(Header::REPLY_ERROR) {
                    Some(e) => Err(RpcError::Remote(e.to_owned())),
                    None => Ok(r),
                },
                Err(_) => Err(RpcError::Shutdown),
            },
            () = link.down() => Err(RpcError::Unreachable("the connection to the broker was lost".into())),
            () = tokio::time::sleep_until(deadline) => Err(RpcError::Timeout(timeout)),
        }
    }
}

/// Reads this replica's reply partitions and completes the matching requests.
pub struct ReplyListener {
    consumer: StreamConsumer<ReplyContext>,
    inner: Arc<Inner>,
    settings: RpcSettings,
}

impl ReplyListener {
    /// Runs until the client's shutdown trips; then fails what is still pending (`Shutdown`).
    pub async fn run(self) -> Result<()> {
        let inner = &*self.inner;
        tracing::info!(topic = %self.settings.reply_topic, group = %self.settings.group_id, instance = %self.settings.instance, "reply listener started");
        // Consumer errors are librdkafka telling us about its connections; it reconnects by
        // itself. They are logged (the first of a run as a warning), never waited on: a backlog
        // of them queued during an outage must not delay the replies queued behind it.
        let mut failing = false;
        loop {
            let message = tokio::select! {
                biased;
                () = inner.shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            match message {
                Ok(m) => {
                    failing = false;
                    let record = Record::from_message(&m, Utc::now());
                    let waiter = record
                        .headers
                        .get_str(Header::CORRELATION_ID)
                        .and_then(|id| inner.take(id));
                    match waiter {
                        // The waiter may have given up a moment ago; nothing to do then.
                        Some(tx) => drop(tx.send(record)),
                        None => {
                            metrics::counter!("kafkube_rpc_replies_unmatched_total").increment(1);
                            tracing::debug!(
                                partition = record.partition,
                                offset = record.offset,
                                "reply for no pending request (timed out, or asked by another replica before a rebalance)"
                            );
                        }
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(topic = %self.settings.reply_topic, error = %e, "reply consumer error");
                }
                Err(e) => tracing::debug!(topic = %self.settings.reply_topic, error = %e, "reply consumer error"),
            }
        }
        let dropped = {
            let mut pending = inner.pending();
            let n = pending.len();
            pending.clear();
            n
        };
        metrics::gauge!("kafkube_rpc_pending").decrement(dropped as f64);
        tracing::info!(topic = %self.settings.reply_topic, failed_pending = dropped, "reply listener stopped");
        Ok(())
    }
}

/// Keeps [`Routes`] in step with the group's assignment, and starts new partitions at their end.
struct ReplyContext {
    topic: String,
    group: String,
    routes: Arc<Routes>,
}

impl ClientContext for ReplyContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::consumer::log_librdkafka(level, fac, message);
    }
}

impl ConsumerContext for ReplyContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                for (topic, p) in &assigned {
                    // The end as of now: every reply to a request sent from here on is after it.
                    let start = match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                        Ok((_, high)) => Offset::Offset(high),
                        Err(e) => {
                            tracing::warn!(topic = %topic, partition = p, error = %e, "could not read the reply partition's end; starting at the latest offset");
                            Offset::End
                        }
                    };
                    let _ = tpl.set_partition_offset(topic, *p, start);
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(topic = %self.topic, error = %e, "could not take the assigned reply partitions");
                    return;
                }
                let now = self.routes.update(|set| {
                    if !cooperative {
                        set.clear();
                    }
                    set.extend(assigned.iter().map(|(_, p)| *p));
                });
                tracing::info!(topic = %self.topic, group = %self.group, partitions = ?now, "reply partitions assigned");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let now = self.routes.update(|set| {
                    if cooperative {
                        set.retain(|p| !revoked.contains(p));
                    } else {
                        set.clear();
                    }
                });
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(topic = %self.topic, error = %e, "could not release revoked reply partitions");
                }
                tracing::info!(topic = %self.topic, group = %self.group, revoked = ?revoked, partitions = ?now, "reply partitions revoked");
            }
            other => {
                tracing::warn!(topic = %self.topic, group = %self.group, error = ?other, "reply group rebalance error");
                self.routes.update(BTreeSet::clear);
                let _ = consumer.unassign();
            }
        }
    }
}

/// The reply to `request`, addressed to the requester that waits for it (its reply topic and
/// partition, with the correlation id and trace context), or why it cannot be addressed.
pub fn reply(request: &Record, payload: impl Into<Vec<u8>>) -> std::result::Result<Outgoing, String> {
    let topic = request
        .headers
        .get_str(Header::REPLY_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or("request has no reply address (header kafkube-reply-topic)")?;
    let partition = match request.headers.get_str(Header::REPLY_PARTITION) {
        Some(p) => Some(
            p.parse::<i32>()
                .map_err(|_| format!("invalid reply partition `{p}` in header kafkube-reply-partition"))?,
        ),
        None => None,
    };
    let id = request
        .headers
        .get_str(Header::CORRELATION_ID)
        .ok_or("request has no correlation id (header correlation-id)")?;
    let mut out = Outgoing::new(topic, request.key.clone(), payload).header(Header::CORRELATION_ID, id);
    if let Some(tp) = request.headers.get(Header::TRACEPARENT) {
        out = out.header(Header::TRACEPARENT, tp);
    }
    out.partition = partition;
    Ok(out)
}

/// A reply that reports `error` instead of a result; the requester gets [`RpcError::Remote`].
pub fn error_reply(request: &Record, error: &str) -> std::result::Result<Outgoing, String> {
    Ok(reply(request, Vec::new())?.header(Header::REPLY_ERROR, error))
}

/// True when the requester's deadline has passed: it no longer waits for a reply.
pub fn expired(request: &Record) -> bool {
    request
        .headers
        .get_str(Header::DEADLINE_MS)
        .and_then(|d| d.parse::<i64>().ok())
        .is_some_and(|d| Utc::now().timestamp_millis() > d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeaderMap;

    fn request(headers: HeaderMap) -> Record {
        Record {
            topic: "req".into(),
            partition: 0,
            offset: 7,
            key: Some(b"k".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers,
            timestamp_ms: None,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn reply_goes_to_the_requesters_partition() {
        let r = request(
            HeaderMap::new()
                .with(Header::CORRELATION_ID, "c-1")
                .with(Header::REPLY_TOPIC, "replies")
                .with(Header::REPLY_PARTITION, "3")
                .with(Header::TRACEPARENT, "00-abc-def-01"),
        );
        let out = reply(&r, "ok").expect("addressable");
        assert_eq!((out.topic.as_str(), out.partition), ("replies", Some(3)));
        assert_eq!(out.headers.get_str(Header::CORRELATION_ID), Some("c-1"));
        assert_eq!(out.headers.get_str(Header::TRACEPARENT), Some("00-abc-def-01"));
        assert_eq!(out.payload, b"ok");
        let err = error_reply(&r, "bad input").expect("addressable");
        assert_eq!(err.headers.get_str(Header::REPLY_ERROR), Some("bad input"));
    }

    #[test]
    fn unaddressable_requests_are_refused_with_a_reason() {
        let no_topic = request(HeaderMap::new().with(Header::CORRELATION_ID, "c"));
        assert!(reply(&no_topic, "x").unwrap_err().contains("reply address"));
        let no_id = request(HeaderMap::new().with(Header::REPLY_TOPIC, "replies"));
        assert!(reply(&no_id, "x").unwrap_err().contains("correlation id"));
        let bad_partition = request(
            HeaderMap::new()
                .with(Header::CORRELATION_ID, "c")
                .with(Header::REPLY_TOPIC, "replies")
                .with(Header::REPLY_PARTITION, "x"),
        );
        assert!(
            reply(&bad_partition, "x")
                .unwrap_err()
                .contains("invalid reply partition")
        );
    }

    #[test]
    fn deadlines() {
        let past = Utc::now().timestamp_millis() - 1;
        let future = Utc::now().timestamp_millis() + 60_000;
        assert!(expired(&request(
            HeaderMap::new().with(Header::DEADLINE_MS, past.to_string())
        )));
        assert!(!expired(&request(
            HeaderMap::new().with(Header::DEADLINE_MS, future.to_string())
        )));
        assert!(!expired(&request(HeaderMap::new())));
    }

    #[test]
    fn routes_round_robin_over_owned_partitions() {
        let routes = Routes::default();
        assert_eq!(routes.pick(), None);
        routes.update(|s| s.extend([4, 1]));
        let picks: Vec<_> = (0..4).filter_map(|_| routes.pick()).collect();
        assert_eq!(picks, vec![1, 4, 1, 4]);
        routes.update(|s| s.retain(|p| *p != 1));
        assert_eq!(routes.pick(), Some(4));
    }
}
