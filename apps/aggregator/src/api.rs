//! The aggregator's HTTP API (port 8080) and the service that runs it with the Kafka ingest.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kafkube_bus::ConsumerSettings;
use kafkube_http::{Json, JsonBytes, Query, RequestError, finish_router, ops_router};
use kafkube_runtime::{Context, Running, Service, ServiceInfo, base_url};
use kafkube_store::{Db, GroupCommit, GroupOptions};
use serde::Deserialize;
use serde_json::json;

use crate::AggregatorArgs;
use crate::consumer::IngestHandler;
use crate::model::parse_body_bytes;
use crate::store;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// `POST /publish` stores through this, so concurrent requests share statements.
    pub writer: GroupCommit<store::Publish>,
    pub started: Instant,
    pub max_events: usize,
}

impl AppState {
    pub fn new(db: Db, writers: usize, max_events: usize) -> Self {
        Self {
            writer: GroupCommit::start(
                db.clone(),
                store::Publish,
                GroupOptions {
                    writers,
                    max_weight: store::MERGE_EVENTS,
                    metric: "aggregator_requests_per_statement",
                },
            ),
            db,
            started: Instant::now(),
            max_events,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/publish", post(publish))
        .route("/events", get(events))
        .route("/stats", get(stats))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(crate::openapi::document()) }),
        )
        .with_state(state)
}

/// Ingest one event, an array of events, or `{"events": [...]}`.
#[utoipa::path(
    post,
    path = "/publish",
    request_body = crate::openapi::PublishBody,
    responses(
        (status = 200, description = "What was stored and what was a repeat", body = store::Ingested),
        (status = 400, description = "Invalid JSON, or a schema error naming the event and field", body = kafkube_http::ErrorBody),
        (status = 413, description = "The body is larger than the limit (32 MiB by default)", body = kafkube_http::ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = kafkube_http::ErrorBody),
        (status = 503, description = "The database is unreachable; a retry is safe (events are deduplicated by `(topic, event_id)`)", body = kafkube_http::ErrorBody),
    )
)]
async fn publish(State(s): State<AppState>, JsonBytes(body): JsonBytes) -> Result<Response, RequestError> {
    let events = parse_body_bytes(&body, s.max_events).map_err(|e| RequestError::bad_request(e.to_string()))?;
    let r = s.writer.submit(events).await?;
    Ok(Json(r).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only this topic (all topics when absent).
    topic: Option<String>,
    /// How many, most recently stored first: 1 to 5000, default 100.
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// Stored events, the most recently stored first: in the order the aggregator stored them (each
/// event's arrival), not by the event's own `timestamp`, so a late event with an old timestamp is
/// still at the top. An unknown topic gives `[]`.
#[utoipa::path(
    get,
    path = "/events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Stored events", body = [crate::openapi::StoredEventDoc]),
        (status = 400, description = "A bad `limit`, an unknown parameter or a NUL in `topic`", body = kafkube_http::ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = kafkube_http::ErrorBody),
    )
)]
async fn events(State(s): State<AppState>, Query(q): Query<EventsQuery>) -> Result<Response, RequestError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=5000).contains(&limit) {
        return Err(RequestError::bad_request("`limit` must be between 1 and 5000"));
    }
    let topic = q.topic.as_deref().filter(|t| !t.is_empty());
    Ok(Json(store::events(&s.db, topic, limit).await?).into_response())
}

/// `received == unique_processed + duplicate_dropped`, always.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub received: i64,
    pub unique_processed: i64,
    pub duplicate_dropped: i64,
    /// Every topic seen, sorted.
    pub topics: Vec<String>,
    /// Seconds since this process started.
    pub uptime: u64,
}

/// Counters since the database was created, and the topics seen.
#[utoipa::path(
    get,
    path = "/stats",
    responses(
        (status = 200, description = "Counters", body = Stats),
        (status = 503, description = "The database is unreachable; retry", body = kafkube_http::ErrorBody),
    )
)]
async fn stats(State(s): State<AppState>) -> Result<Response, RequestError> {
    let c = store::counters(&s.db).await?;
    Ok(Json(Stats {
        received: c.received,
        unique_processed: c.unique_processed,
        duplicate_dropped: c.duplicate_dropped,
        topics: c.topics,
        uptime: s.started.elapsed().as_secs(),
    })
    .into_response())
}

/// The aggregator as a service: HTTP ingest plus the Kafka ingest consumer.
pub struct AggregatorService;

#[kafkube_runtime::async_trait]
impl Service<AggregatorArgs> for AggregatorService {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::intake(
            "aggregator",
            "Log aggregator on port 8080: `POST /publish` and Kafka ingest, deduplicated.",
        )
        .reads(&[
            "aggregator-port",
            "aggregator-host",
            "aggregator-database-url",
            "aggregator-topics",
            "aggregator-group",
            "aggregator-batch",
            "aggregator-consumers",
            "aggregator-writers",
            "aggregator-max-events",
            "aggregator-max-body-mib",
        ])
    }

    async fn start(&self, args: &AggregatorArgs, ctx: &Context) -> anyhow::Result<Running> {
        let db = ctx.open_db(&args.database_url, &[crate::migrations()]).await?;
        let topics: Vec<&str> = args.kafka_topics.iter().map(String::as_str).collect();
        let handler = std::sync::Arc::new(IngestHandler::new(db.clone(), args.max_events));
        let mut consumers = Vec::new();
        for i in 0..args.consumers.max(1) {
            let mut settings = ConsumerSettings::new(&args.group, &topics).max_batch(args.batch);
            if i > 0 {
                let name = format!("{}-{i}", settings.instance);
                settings = settings.instance(name);
            }
            consumers.push(ctx.run_consumer(ctx.consumer(settings, handler.clone())?));
        }
        let consumers = async move {
            futures::future::try_join_all(consumers).await?;
            Ok::<(), anyhow::Error>(())
        };
        let state = AppState::new(db.clone(), args.writers, args.max_events);
        let readiness = ctx.readiness().database("database", db);
        let body_limit = args.max_body_mib.max(1) << 20;
        let router = finish_router(
            router(state).merge(ops_router(json!({"ok": true}), readiness.clone())),
            body_limit,
        );
        let server = ctx
            .bind(SocketAddr::new(args.host, args.port))
            .await
            .context("log aggregator: change the port with --aggregator-port / AGGREGATOR_PORT")?;
        let addr = server.local_addr();
        Ok(Running::new(readiness)
            .http(addr)
            .summary(format!(
                "{}/publish (and Kafka topics {})",
                base_url(addr),
                args.kafka_topics.join(",")
            ))
            .intake(ctx.serve(server, router))
            .consumer(consumers))
    }
}
