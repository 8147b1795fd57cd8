//! The transactional outbox: "write to the database and publish" without losing either half.
//!
//! An app writes its business rows and, in the same transaction, the event ([`enqueue`]). After
//! the commit, the [`Relay`] publishes outbox rows in id order through the idempotent producer
//! and deletes them once the broker acknowledged them. So a failed transaction publishes nothing,
//! and a committed one is published even if the broker is down at the time (the relay keeps
//! retrying) or the process dies (the next relay picks the rows up).
//!
//! The relay wakes at once: in-process through [`Notifier`], across processes on PostgreSQL
//! through `LISTEN/NOTIFY`; a slow poll is only the safety net. On PostgreSQL, concurrent relays
//! (API replicas) take turns through an advisory lock, so rows are never published out of order
//! by two relays racing.
//!
//! Metrics: `kafkube_outbox_published_total`, `kafkube_outbox_batch_seconds`, and the gauge
//! `kafkube_outbox_pending`: 0 after each pass that emptied the outbox, the rows waiting while
//! the relay cannot publish (the broker is down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkube_bus::{HeaderMap, Outgoing, Producer};
use kafkube_core::{Backoff, Shutdown};
use kafkube_store::{Db, Migrations, StoreError, Tx, on_db, on_tx, sqlx};
use tokio::sync::Notify;

/// The channel relays LISTEN on.
const CHANNEL: &str = "kafkube_outbox";
/// Advisory lock key that serializes relays on one PostgreSQL database.
const RELAY_LOCK: i64 = 0x006b_6166_6b75_6265;

/// Migrations for the outbox table (versions 1–99 are the outbox's).
pub fn migrations() -> Migrations {
    Migrations {
        name: "outbox",
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}

/// Writes `msg` to the outbox inside `tx`. It is published after `tx` commits, never before and
/// never if it rolls back.
pub async fn enqueue(tx: &mut Tx, msg: &Outgoing) -> Result<(), StoreError> {
    enqueue_many(tx, std::slice::from_ref(msg)).await
}

/// Rows per INSERT statement in [`enqueue_many`] (4 parameters a row; SQLite takes 32,766).
const ROWS_PER_STATEMENT: usize = 1000;

/// [`enqueue`] for several messages (a group commit's orders): multi-row INSERTs, published in
/// the order given.
pub async fn enqueue_many(tx: &mut Tx, msgs: &[Outgoing]) -> Result<(), StoreError> {
    if msgs.is_empty() {
        return Ok(());
    }
    let headers: Vec<String> = msgs.iter().map(|m| encode_headers(&m.headers)).collect();
    let rows: Vec<(&Outgoing, &String)> = msgs.iter().zip(&headers).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        on_tx!(&mut *tx, conn => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO kafkube_outbox (topic, msg_key, payload, headers) ");
            q.push_values(chunk, |mut b, (msg, headers)| {
                b.push_bind(&msg.topic)
                    .push_bind(msg.key.as_deref())
                    .push_bind(msg.payload.as_slice())
                    .push_bind(*headers);
            });
            q.build().execute(&mut *conn).await?;
        });
    }
    if let Tx::Postgres(t) = tx {
        // Delivered at commit, to relays in other processes.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

fn encode_headers(h: &HeaderMap) -> String {
    let pairs: Vec<(&str, String)> = h
        .iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn decode_headers(s: &str) -> HeaderMap {
    let pairs: Vec<(String, String)> = serde_json::from_str(s).unwrap_or_default();
    HeaderMap(pairs.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
}

/// Wakes the relay of this process right after a commit.
#[derive(Clone, Debug, Default)]
pub struct Notifier(Arc<Notify>);

impl Notifier {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Publishes committed outbox rows.
pub struct Relay {
    db: Db,
    producer: Producer,
    notifier: Notifier,
    batch_size: i64,
    poll_interval: Duration,
}

type Row = (i64, String, Option<Vec<u8>>, Vec<u8>, String);

impl Relay {
    pub fn new(db: Db, producer: Producer) -> Self {
        Self {
            db,
            producer,
            notifier: Notifier::default(),
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
        }
    }

    /// The handle to call after each commit that enqueued something.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Rows not yet published.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        pending(&self.db).await
    }

    /// Runs the relay for as long as `intake` (an HTTP server) runs, then lets it make its last
    /// pass, so the events of the requests the server finished are published too. Returns what
    /// `intake` returned.
    pub async fn alongside<T>(self, intake: impl Future<Output = T>) -> T {
        let stop = Shutdown::new();
        let (out, ()) = tokio::join!(
            async {
                let out = intake.await;
                stop.trigger();
                out
            },
            self.run(stop.clone())
        );
        out
    }

    /// Publishes until `shutdown` trips, then makes a last pass so that whatever was committed
    /// before intake stopped is published too (unless the broker is unreachable: then the rows
    /// stay in the outbox for the next start).
    pub async fn run(self, shutdown: Shutdown) {
        self.spawn_listener(&shutdown);
        let mut backoff = Backoff::outage();
        loop {
            match self.publish_pending().await {
                Ok(()) => {
                    backoff.reset();
                    metrics::gauge!("kafkube_outbox_pending").set(0.0);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: publishing failed; retrying");
                    // The backlog an outage leaves (counted only then: a COUNT is a scan).
                    if let Ok(n) = self.pending().await {
                        metrics::gauge!("kafkube_outbox_pending").set(n as f64);
                    }
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.notifier.0.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.publish_pending()).await {
            Ok(Ok(())) => tracing::info!("outbox relay stopped; outbox empty"),
            Ok(Err(e)) => tracing::warn!(error = %e, "outbox relay stopped; rows left for the next start"),
            Err(_) => tracing::warn!("outbox relay stopped on timeout; rows left for the next start"),
        }
    }

    /// Relays batches until the outbox is empty.
    async fn publish_pending(&self) -> Result<(), RelayError> {
        while self.publish_batch().await? == self.batch_size as usize {}
        Ok(())
    }

    /// Publishes one batch in id order; deletes the rows the broker acknowledged.
    ///
    /// PostgreSQL: inside a transaction holding the relay lock, so replicas take turns.
    /// SQLite (one process): without a transaction, so the write lock is taken only for the
    /// delete; a read snapshot held across the publish could not be upgraded to a write once
    /// the API had committed meanwhile, and the retry would publish the rows twice.
    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let started = Instant::now();
        let select = "SELECT id, topic, msg_key, payload, headers FROM kafkube_outbox ORDER BY id LIMIT $1";
        let (n, outcome) = match &self.db {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let (mine,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(RELAY_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !mine {
                    return Ok(0); // another relay is publishing; its NOTIFY-driven pass covers these
                }
                let rows: Vec<Row> = sqlx::query_as(select).bind(self.batch_size).fetch_all(&mut *tx).await?;
                let outcome = self.send(&rows).await;
                if !outcome.delivered.is_empty() {
                    sqlx::query("DELETE FROM kafkube_outbox WHERE id = ANY($1)")
                        .bind(&outcome.delivered)
                        .execute(&mut *tx)
                        .await?;
                    // The commit does not wait for the disk: a delete lost with the server
                    // (never with this process) publishes its rows once more, as a crash between
                    // publishing and deleting does, and consumers absorb repeats. An fsync on a
                    // slow disk would hold up the next pass, and with it the rows behind.
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                (rows.len(), outcome)
            }
            Db::Sqlite(pool) => {
                let rows: Vec<Row> = sqlx::query_as(select).bind(self.batch_size).fetch_all(pool).await?;
                let outcome = self.send(&rows).await;
                if !outcome.delivered.is_empty() {
                    let list = serde_json::to_string(&outcome.delivered).unwrap_or_else(|_| "[]".into());
                    sqlx::query("DELETE FROM kafkube_outbox WHERE id IN (SELECT value FROM json_each($1))")
                        .bind(list)
                        .execute(pool)
                        .await?;
                }
                (rows.len(), outcome)
            }
        };
        if n > 0 {
            metrics::counter!("kafkube_outbox_published_total").increment(outcome.delivered.len() as u64);
            metrics::histogram!("kafkube_outbox_batch_seconds").record(started.elapsed().as_secs_f64());
        }
        match outcome.error {
            Some(e) => Err(RelayError::Bus(e)),
            None => Ok(n),
        }
    }

    /// Publishes rows in order; reports which ids the broker acknowledged and the first error.
    async fn send(&self, rows: &[Row]) -> SendOutcome {
        let msgs: Vec<Outgoing> = rows
            .iter()
            .map(|(_, topic, key, payload, headers)| Outgoing {
                topic: topic.clone(),
                key: key.clone(),
                payload: payload.clone(),
                headers: decode_headers(headers),
                partition: None,
            })
            .collect();
        let mut outcome = SendOutcome::default();
        for (row, result) in rows.iter().zip(self.producer.send_all(&msgs).await) {
            match result {
                Ok(_) => outcome.delivered.push(row.0),
                Err(e) => {
                    outcome.error.get_or_insert(e);
                }
            }
        }
        outcome
    }

    /// On PostgreSQL, wakes this relay on every NOTIFY from any process.
    fn spawn_listener(&self, shutdown: &Shutdown) {
        let Db::Postgres(pool) = &self.db else { return };
        let pool = pool.clone();
        let notifier = self.notifier.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::outage();
            loop {
                let listened = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(CHANNEL).await?;
                    backoff.reset();
                    loop {
                        l.recv().await?;
                        notifier.notify();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = listened => if let Err(e) = r {
                        tracing::debug!(error = %e, "outbox listener lost its connection; polling meanwhile");
                    },
                }
                if !backoff.wait(&shutdown).await {
                    return;
                }
            }
        });
    }
}

/// Rows not yet published.
pub async fn pending(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM kafkube_outbox").fetch_one(p).await)?;
    Ok(n)
}

#[derive(Default)]
struct SendOutcome {
    delivered: Vec<i64>,
    error: Option<kafkube_bus::BusError>,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] kafkube_bus::BusError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = HeaderMap::new()
            .with("event-type", "X")
            .with("traceparent", "00-a-b-01");
        assert_eq!(decode_headers(&encode_headers(&h)), h);
        assert_eq!(decode_headers("garbage"), HeaderMap::default());
    }
}
