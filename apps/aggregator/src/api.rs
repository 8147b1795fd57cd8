//! The aggregator's HTTP API (port 8080) and the service that runs it with the Kafka ingest.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kafkube_bus::{ConsumerRunner, ConsumerSettings, KafkaConfig, Producer};
use kafkube_core::Shutdown;
use kafkube_http::{HttpServer, Json, JsonBytes, Query, Readiness, RequestError, finish_router, ops_router};
use kafkube_store::{Db, DbArgs};
use serde::Deserialize;
use serde_json::json;

use crate::AggregatorArgs;
use crate::coalesce::Coalescer;
use crate::consumer::IngestHandler;
use crate::model::parse_body_bytes;
use crate::store;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// `POST /publish` stores through this, so concurrent requests share statements.
    pub writer: Coalescer,
    pub started: Instant,
    pub max_events: usize,
}

impl AppState {
    pub fn new(db: Db, writers: usize, max_events: usize) -> Self {
        Self {
            writer: Coalescer::start(db.clone(), writers),
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
        (status = 400, description = "Invalid JSON, or a schema error naming the event and field", body = crate::openapi::ErrorDoc),
        (status = 503, description = "The database is unreachable; retry", body = crate::openapi::ErrorDoc),
    )
)]
async fn publish(State(s): State<AppState>, JsonBytes(body): JsonBytes) -> Result<Response, RequestError> {
    let events = parse_body_bytes(&body, s.max_events).map_err(|e| RequestError::bad_request(e.to_string()))?;
    let r = s.writer.ingest(events).await?;
    Ok(Json(r).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only this topic (all topics when absent).
    topic: Option<String>,
    /// How many, newest first: 1 to 5000, default 100.
    limit: Option<i64>,
}

/// Stored events, newest first; an unknown topic gives `[]`.
#[utoipa::path(
    get,
    path = "/events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Stored events", body = [crate::openapi::StoredEventDoc]),
        (status = 400, description = "A bad `limit`", body = crate::openapi::ErrorDoc),
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
#[utoipa::path(get, path = "/stats", responses((status = 200, description = "Counters", body = Stats)))]
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
pub struct AggregatorService {
    server: HttpServer,
    router: Router,
    consumer: ConsumerRunner<IngestHandler>,
}

impl AggregatorService {
    pub async fn build(
        args: &AggregatorArgs,
        db_args: &DbArgs,
        kafka: &KafkaConfig,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let db = Db::open(&args.database_url, db_args, shutdown, &[crate::migrations()]).await?;
        let producer = Producer::new(kafka)?;
        let topics: Vec<&str> = args.kafka_topics.iter().map(String::as_str).collect();
        let settings = ConsumerSettings::new(&args.group, &topics).max_batch(args.batch);
        let consumer = ConsumerRunner::new(
            kafka,
            producer.clone(),
            settings,
            IngestHandler::new(db.clone(), args.max_events),
        )?;
        let state = AppState::new(db.clone(), args.writers, args.max_events);
        let readiness = Readiness::new().database("database", db).kafka(producer);
        // Large enough for `max_events` events of a few hundred bytes each.
        let body_limit = (args.max_events * 2048).max(1 << 20);
        let router = finish_router(
            router(state).merge(ops_router(json!({"ok": true}), readiness)),
            body_limit,
        );
        let server = HttpServer::bind(SocketAddr::new(args.host, args.port)).await?;
        Ok(Self {
            server,
            router,
            consumer,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `http_stop`. The Kafka ingest stops on `consumer_stop`, or — with `drain` —
    /// once it has caught up after `drain` trips (how `kafkube up` stops).
    pub async fn run(
        self,
        http_stop: Shutdown,
        consumer_stop: Shutdown,
        drain: Option<Shutdown>,
    ) -> anyhow::Result<()> {
        let consumer = match drain {
            Some(d) => tokio::spawn(self.consumer.run_until_drained(consumer_stop, d)),
            None => tokio::spawn(self.consumer.run(consumer_stop)),
        };
        let served = self.server.serve(self.router, http_stop).await;
        consumer.await??;
        Ok(served?)
    }
}
