//! Request coalescing for `POST /publish`: concurrent requests share one database statement.
//!
//! A few writer tasks each take every request that is waiting (up to [`MERGE_EVENTS`] events),
//! store them with one [`store::ingest_many`](crate::store::ingest_many), and give each request
//! its own counts. Under load this removes most of the per-statement cost (parsing, commit, WAL
//! flush) and the lock waits between concurrent requests that repeat each other's ids; when idle,
//! a request goes alone and waits for nothing. If a merged statement fails, its requests are
//! retried one by one, so each gets its own answer.

use std::sync::Arc;

use kafkube_store::{Db, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::model::Event;
use crate::store::{self, Ingested};

/// A writer stops taking more requests once it holds this many events.
pub const MERGE_EVENTS: usize = 2000;

struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// Cheap to clone; clones feed the same writers.
#[derive(Clone)]
pub struct Coalescer {
    db: Db,
    tx: mpsc::Sender<Job>,
}

impl Coalescer {
    /// Starts `writers` writer tasks (each holds at most one database connection at a time).
    /// They stop when the last `Coalescer` clone is dropped.
    pub fn start(db: Db, writers: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(db.clone(), rx.clone()));
        }
        Self { db, tx }
    }

    /// Stores `events` (with the requests waiting alongside); the counts are this request's own.
    pub async fn ingest(&self, events: Vec<Event>) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.send(Job { events, reply }).await {
            Ok(()) => {}
            // The writers are gone (the runtime is shutting down): store it here.
            Err(mpsc::error::SendError(job)) => return store::ingest(&self.db, &job.events).await,
        }
        match answer.await {
            Ok(r) => r,
            // A writer dropped the job without answering: only when the runtime is shutting down.
            Err(_) => Err(StoreError::Sqlx(sqlx::Error::WorkerCrashed)),
        }
    }
}

async fn writer(db: Db, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut events = first.events.len();
            jobs.push(first);
            while events < MERGE_EVENTS {
                match rx.try_recv() {
                    Ok(job) => {
                        events += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("aggregator_requests_per_statement").record(jobs.len() as f64);
        let batches: Vec<&[Event]> = jobs.iter().map(|j| j.events.as_slice()).collect();
        match store::ingest_many(&db, &batches).await {
            Ok(results) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(r));
                }
            }
            Err(e) if jobs.len() == 1 => {
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, requests = jobs.len(), "merged ingest failed; retrying its requests one by one");
                for job in jobs {
                    let r = store::ingest(&db, &job.events).await;
                    let _ = job.reply.send(r);
                }
            }
        }
    }
}
