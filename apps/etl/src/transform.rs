//! The transform: consumer group `etl-workers` on `raw_orders` (and any CDC topics configured) →
//! `enriched_orders`, keyed by the order's id so one order's changes stay in order.
//!
//! An ordinary [`Handler`]: it returns the enriched records and the runner publishes them before
//! it stores the input's offsets, so a crash re-enriches a record rather than losing it; a
//! redelivered order gets the same id and version, and the sink's upsert absorbs it. A record the
//! schema guard refuses goes to `<topic>.dlq` with the reason, and the stream goes on.

use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Outgoing, Record};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};

use crate::EtlArgs;
use crate::order::{Origin, POSITION_HEADER, transform};

/// Enriches batches of orders into `target`.
pub struct TransformHandler {
    target: String,
}

impl TransformHandler {
    pub fn new(target: impl Into<String>) -> Self {
        Self { target: target.into() }
    }
}

impl Handler for TransformHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let sync_at = chrono::Utc::now().timestamp();
        for (i, r) in batch.iter().enumerate() {
            let origin = Origin {
                topic: &r.topic,
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                position: r.headers.get_str(POSITION_HEADER),
            };
            match transform(r.payload(), &origin, sync_at) {
                Ok((id, payload)) => {
                    let mut record = Outgoing::new(self.target.clone(), Some(id), payload);
                    if let Some(c) = r.headers.get(kafkube_bus::Header::CORRELATION_ID) {
                        record.headers.insert(kafkube_bus::Header::CORRELATION_ID, c.to_vec());
                    }
                    out.produce.push(record);
                }
                Err(why) => out.reject(i, why),
            }
        }
        metrics::counter!("etl_transform_records_total", "outcome" => "enriched").increment(out.produce.len() as u64);
        metrics::counter!("etl_transform_records_total", "outcome" => "rejected").increment(out.rejected.len() as u64);
        Ok(out)
    }
}

/// The transform as a service.
pub struct Transform;

#[kafkube_runtime::async_trait]
impl Service<EtlArgs> for Transform {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "etl-transform",
            "ETL transform: group `etl-workers`, `raw_orders` (plain orders or Maxwell \
             change records) → `enriched_orders`. Run several to scale out.",
        )
        .reads(&[
            "etl-source-topic",
            "etl-target-topic",
            "etl-group",
            "etl-batch",
            "etl-partitions",
        ])
    }

    async fn start(&self, args: &EtlArgs, ctx: &Context) -> anyhow::Result<Running> {
        let topics: Vec<&str> = args.source_topics.iter().map(String::as_str).collect();
        let settings = ConsumerSettings::new(&args.transform_group, &topics).max_batch(args.batch);
        let runner = ctx.consumer(settings, TransformHandler::new(&args.target_topic))?;
        Ok(Running::new(ctx.readiness())
            .summary(format!(
                "group {} on {} → {}",
                args.transform_group,
                args.source_topics.join(","),
                args.target_topic
            ))
            .consumer(ctx.run_consumer(runner)))
    }
}
