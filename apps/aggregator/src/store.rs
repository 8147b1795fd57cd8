//! The aggregator's SQL: one statement (PostgreSQL) or one local transaction (SQLite) per batch,
//! deduplicated by the unique `(topic, event_id)`, counters updated atomically with the insert.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use kafkube_store::{Db, GroupWrite, StoreError, on_db};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::types::Json;

use crate::model::{Event, StoredEvent};

/// Counter shards (rows of `agg_stats`); see the migration.
const SLOTS: i32 = 16;

/// What one ingest did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    pub accepted: i64,
    pub inserted: i64,
    pub duplicates: i64,
}

/// Stores the events that are new, drops the repeats, and counts both.
pub async fn ingest(db: &Db, events: &[Event]) -> Result<Ingested, StoreError> {
    Ok(ingest_many(db, &[events]).await?.pop().unwrap_or_default())
}

/// A `POST /publish` writer stops taking more requests once it holds this many events.
pub const MERGE_EVENTS: usize = 2000;

/// `POST /publish`'s group commit: the requests waiting at once share one [`ingest_many`], each
/// with its own counts.
#[derive(Debug)]
pub struct Publish;

impl GroupWrite for Publish {
    type Item = Vec<Event>;
    type Output = Ingested;

    async fn write(&self, db: &Db, items: &[Vec<Event>]) -> Result<Vec<Ingested>, StoreError> {
        let batches: Vec<&[Event]> = items.iter().map(Vec::as_slice).collect();
        ingest_many(db, &batches).await
    }

    fn weight(events: &Vec<Event>) -> usize {
        events.len()
    }
}

/// [`ingest`] for several requests in one statement (PostgreSQL) or transaction (SQLite), with
/// each request's own counts. An id that several of them carry is stored once and counted as
/// inserted for the first of them.
pub async fn ingest_many(db: &Db, batches: &[&[Event]]) -> Result<Vec<Ingested>, StoreError> {
    let accepted: i64 = batches.iter().map(|b| b.len() as i64).sum();
    if accepted == 0 {
        return Ok(vec![Ingested::default(); batches.len()]);
    }
    let now = Utc::now();
    // Every statement takes its unique-key locks in the same (topic, event_id) order, so
    // concurrent statements that share ids wait for each other instead of deadlocking.
    let mut events: Vec<&Event> = batches.iter().flat_map(|b| b.iter()).collect();
    events.sort_by(|a, b| (&a.topic, &a.event_id).cmp(&(&b.topic, &b.event_id)));
    let slot = fastrand::i32(0..SLOTS);
    let stored: Vec<(String, String)> = match db {
        Db::Postgres(pool) => {
            let col = |f: fn(&Event) -> &str| events.iter().map(|e| f(e)).collect::<Vec<&str>>();
            sqlx::query_as(
                "WITH ins AS ( \
                     INSERT INTO agg_events (topic, event_id, timestamp, source, payload, received_at) \
                     SELECT t, e, ts, s, p::jsonb, $6 \
                     FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) AS u(t, e, ts, s, p) \
                     ORDER BY t COLLATE \"C\", e COLLATE \"C\" \
                     ON CONFLICT (topic, event_id) DO NOTHING \
                     RETURNING topic, event_id), \
                 topics AS ( \
                     INSERT INTO agg_topics (topic) SELECT DISTINCT topic FROM ins ORDER BY topic ON CONFLICT DO NOTHING), \
                 counted AS (SELECT COUNT(*) AS n FROM ins), \
                 stats AS ( \
                     UPDATE agg_stats SET received = received + $7, \
                         unique_processed = unique_processed + (SELECT n FROM counted), \
                         duplicate_dropped = duplicate_dropped + $7 - (SELECT n FROM counted) \
                     WHERE slot = $8) \
                 SELECT topic, event_id FROM ins",
            )
            .bind(col(|e| &e.topic))
            .bind(col(|e| &e.event_id))
            .bind(events.iter().map(|e| e.timestamp).collect::<Vec<_>>())
            .bind(col(|e| &e.source))
            .bind(col(|e| e.payload.get()))
            .bind(now)
            .bind(accepted)
            .bind(slot)
            .fetch_all(pool)
            .await?
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let mut stored = Vec::new();
            // 6 parameters a row; SQLite allows 32766 per statement.
            for chunk in events.chunks(5000) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO agg_events (topic, event_id, timestamp, source, payload, received_at) ",
                );
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(&e.topic)
                        .push_bind(&e.event_id)
                        .push_bind(e.timestamp)
                        .push_bind(&e.source)
                        .push_bind(e.payload.get())
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (topic, event_id) DO NOTHING RETURNING topic, event_id");
                stored.extend(q.build_query_as::<(String, String)>().fetch_all(&mut *tx).await?);
            }
            let mut topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
            topics.sort_unstable();
            topics.dedup();
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO agg_topics (topic) ");
            q.push_values(&topics, |mut b, t| {
                b.push_bind(*t);
            });
            q.push(" ON CONFLICT DO NOTHING");
            q.build().execute(&mut *tx).await?;
            let inserted = stored.len() as i64;
            sqlx::query(
                "UPDATE agg_stats SET received = received + $1, unique_processed = unique_processed + $2, \
                 duplicate_dropped = duplicate_dropped + $3 WHERE slot = $4",
            )
            .bind(accepted)
            .bind(inserted)
            .bind(accepted - inserted)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            stored
        }
    };
    let inserted = stored.len() as i64;
    metrics::counter!("aggregator_events_received_total").increment(accepted as u64);
    metrics::counter!("aggregator_events_duplicate_total").increment((accepted - inserted) as u64);
    // Each stored key counts once, for the first request that carried it.
    let mut unclaimed: HashSet<(&str, &str)> = stored.iter().map(|(t, e)| (t.as_str(), e.as_str())).collect();
    Ok(batches
        .iter()
        .map(|batch| {
            let inserted = batch
                .iter()
                .filter(|e| unclaimed.remove(&(e.topic.as_str(), e.event_id.as_str())))
                .count() as i64;
            Ingested {
                accepted: batch.len() as i64,
                inserted,
                duplicates: batch.len() as i64 - inserted,
            }
        })
        .collect())
}

type Row = (
    String,
    String,
    DateTime<Utc>,
    String,
    Json<Box<RawValue>>,
    DateTime<Utc>,
);

/// Newest first; all topics when `topic` is `None`.
pub async fn events(db: &Db, topic: Option<&str>, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<Row> = match topic {
        Some(t) => {
            let sql = "SELECT topic, event_id, timestamp, source, payload, received_at FROM agg_events \
                       WHERE topic = $1 ORDER BY id DESC LIMIT $2";
            on_db!(db, p => sqlx::query_as(sql).bind(t).bind(limit).fetch_all(p).await)?
        }
        None => {
            let sql = "SELECT topic, event_id, timestamp, source, payload, received_at FROM agg_events \
                       ORDER BY id DESC LIMIT $1";
            on_db!(db, p => sqlx::query_as(sql).bind(limit).fetch_all(p).await)?
        }
    };
    Ok(rows
        .into_iter()
        .map(
            |(topic, event_id, timestamp, source, Json(payload), received_at)| StoredEvent {
                event: Event {
                    topic,
                    event_id,
                    timestamp,
                    source,
                    payload,
                },
                received_at,
            },
        )
        .collect())
}

/// The counters and the topics seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub received: i64,
    pub unique_processed: i64,
    pub duplicate_dropped: i64,
    pub topics: Vec<String>,
}

pub async fn counters(db: &Db) -> Result<Counters, StoreError> {
    let sql = "SELECT CAST(COALESCE(SUM(received), 0) AS BIGINT), CAST(COALESCE(SUM(unique_processed), 0) AS BIGINT), \
               CAST(COALESCE(SUM(duplicate_dropped), 0) AS BIGINT) FROM agg_stats";
    let (received, unique_processed, duplicate_dropped): (i64, i64, i64) =
        on_db!(db, p => sqlx::query_as(sql).fetch_one(p).await)?;
    let topics: Vec<(String,)> =
        on_db!(db, p => sqlx::query_as("SELECT topic FROM agg_topics ORDER BY topic").fetch_all(p).await)?;
    Ok(Counters {
        received,
        unique_processed,
        duplicate_dropped,
        topics: topics.into_iter().map(|(t,)| t).collect(),
    })
}
