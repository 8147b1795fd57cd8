//! The event logger: `mahasiswa_events` → `event_logs`, exactly once per event.
//!
//! Each batch is one multi-row `INSERT … ON CONFLICT (event_id) DO NOTHING` in one transaction;
//! the runner stores the offsets only after it committed. A redelivered event (restart,
//! rebalance, a second replica) hits the unique `event_id` and is skipped, so any number of
//! replicas and restarts leave exactly one row per event.

use chrono::{DateTime, Utc};
use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Record};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};
use kafkube_store::{Db, StoreError};
use serde::Deserialize;

use crate::StudentsArgs;

/// An event: its envelope goes into columns of its own, its `data` (the student's row) into
/// `payload`, as seed 000's logger stores it (its scripts query `payload->>'nim'`).
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "eventId")]
    event_id: String,
    #[serde(rename = "eventType")]
    event_type: String,
    timestamp_api_sent: i64,
    data: Option<Box<serde_json::value::RawValue>>,
}

/// One `event_logs` row.
#[derive(Debug)]
struct LogRow {
    event_id: String,
    event_type: String,
    payload: String,
    api_sent: DateTime<Utc>,
    kafka_received: DateTime<Utc>,
    partition: i32,
    offset: i64,
}

fn parse(r: &Record) -> Result<LogRow, String> {
    let env: Envelope = r.json()?;
    if env.event_id.trim().is_empty() {
        return Err("eventId is empty".into());
    }
    let api_sent = kafkube_core::time::from_epoch_ms(env.timestamp_api_sent)
        .ok_or_else(|| format!("timestamp_api_sent {} is out of range", env.timestamp_api_sent))?;
    Ok(LogRow {
        event_id: env.event_id,
        event_type: env.event_type,
        payload: env.data.map_or_else(|| "null".to_owned(), |d| d.get().to_owned()),
        api_sent,
        kafka_received: r.received_at,
        partition: r.partition,
        offset: r.offset,
    })
}

/// Writes batches of events to `event_logs`.
pub struct EventLogHandler {
    db: Db,
    instance: String,
}

impl EventLogHandler {
    pub fn new(db: Db, instance: impl Into<String>) -> Self {
        Self {
            db,
            instance: instance.into(),
        }
    }
}

impl Handler for EventLogHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match parse(r) {
                Ok(row) => rows.push(row),
                Err(why) => out.reject(i, why),
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let processed = Utc::now();
        insert(&self.db, &rows, processed, &self.instance).await?;
        for row in &rows {
            let latency = (processed - row.api_sent).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            metrics::histogram!("end_to_end_latency_seconds").record(latency);
        }
        metrics::counter!("event_logger_events_total").increment(rows.len() as u64);
        Ok(out)
    }
}

/// One statement per batch: `UNNEST` arrays on PostgreSQL, a multi-row `VALUES` on SQLite.
async fn insert(db: &Db, rows: &[LogRow], processed: DateTime<Utc>, consumer: &str) -> Result<u64, StoreError> {
    let inserted = match db {
        Db::Postgres(pool) => {
            let col = |f: fn(&LogRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO event_logs (event_id, event_type, payload, timestamp_api_sent, \
                 timestamp_kafka_received, timestamp_processed, kafka_partition, kafka_offset, consumer) \
                 SELECT e, t, p::jsonb, a, k, $6, pa, o, $9 \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], \
                             $7::int[], $8::bigint[]) AS u(e, t, p, a, k, pa, o) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(col(|r| r.event_id.clone()))
            .bind(col(|r| r.event_type.clone()))
            .bind(col(|r| r.payload.clone()))
            .bind(rows.iter().map(|r| r.api_sent).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.kafka_received).collect::<Vec<_>>())
            .bind(processed)
            .bind(rows.iter().map(|r| r.partition).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.offset).collect::<Vec<_>>())
            .bind(consumer)
            .execute(pool)
            .await?
            .rows_affected()
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            let mut n = 0;
            // 9 parameters a row; SQLite allows 32766 per statement.
            for chunk in rows.chunks(3000) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO event_logs (event_id, event_type, payload, timestamp_api_sent, \
                     timestamp_kafka_received, timestamp_processed, kafka_partition, kafka_offset, consumer) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(&r.event_id)
                        .push_bind(&r.event_type)
                        .push_bind(&r.payload)
                        .push_bind(r.api_sent)
                        .push_bind(r.kafka_received)
                        .push_bind(processed)
                        .push_bind(r.partition)
                        .push_bind(r.offset)
                        .push_bind(consumer);
                });
                q.push(" ON CONFLICT (event_id) DO NOTHING");
                n += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            n
        }
    };
    Ok(inserted)
}

/// The event logger as a service.
pub struct EventLogger;

#[kafkube_runtime::async_trait]
impl Service<StudentsArgs> for EventLogger {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "event-logger",
            "Event logger: `mahasiswa_events` → `event_logs`. Run several in one group to scale out.",
        )
        .reads(&[
            "log-database-url",
            "students-topic",
            "students-partitions",
            "event-logger-group",
            "event-logger-batch",
            "event-logger-instance",
        ])
    }

    /// Connects to the log database (waiting for it), migrates, joins the group.
    async fn start(&self, args: &StudentsArgs, ctx: &Context) -> anyhow::Result<Running> {
        let db = ctx.open_db(&args.db.log.url, &[crate::log_migrations()]).await?;
        let mut settings = ConsumerSettings::new(&args.logger_group, &[&args.topic]).max_batch(args.logger_batch);
        if let Some(name) = &args.logger_instance {
            settings = settings.instance(name);
        }
        let handler = EventLogHandler::new(db.clone(), settings.instance.clone());
        let runner = ctx.consumer(settings, handler)?;
        Ok(Running::new(ctx.readiness().database("database", db))
            .summary(format!(
                "group {} on {} → {}",
                args.logger_group, args.topic, args.db.log.url
            ))
            .consumer(ctx.run_consumer(runner)))
    }
}

/// Events logged so far (tests, the latency command and the benchmark count with it).
pub async fn count(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) =
        kafkube_store::on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM event_logs").fetch_one(p).await)?;
    Ok(n)
}
