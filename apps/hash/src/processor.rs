//! The hash processor: consumer group `service_2` on `hash_requests`, one reply per request.
//!
//! An ordinary [`Handler`]: it returns the replies, and the consumer runner publishes them before
//! it stores the requests' offsets, so a crash between the two re-hashes a request rather than
//! losing its reply. Requests whose gateway has stopped waiting are skipped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Record, rpc};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};

use crate::HashArgs;
use crate::model::{HashReply, HashRequest, sha256_hex};

/// Hashes requests. `hashed` counts the hashes computed by this instance.
#[derive(Default)]
pub struct HashHandler {
    hashed: Arc<AtomicU64>,
}

impl HashHandler {
    pub fn hashed(&self) -> Arc<AtomicU64> {
        self.hashed.clone()
    }
}

impl Handler for HashHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        for (i, r) in batch.iter().enumerate() {
            if rpc::expired(r) {
                metrics::counter!("hash_requests_total", "outcome" => "expired").increment(1);
                continue;
            }
            let reply = match r.json::<HashRequest<'static>>() {
                Ok(req) => {
                    let hash = sha256_hex(req.data.as_bytes());
                    self.hashed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("hash_requests_total", "outcome" => "hashed").increment(1);
                    let body = serde_json::to_vec(&HashReply {
                        id: req.id.into_owned(),
                        hash,
                    })
                    .map_err(|e| HandlerError::permanent(e.to_string()))?;
                    rpc::reply(r, body)
                }
                Err(why) => {
                    metrics::counter!("hash_requests_total", "outcome" => "invalid").increment(1);
                    rpc::error_reply(r, &format!("invalid hash request: {why}"))
                }
            };
            match reply {
                Ok(reply) => out.produce.push(reply),
                // Nobody to answer: keep it in the dead-letter topic.
                Err(why) => out.reject(i, why),
            }
        }
        Ok(out)
    }
}

/// The processor as a service. It provides its `hashed` counter (`Arc<AtomicU64>`).
pub struct HashProcessor;

#[kafkube_runtime::async_trait]
impl Service<HashArgs> for HashProcessor {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "hash-processor",
            "Hash processor: group `service_2` on `hash_requests`, one reply per \
             request. Run several to scale out.",
        )
        .reads(&[
            "hash-request-topic",
            "hash-response-topic",
            "hash-processor-group",
            "hash-batch",
            "hash-partitions",
        ])
    }

    async fn start(&self, args: &HashArgs, ctx: &Context) -> anyhow::Result<Running> {
        let handler = HashHandler::default();
        let hashed = handler.hashed();
        let settings =
            ConsumerSettings::new(&args.processor_group, &[args.request_topic.as_str()]).max_batch(args.batch);
        let runner = ctx.consumer(settings, handler)?;
        Ok(Running::new(ctx.readiness())
            .summary(format!(
                "group {} on {} → {}",
                args.processor_group, args.request_topic, args.response_topic
            ))
            .consumer(ctx.run_consumer(runner))
            .provide(hashed))
    }
}
