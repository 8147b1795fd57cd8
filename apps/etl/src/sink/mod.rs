//! The sink: consumer group `sink-mysql-workers` on `enriched_orders` → the `orders` table.
//!
//! Each batch is reduced to the last change of each order (one order's changes share a key, so
//! they arrive in order), then applied in one transaction ([`db::SinkDb::apply`]); the runner
//! stores the offsets only after it committed. A database outage is a transient error: the batch
//! is retried with backoff, nothing committed, nothing dead-lettered. A record that is not an
//! enriched order goes to `<topic>.dlq` with the reason.

pub mod db;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Record};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};

use self::db::SinkDb;
use crate::EtlArgs;
use crate::order::{Enriched, Op, parse_enriched};

/// Writes batches of enriched orders to the sink table. `applied` counts the changes applied.
pub struct SinkHandler {
    db: SinkDb,
    table: String,
    applied: Arc<AtomicU64>,
}

impl SinkHandler {
    pub fn new(db: SinkDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
            applied: Arc::default(),
        }
    }

    pub fn applied(&self) -> Arc<AtomicU64> {
        self.applied.clone()
    }
}

impl Handler for SinkHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut last: HashMap<String, Enriched> = HashMap::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match parse_enriched(r.payload(), r.timestamp_ms) {
                Ok(order) => {
                    // A later change of the same order in this batch wins, unless it is older.
                    match last.get(&order.id) {
                        Some(prev) if prev.version > order.version => {}
                        _ => {
                            last.insert(order.id.clone(), order);
                        }
                    }
                }
                Err(why) => out.reject(i, why),
            }
        }
        if last.is_empty() {
            return Ok(out);
        }
        let (deletes, upserts): (Vec<&Enriched>, Vec<&Enriched>) = last.values().partition(|o| o.op == Op::Delete);
        let deletes: Vec<&str> = deletes.iter().map(|o| o.id.as_str()).collect();
        self.db.apply(&self.table, &upserts, &deletes).await?;
        self.applied.fetch_add(last.len() as u64, Ordering::Relaxed);
        metrics::counter!("etl_sink_rows_total", "op" => "upsert").increment(upserts.len() as u64);
        metrics::counter!("etl_sink_rows_total", "op" => "delete").increment(deletes.len() as u64);
        Ok(out)
    }
}

/// The sink as a service. It provides its `applied` counter (`Arc<AtomicU64>`) and its
/// [`SinkDb`].
pub struct Sink;

#[kafkube_runtime::async_trait]
impl Service<EtlArgs> for Sink {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "etl-sink",
            "ETL sink: group `sink-mysql-workers`, `enriched_orders` → table `orders` \
             (MySQL/MariaDB, PostgreSQL or SQLite). Run several to scale out.",
        )
        .reads(&[
            "etl-target-topic",
            "etl-sink-topic",
            "etl-sink-group",
            "etl-batch",
            "etl-partitions",
            "sink-database-url",
            "mysql-host",
            "mysql-port",
            "mysql-user",
            "mysql-password",
            "mysql-database",
            "mysql-table",
        ])
    }

    /// Connects to the sink database (waiting for it), creates the table, joins the group.
    async fn start(&self, args: &EtlArgs, ctx: &Context) -> anyhow::Result<Running> {
        let url = args.sink.url();
        let db = SinkDb::connect(&url, &ctx.db, &ctx.stops.intake)
            .await
            .map_err(|e| anyhow::anyhow!("sink database {url}: {e}"))?;
        db.ensure_table(&args.sink.table)
            .await
            .map_err(|e| anyhow::anyhow!("sink database {url}: cannot create table {}: {e}", args.sink.table))?;
        let topic = args.sink_topic();
        let handler = SinkHandler::new(db.clone(), &args.sink.table);
        let applied = handler.applied();
        let settings = ConsumerSettings::new(&args.sink_group, &[&topic]).max_batch(args.batch);
        let runner = ctx.consumer(settings, handler)?;
        let ping = db.clone();
        let readiness = ctx.readiness().check("database", move || {
            let db = ping.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        });
        Ok(Running::new(readiness)
            .summary(format!(
                "group {} on {topic} → {url} table {}",
                args.sink_group, args.sink.table
            ))
            .provide(applied)
            .provide(db)
            .consumer(ctx.run_consumer(runner)))
    }
}
