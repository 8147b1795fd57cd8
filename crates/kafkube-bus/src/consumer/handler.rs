//! The handler contract: what an app writes for a consumer group.

use std::future::Future;

use crate::{Outgoing, Record};

/// Any error a handler wraps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a batch failed, classified by what the runner must do about it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Something outside the records failed (database or broker unreachable, a lock timeout).
    /// Retried with backoff until it succeeds or the process shuts down; nothing is committed
    /// meanwhile, so nothing is lost.
    #[error("{0}")]
    Transient(BoxError),
    /// The records cannot be processed as they are. Retried a few times, then record by record;
    /// a record that still fails goes to the dead-letter topic, with this error in a header.
    #[error("{0}")]
    Permanent(BoxError),
    /// The consumer is stopping: the batch was not handled and its offsets are not stored, so it
    /// is delivered again. Returned by the [`Retry`](super::layers::Retry) layer; apps need not.
    #[error("stopped before the batch was handled")]
    Stopped,
}

impl HandlerError {
    pub fn transient(e: impl Into<BoxError>) -> Self {
        Self::Transient(e.into())
    }

    pub fn permanent(e: impl Into<BoxError>) -> Self {
        Self::Permanent(e.into())
    }
}

/// The one classification of database errors for consumers: data the database refuses
/// (a constraint, a value out of range) is permanent and ends in the dead-letter topic; every
/// other failure is transient and retried, because dead-lettering on an outage would lose data.
impl From<kafkube_store::StoreError> for HandlerError {
    fn from(e: kafkube_store::StoreError) -> Self {
        if e.is_data_error() {
            Self::Permanent(e.into())
        } else {
            Self::Transient(e.into())
        }
    }
}

/// What a handler did with a batch it processed.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Records of the batch (by index) that are malformed, with the reason: they go to the
    /// dead-letter topic and are committed past.
    pub rejected: Vec<(usize, String)>,
    /// Records to publish (a transform's output, a reply). The batch's offsets are stored only
    /// after the broker acknowledged all of them.
    pub produce: Vec<Outgoing>,
}

impl BatchOutput {
    pub fn reject(&mut self, index: usize, reason: impl Into<String>) {
        self.rejected.push((index, reason.into()));
    }
}

/// An app's logic for one consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Processes `batch` (records of any assigned partitions, in order within each partition).
    /// Must be idempotent: after a crash or rebalance a record may be handled again.
    fn handle(&self, batch: &[Record]) -> impl Future<Output = std::result::Result<BatchOutput, HandlerError>> + Send;
}
