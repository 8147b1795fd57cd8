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
//! `cooperative-sticky`). A replica that gives a partition up stops sending requests with it at
//! once, and goes on reading it outside the group (the *handover* consumer, from where it stopped)
//! until no request of its own waits on it, so a request in flight during a rebalance still gets
//! its reply. The new owner reads those replies too and counts them in
//! `kafkube_rpc_replies_unmatched_total`. The reply
//! topic needs at least as many partitions as there are requester replicas; a replica without
//! one is not ready.

//!
//! The parts: [`RpcClient`] (`client`), [`ReplyListener`] and its rebalance handling (`listener`),
//! the owned reply partitions and pending requests they share (`state`), and the responder's
//! helpers [`reply`], [`error_reply`] and [`expired`] (`responder`).

mod client;
mod listener;
mod responder;
mod state;

pub use client::RpcClient;
pub use listener::ReplyListener;
pub use responder::{error_reply, expired, reply};

use std::time::Duration;

use crate::BusError;

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
