//! [`RpcClient`]: sends requests with their reply address and waits for the reply.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kafkube_core::Shutdown;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{Header, KafkaConfig, Outgoing, Producer, Record, Result};

use super::listener::{Handover, HandoverContext, ReplyContext};
use super::state::{Inner, Routes, START_WAIT, Waiter};
use super::{ReplyListener, RpcError, RpcSettings};

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
        // Reads partitions given up in a rebalance until their requests end; it assigns
        // partitions itself and never joins the group (the group id only satisfies librdkafka).
        let mut hc = config.consumer_config(&settings.group_id);
        hc.set("client.id", format!("kafkube-{}-replies-handover", settings.instance))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest");
        let handover = Arc::new(Handover::new(
            hc.create_with_context(HandoverContext)?,
            settings.reply_topic.clone(),
        ));
        let consumer: StreamConsumer<ReplyContext> = cc.create_with_context(ReplyContext {
            topic: settings.reply_topic.clone(),
            group: settings.group_id.clone(),
            routes: routes.clone(),
            handover: handover.clone(),
            starts: Mutex::default(),
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
            handover,
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
        // A request that arrives while this replica joins its reply group (start-up, a rebalance,
        // a group coordinator that died) waits for a reply partition, up to START_WAIT within its
        // own timeout, rather than being refused. One whose own time ran out meanwhile timed out.
        let wait_until = Instant::now() + START_WAIT;
        let partition = match inner.routes.pick_or_wait(deadline.min(wait_until)).await {
            Some(p) => p,
            None if deadline <= wait_until => return Err(RpcError::Timeout(timeout)),
            None => return Err(RpcError::NoRoute(inner.reply_topic.clone())),
        };
        // Registered as waiting on `partition` right after picking it (no await in between): a
        // rebalance that takes the partition away keeps reading it for this request (handover).
        let (tx, rx) = oneshot::channel();
        let _guard = {
            let mut pending = inner.pending();
            if pending.contains_key(&id) {
                return Err(RpcError::DuplicateId(id));
            }
            pending.insert(id.clone(), Waiter { partition, tx });
            metrics::gauge!("kafkube_rpc_pending").increment(1.0);
            PendingGuard { inner, id }
        };
        let deadline_ms = Utc::now().timestamp_millis() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2);
        request.headers.insert(Header::REPLY_TOPIC, inner.reply_topic.as_str());
        request.headers.insert(Header::REPLY_PARTITION, partition.to_string());
        request.headers.insert(Header::DEADLINE_MS, deadline_ms.to_string());

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
