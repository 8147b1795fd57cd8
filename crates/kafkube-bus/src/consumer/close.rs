//! Leaving a consumer group with a bound on the wait.
//!
//! Dropping a librdkafka consumer closes it: it leaves its group and waits until librdkafka says
//! it is closed. That wait has no bound of its own: it lasts as long as the broker takes to
//! answer, and a close that meets a rebalance in progress (a consumer that had only just joined)
//! can wait forever (librdkafka #2615, #4884). It also blocks the thread it runs on, which must
//! not be one of the async runtime's few workers.

use std::time::Duration;

/// How long a stop waits for a consumer to leave its group.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Drops `consumer` (closing it) on a thread of its own and waits up to [`CLOSE_LIMIT`] for the
/// close to end. A close that takes longer is left to finish on its thread, or to end with the
/// process; the group then reassigns its partitions once the member's session times out, and
/// what it had not committed is redelivered.
pub async fn close<C: Send + 'static>(consumer: C, group: &str) {
    let (done, closed) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("kafkube-close".into()).spawn(move || {
        drop(consumer);
        let _ = done.send(());
    });
    if spawned.is_err() {
        // No thread to spare: the close runs here, unbounded, as a plain drop would.
        return;
    }
    if tokio::time::timeout(CLOSE_LIMIT, closed).await.is_err() {
        tracing::warn!(
            group,
            "the consumer did not leave its group within {CLOSE_LIMIT:?}; going on without waiting \
             (the group reassigns its partitions when the member's session times out)"
        );
    }
}
