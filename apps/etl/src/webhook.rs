//! The webhook sink (`etl-webhook`, what the seed uses n8n for): consumer group `etl-webhook` on
//! the sink's topic → HTTP POSTs to `WEBHOOK_URL`.
//!
//! Each record's JSON goes out as it is on the topic: one object per POST, or arrays of up to
//! `WEBHOOK_BATCH` records. Every POST carries an `Idempotency-Key` that is the same whenever the
//! same records are sent again (a retry, a redelivery after a restart): for one enriched order
//! `<id>:<version>` (a change of it, wherever it was read from), otherwise the record's
//! topic/partition/offset; for an array a UUIDv5 of its records' keys. A receiver that remembers
//! the keys it has seen gets every change once.
//!
//! Delivery: a 2xx is done. A timeout, a refused connection, 408, 429 or a 5xx is retried with
//! backoff for as long as it takes (the rest of the batch waits; offsets are stored only after
//! every POST of the batch succeeded or was rejected). Any other answer (a 4xx: the receiver
//! refuses the record itself) sends the record(s) to `<topic>.dlq` with the status and the start
//! of the answer, and the stream goes on. A record that is not JSON is dead-lettered unsent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Record};
use kafkube_core::{Backoff, Shutdown};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};
use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;

use crate::EtlArgs;

/// The idempotency header's name (as in the IETF draft and Stripe's API).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// POSTs batches of records to the webhook. `delivered` counts records the receiver accepted.
pub struct WebhookHandler {
    client: reqwest::Client,
    url: reqwest::Url,
    authorization: Option<SecretString>,
    per_post: usize,
    concurrency: usize,
    stop: Shutdown,
    delivered: Arc<AtomicU64>,
}

/// What became of one POST.
enum Outcome {
    Delivered,
    /// The receiver refused the records: they go to the dead-letter topic with this reason.
    Refused(String),
    /// Worth trying again: the reason, for the log.
    Retry(String),
}

impl WebhookHandler {
    pub fn new(args: &crate::config::WebhookArgs, url: reqwest::Url, stop: Shutdown) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(args.timeout_ms.max(1)))
            .user_agent(concat!("kafkube/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url,
            authorization: args.authorization.clone(),
            per_post: args.batch.max(1) as usize,
            concurrency: args.concurrency.max(1) as usize,
            stop,
            delivered: Arc::default(),
        })
    }

    pub fn delivered(&self) -> Arc<AtomicU64> {
        self.delivered.clone()
    }

    async fn post(&self, body: String, key: &str, records: usize) -> Outcome {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_KEY, key)
            .header("Kafkube-Records", records)
            .body(body);
        if let Some(a) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a.expose_secret());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Outcome::Retry("timed out".into()),
            Err(e) => return Outcome::Retry(describe(&e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let why = format!("webhook answered {status}: {}", text.trim());
        if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Outcome::Retry(why)
        } else {
            Outcome::Refused(why)
        }
    }

    /// Sends one POST until it is delivered or refused; `None` when stopped first.
    async fn deliver(&self, body: String, key: String, records: usize) -> Option<Outcome> {
        let mut backoff = Backoff::outage();
        let mut attempts = 0u32;
        loop {
            match self.post(body.clone(), &key, records).await {
                Outcome::Retry(why) => {
                    attempts += 1;
                    metrics::counter!("etl_webhook_posts_total", "outcome" => "retried").increment(1);
                    if attempts == 1 || attempts.is_power_of_two() {
                        tracing::warn!(webhook = %origin(&self.url), error = %why, attempts, "webhook POST failed; retrying");
                    }
                    if !backoff.wait(&self.stop).await {
                        return None;
                    }
                }
                done => return Some(done),
            }
        }
    }
}

impl Handler for WebhookHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut items: Vec<(usize, &RawValue, String)> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match serde_json::from_slice::<&RawValue>(r.payload()) {
                Ok(json) => items.push((i, json, record_key(r, json))),
                Err(e) => out.reject(i, format!("not JSON, not sent to the webhook: {e}")),
            }
        }
        let posts: Vec<(Vec<usize>, String, String)> = items
            .chunks(self.per_post)
            .map(|chunk| {
                let indices = chunk.iter().map(|(i, ..)| *i).collect();
                if self.per_post == 1 {
                    let (_, json, key) = &chunk[0];
                    (indices, json.get().to_owned(), key.clone())
                } else {
                    let jsons: Vec<&str> = chunk.iter().map(|(_, j, _)| j.get()).collect();
                    let keys: Vec<&str> = chunk.iter().map(|(.., k)| k.as_str()).collect();
                    let key = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, keys.join("\n").as_bytes());
                    (indices, format!("[{}]", jsons.join(",")), key.to_string())
                }
            })
            .collect();
        let outcomes: Vec<(Vec<usize>, Option<Outcome>)> = futures::stream::iter(posts)
            .map(|(indices, body, key)| async move {
                let n = indices.len();
                (indices, self.deliver(body, key, n).await)
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        for (indices, outcome) in outcomes {
            match outcome {
                None => return Err(HandlerError::transient("stopped while the webhook was failing")),
                Some(Outcome::Delivered) => {
                    metrics::counter!("etl_webhook_posts_total", "outcome" => "delivered").increment(1);
                    self.delivered.fetch_add(indices.len() as u64, Ordering::Relaxed);
                }
                Some(Outcome::Refused(why)) | Some(Outcome::Retry(why)) => {
                    metrics::counter!("etl_webhook_posts_total", "outcome" => "refused").increment(1);
                    for i in indices {
                        out.reject(i, why.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `<id>:<version>` of an enriched order, else the record's place in the log.
fn record_key(r: &Record, json: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Change {
        id: Option<serde_json::Value>,
        version: Option<i64>,
    }
    match serde_json::from_str::<Change>(json.get()) {
        Ok(Change {
            id: Some(id),
            version: Some(v),
        }) if !id.is_null() => {
            let id = id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string());
            format!("{id}:{v}")
        }
        _ => format!("{}-{}-{}", r.topic, r.partition, r.offset),
    }
}

/// The URL without its path and query (an n8n webhook's path is its secret).
fn origin(url: &reqwest::Url) -> String {
    format!("{}/…", url.origin().ascii_serialization())
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s = format!("{s}: {cause}");
        src = cause.source();
    }
    s
}

/// The webhook sink as a service; off unless `WEBHOOK_URL` is set. Provides its `delivered`
/// counter (`Arc<AtomicU64>`).
pub struct WebhookService;

#[kafkube_runtime::async_trait]
impl Service<EtlArgs> for WebhookService {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "etl-webhook",
            "ETL webhook sink: group `etl-webhook`, enriched orders → POSTs to \
             WEBHOOK_URL (e.g. n8n), retried until delivered, refused ones dead-lettered.",
        )
        .reads(&[
            "etl-target-topic",
            "etl-sink-topic",
            "etl-batch",
            "etl-partitions",
            "webhook-url",
            "webhook-batch",
            "webhook-concurrency",
            "webhook-timeout-ms",
            "webhook-group",
            "webhook-topic",
            "webhook-authorization",
        ])
    }

    async fn start(&self, args: &EtlArgs, ctx: &Context) -> anyhow::Result<Running> {
        let Some(url) = args.webhook.url.clone() else {
            tracing::info!("etl-webhook is off: set WEBHOOK_URL to POST enriched orders to a webhook");
            return Ok(
                Running::new(ctx.readiness()).summary("off (set WEBHOOK_URL to POST enriched orders to a webhook)")
            );
        };
        let topic = args.webhook.topic.clone().unwrap_or_else(|| args.sink_topic());
        let handler = WebhookHandler::new(&args.webhook, url.clone(), ctx.stops.hard.clone())?;
        let delivered = handler.delivered();
        let settings = ConsumerSettings::new(&args.webhook.group, &[&topic]).max_batch(args.batch);
        let runner = ctx.consumer(settings, handler)?;
        let per_post = match args.webhook.batch {
            1 => "one record per POST".to_owned(),
            n => format!("up to {n} records per POST"),
        };
        Ok(Running::new(ctx.readiness())
            .summary(format!(
                "group {} on {topic} → POST {} ({per_post})",
                args.webhook.group,
                origin(&url)
            ))
            .provide(delivered)
            .consumer(ctx.run_consumer(runner)))
    }
}
