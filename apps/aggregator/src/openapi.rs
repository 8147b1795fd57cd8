//! `GET /openapi.json`: the aggregator's API description, generated from the handlers
//! (`#[utoipa::path]`) and these schema types, so it cannot drift from the code.

use chrono::{DateTime, Utc};
use utoipa::{OpenApi, ToSchema};

/// An event as clients send it.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema: read by the generator, never constructed
pub struct EventDoc {
    /// Deduplication is per `(topic, event_id)`.
    topic: String,
    event_id: String,
    /// RFC 3339; a date-time without a zone (UTC), a date, or Unix time (a number or numeric
    /// string: seconds, milliseconds when above 2·10¹⁰).
    timestamp: DateTime<Utc>,
    source: String,
    /// Any JSON object.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

/// A stored event.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct StoredEventDoc {
    topic: String,
    event_id: String,
    timestamp: DateTime<Utc>,
    source: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// When the aggregator stored it.
    received_at: DateTime<Utc>,
}

/// One event, an array of events, or `{"events": [...]}`.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum PublishBody {
    One(EventDoc),
    Many(Vec<EventDoc>),
    Wrapped(EventsWrapper),
}

#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct EventsWrapper {
    events: Vec<EventDoc>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kafkube log aggregator",
        description = "Idempotent pub-sub log ingest (seed 003)."
    ),
    paths(crate::api::publish, crate::api::events, crate::api::stats),
    components(schemas(
        EventDoc,
        StoredEventDoc,
        PublishBody,
        EventsWrapper,
        kafkube_http::ErrorBody,
        crate::store::Ingested,
        crate::api::Stats
    ))
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
