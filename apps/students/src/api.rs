//! `/api/mahasiswa`: the students REST API, and [`StudentsApi`], the service that runs it with its
//! outbox relay.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kafkube_http::{ErrorBody, Json, Path, Query, ServiceError, error_response, finish_router, ops_router};
use kafkube_outbox::{Notifier, Relay};
use kafkube_runtime::{Context, Running, Service, ServiceInfo, base_url};
use kafkube_store::{Db, StoreError};
use serde::Deserialize;
use serde_json::json;
use utoipa::OpenApi;

use crate::StudentsArgs;
use crate::model::{Mahasiswa, MahasiswaInput};
use crate::store::{self, Changed, Trace};

/// Response header naming the event a write produced (the latency test follows it).
pub const EVENT_ID_HEADER: &str = "x-event-id";

/// What every handler needs, built once at start.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub topic: Arc<str>,
    pub relay: Notifier,
}

/// The API's errors, as the contract's `{"error"}` bodies.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("no student with id {0}")]
    NotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Service(e) => return e.into_response(),
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
        };
        error_response(status, self.to_string())
    }
}

/// The API's routes (no socket: tests drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(greeting))
        .route("/api/mahasiswa", get(list).post(create))
        .route("/api/mahasiswa/{id}", get(show).put(update).delete(remove))
        .route("/openapi.json", get(|| async { axum::Json(ApiDoc::openapi()) }))
        .with_state(state)
}

fn trace_of(headers: &HeaderMap) -> Trace {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Trace {
        correlation_id: get("x-request-id").or_else(|| get("x-correlation-id")),
        traceparent: get("traceparent"),
    }
}

fn written(state: &AppState, status: StatusCode, c: Changed) -> Response {
    state.relay.notify();
    let mut res = (status, Json(c.row)).into_response();
    if let Ok(v) = HeaderValue::from_str(&c.event_id.to_string()) {
        res.headers_mut().insert(HeaderName::from_static(EVENT_ID_HEADER), v);
    }
    res
}

/// Adds a student; the `created` event goes out through the outbox.
#[utoipa::path(post, path = "/api/mahasiswa", request_body = MahasiswaInput,
    responses(
        (status = 201, description = "The stored student; header `X-Event-Id` names its event", body = Mahasiswa),
        (status = 400, description = "Invalid JSON or a field that breaks its rule", body = ErrorBody),
        (status = 409, description = "A student with this `nim` exists", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody),
    ))]
async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(input): Json<MahasiswaInput>,
) -> Result<Response, ApiError> {
    let fields = input.for_create().map_err(ApiError::Invalid)?;
    match store::create(&s.db, &s.topic, &fields, &trace_of(&headers)).await {
        Ok(c) => Ok(written(&s, StatusCode::CREATED, c)),
        Err(e) if e.is_unique_violation() => Err(duplicate_nim(fields.nim.as_deref())),
        Err(e) => Err(e.into()),
    }
}

/// Changes the fields given; the `updated` event goes out through the outbox.
#[utoipa::path(put, path = "/api/mahasiswa/{id}", params(("id" = i64, Path)), request_body = MahasiswaInput,
    responses(
        (status = 200, description = "The student as stored now", body = Mahasiswa),
        (status = 400, description = "A bad id, invalid JSON, no field or a field that breaks its rule", body = ErrorBody),
        (status = 404, description = "No student with this id", body = ErrorBody),
        (status = 409, description = "Another student has this `nim`", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody),
    ))]
async fn update(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(input): Json<MahasiswaInput>,
) -> Result<Response, ApiError> {
    let fields = input.for_update().map_err(ApiError::Invalid)?;
    match store::update(&s.db, &s.topic, id, &fields, &trace_of(&headers)).await {
        Ok(Some(c)) => Ok(written(&s, StatusCode::OK, c)),
        Ok(None) => Err(ApiError::NotFound(id)),
        Err(e) if e.is_unique_violation() => Err(duplicate_nim(fields.nim.as_deref())),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a student; the `deleted` event goes out through the outbox.
#[utoipa::path(delete, path = "/api/mahasiswa/{id}", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The student as it was", body = Mahasiswa),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 404, description = "No student with this id", body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody),
    ))]
async fn remove(State(s): State<AppState>, Path(id): Path<i64>, headers: HeaderMap) -> Result<Response, ApiError> {
    match store::delete(&s.db, &s.topic, id, &trace_of(&headers)).await? {
        Some(c) => Ok(written(&s, StatusCode::OK, c)),
        None => Err(ApiError::NotFound(id)),
    }
}

fn duplicate_nim(nim: Option<&str>) -> ApiError {
    ApiError::Conflict(format!("a student with nim {} already exists", nim.unwrap_or("?")))
}

/// One student.
#[utoipa::path(get, path = "/api/mahasiswa/{id}", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The student", body = Mahasiswa),
        (status = 400, description = "A bad id", body = ErrorBody),
        (status = 404, description = "No student with this id", body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody),
    ))]
async fn show(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    match store::get(&s.db, id).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(ApiError::NotFound(id)),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Page {
    /// From 1 (default 1); a page past the last is empty.
    #[param(minimum = 1, maximum = 1000000000)]
    page: Option<i64>,
    /// Students per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

const MAX_PAGE_SIZE: i64 = 100;
/// So that `(page - 1) * limit` stays far inside an `i64` (a larger page overflowed: a 500).
const MAX_PAGE: i64 = 1_000_000_000;

/// What seed 000's API answers at `/` (its Kubernetes probes ask for it).
pub const GREETING: &str = "REST API Mahasiswa sedang berjalan!";

#[utoipa::path(get, path = "/", responses((status = 200, description = "A greeting", body = String, content_type = "text/plain")))]
async fn greeting() -> &'static str {
    GREETING
}

/// Newest first, as a plain array (what seed 000's clients read); the page is described in the
/// headers: `X-Total-Count` (all students) and an RFC 8288 `Link` with `first`, `prev`, `next`
/// and `last` (relative to this route).
#[utoipa::path(get, path = "/api/mahasiswa", params(Page),
    responses(
        (status = 200, description = "A page of students, newest first", body = [Mahasiswa],
            headers(("X-Total-Count" = i64, description = "How many students there are"),
                ("Link" = String, description = "RFC 8288 links to the first, previous, next and last pages"))),
        (status = 400, description = "A bad `page` or `limit`, or an unknown parameter", body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody),
    ))]
async fn list(State(s): State<AppState>, Query(q): Query<Page>) -> Result<Response, ApiError> {
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(ApiError::Invalid(format!("`page` must be between 1 and {MAX_PAGE}")));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "`limit` must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let (rows, total) = store::list(&s.db, page, limit).await?;
    let mut res = Json(rows).into_response();
    let headers = res.headers_mut();
    headers.insert(HeaderName::from_static("x-total-count"), HeaderValue::from(total));
    if let Ok(link) = HeaderValue::from_str(&link_header(page, limit, total)) {
        headers.insert(axum::http::header::LINK, link);
    }
    Ok(res)
}

/// `</api/mahasiswa?page=1&limit=20>; rel="first", …` for the pages around `page`.
fn link_header(page: i64, limit: i64, total: i64) -> String {
    let last = ((total + limit - 1) / limit).max(1);
    let at = |p: i64, rel: &str| format!("</api/mahasiswa?page={p}&limit={limit}>; rel=\"{rel}\"");
    let mut links = vec![at(1, "first")];
    if page > 1 {
        links.push(at((page - 1).min(last), "prev"));
    }
    if page < last {
        links.push(at(page + 1, "next"));
    }
    links.push(at(last, "last"));
    links.join(", ")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kafkube students API",
        description = "Students REST API (seed 000); every write reaches the event log through Kafka."
    ),
    paths(greeting, list, create, show, update, remove),
    components(schemas(Mahasiswa, MahasiswaInput, ErrorBody))
)]
struct ApiDoc;

/// The students API as a service: the HTTP server plus the outbox relay that publishes its events.
pub struct StudentsApi;

#[kafkube_runtime::async_trait]
impl Service<StudentsArgs> for StudentsApi {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::intake("students-api", "Students REST API on port 3000, with its outbox relay.").reads(&[
            "students-port",
            "students-host",
            "database-url",
            "students-topic",
            "students-partitions",
        ])
    }

    /// Connects (waiting for the database), migrates, binds. Port 0 picks a free port.
    async fn start(&self, args: &StudentsArgs, ctx: &Context) -> anyhow::Result<Running> {
        let db = ctx.open_db(&args.db.database_url, &crate::main_migrations()).await?;
        let relay = Relay::new(db.clone(), ctx.producer.clone());
        let state = AppState {
            db: db.clone(),
            topic: args.topic.as_str().into(),
            relay: relay.notifier(),
        };
        let readiness = ctx.readiness().database("database", db);
        let router = finish_router(
            router(state).merge(ops_router(json!({"status": "ok"}), readiness.clone())),
            256 * 1024,
        );
        let server = ctx
            .bind(SocketAddr::new(args.host, args.port))
            .await
            .context("students API: change the port with --students-port / STUDENTS_PORT")?;
        let addr = server.local_addr();
        let serve = ctx.serve(server, router);
        // The relay stops only after the server has finished its in-flight requests, so their
        // events are published in its final pass.
        Ok(Running::new(readiness)
            .http(addr)
            .summary(format!("{}/api/mahasiswa", base_url(addr)))
            .intake(relay.alongside(serve)))
    }
}
