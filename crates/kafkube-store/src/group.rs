//! Group commit: concurrent requests share one transaction.
//!
//! An HTTP handler that writes a few rows per request pays a transaction per request: a commit
//! (a WAL flush), a round of statements, and, on SQLite, a turn at the one write lock. Under load
//! most of that is overhead. [`GroupCommit`] hands each request's item to a few writer tasks;
//! each writer takes every item that is waiting (up to a weight limit), writes them with one call
//! of [`GroupWrite::write`] (one transaction), and gives each request its own result. When idle, a
//! request goes alone and waits for nothing; under load a transaction carries many requests.
//!
//! If a merged write fails, its items are written again one by one, so one bad item cannot fail
//! the requests it happened to share a transaction with, and each request gets its own answer.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Db, StoreError};

/// What a [`GroupCommit`] writes: many items in one transaction, all or nothing.
pub trait GroupWrite: Send + Sync + 'static {
    /// One request's share (an order, a batch of events).
    type Item: Send + Sync + 'static;
    /// What that request learns (its id, its counts).
    type Output: Send + 'static;

    /// Writes every item in one transaction and returns one output per item, in order. An error
    /// must leave nothing written.
    fn write<'a>(
        &'a self,
        db: &'a Db,
        items: &'a [Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Output>, StoreError>> + Send + 'a;

    /// How much of a transaction's budget the item takes (events in a request); 1 by default.
    fn weight(_item: &Self::Item) -> usize {
        1
    }
}

struct Job<W: GroupWrite> {
    item: W::Item,
    reply: oneshot::Sender<Result<W::Output, StoreError>>,
}

/// Cheap to clone; clones feed the same writers, which stop when the last clone is dropped.
pub struct GroupCommit<W: GroupWrite> {
    db: Db,
    write: Arc<W>,
    tx: mpsc::Sender<Job<W>>,
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            write: self.write.clone(),
            tx: self.tx.clone(),
        }
    }
}

/// How a [`GroupCommit`] batches.
#[derive(Clone, Copy, Debug)]
pub struct GroupOptions {
    /// Writer tasks; each holds at most one connection at a time. On SQLite (one writer at a
    /// time) more than one only helps to overlap a commit with the next batch's statements.
    pub writers: usize,
    /// A writer stops taking items once their weights reach this.
    pub max_weight: usize,
    /// The histogram of requests per transaction (`<metric>` in `/metrics`).
    pub metric: &'static str,
}

impl<W: GroupWrite> GroupCommit<W> {
    /// Starts the writer tasks (on the current tokio runtime).
    pub fn start(db: Db, write: W, options: GroupOptions) -> Self {
        let (tx, rx) = mpsc::channel::<Job<W>>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..options.writers.max(1) {
            tokio::spawn(writer(db.clone(), write.clone(), rx.clone(), options));
        }
        Self { db, write, tx }
    }

    /// Writes `item` (with the items waiting alongside it) and returns its own output.
    pub async fn submit(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.tx.send(Job { item, reply }).await {
            // The writers are gone (the runtime is shutting down): write it here.
            return alone(&*self.write, &self.db, &job.item).await;
        }
        match answer.await {
            Ok(r) => r,
            // A writer dropped the job without answering: only when the runtime is shutting down.
            Err(_) => Err(StoreError::Sqlx(sqlx::Error::WorkerCrashed)),
        }
    }
}

async fn alone<W: GroupWrite>(write: &W, db: &Db, item: &W::Item) -> Result<W::Output, StoreError> {
    let mut out = write.write(db, std::slice::from_ref(item)).await?;
    out.pop()
        .ok_or_else(|| StoreError::Sqlx(sqlx::Error::Protocol("a group write returned no result".into())))
}

async fn writer<W: GroupWrite>(db: Db, write: Arc<W>, rx: Arc<Mutex<mpsc::Receiver<Job<W>>>>, options: GroupOptions) {
    loop {
        let (mut items, mut replies) = (Vec::new(), Vec::new());
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut weight = W::weight(&first.item);
            items.push(first.item);
            replies.push(first.reply);
            while weight < options.max_weight {
                let Ok(job) = rx.try_recv() else { break };
                weight += W::weight(&job.item);
                items.push(job.item);
                replies.push(job.reply);
            }
        }
        metrics::histogram!(options.metric).record(items.len() as f64);
        match write.write(&db, &items).await {
            Ok(outputs) if outputs.len() == items.len() => {
                for (reply, out) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(outputs) => {
                let e = format!(
                    "a group write returned {} results for {} items",
                    outputs.len(),
                    items.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Sqlx(sqlx::Error::Protocol(e.clone()))));
                }
            }
            Err(e) if items.len() == 1 => {
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, requests = items.len(), "a merged write failed; writing its items one by one");
                for (item, reply) in items.iter().zip(replies) {
                    let _ = reply.send(alone(&*write, &db, item).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;

    use super::*;
    use crate::{DbArgs, on_db, on_tx};

    /// Inserts numbers into a table that refuses negative ones, counting its transactions.
    struct Numbers {
        calls: Arc<AtomicUsize>,
    }

    impl GroupWrite for Numbers {
        type Item = i64;
        type Output = i64;

        async fn write(&self, db: &Db, items: &[i64]) -> Result<Vec<i64>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut tx = db.begin().await?;
            for n in items {
                on_tx!(&mut tx, conn => {
                    sqlx::query("INSERT INTO numbers (n) VALUES ($1)").bind(n).execute(&mut *conn).await?;
                });
            }
            tx.commit().await?;
            Ok(items.iter().map(|n| n * 10).collect())
        }
    }

    async fn numbers_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("g.db").display());
        let db = Db::connect(&url, &DbArgs::default()).await.unwrap();
        on_db!(&db, p => sqlx::query("CREATE TABLE numbers (n INTEGER NOT NULL CHECK (n >= 0))")
            .execute(p)
            .await
            .map(drop))
        .unwrap();
        (dir, db)
    }

    /// One writer over [`numbers_db`], and its count of transactions.
    async fn numbers_group(max_weight: usize) -> (tempfile::TempDir, Db, GroupCommit<Numbers>, Arc<AtomicUsize>) {
        let (dir, db) = numbers_db().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let group = GroupCommit::start(
            db.clone(),
            Numbers { calls: calls.clone() },
            GroupOptions {
                writers: 1,
                max_weight,
                metric: "test_items_per_transaction",
            },
        );
        (dir, db, group, calls)
    }

    async fn count(db: &Db) -> i64 {
        let (n,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM numbers").fetch_one(p).await).unwrap();
        n
    }

    // Current-thread runtime: every submit below is queued before the writer first runs, so
    // the batches are known.
    #[tokio::test]
    async fn concurrent_items_share_a_transaction_and_a_bad_one_fails_alone() {
        let (_dir, db, group, calls) = numbers_group(1000).await;

        let answers = join_all((0..50).map(|n| group.submit(n))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "50 waiting items, one transaction");
        let outputs: Vec<i64> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            outputs,
            (0..50).map(|n| n * 10).collect::<Vec<_>>(),
            "each gets its own output"
        );
        assert_eq!(count(&db).await, 50);

        // One refused item among 20: the merged transaction rolls back, then each goes alone.
        let answers = join_all((100..120).map(|n| group.submit(if n == 110 { -1 } else { n }))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1 + 1 + 20);
        for (i, a) in answers.iter().enumerate() {
            assert_eq!(a.is_err(), i == 10, "item {i}: {a:?}");
        }
        assert_eq!(count(&db).await, 50 + 19, "nothing of the bad item, all of the others");
    }

    #[tokio::test]
    async fn a_writer_stops_taking_items_at_its_weight_limit() {
        let (_dir, db, group, calls) = numbers_group(10).await;
        let answers = join_all((0..35).map(|n| group.submit(n))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "35 items at 10 a transaction");
        assert_eq!(count(&db).await, 35);
    }
}
