//! The restaurants page and API on port 5000, and [`RestaurantsApi`], the service that runs them
//! with the outbox relay (orders → `order`) and the status follower (statuses → orders).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use kafkube_bus::ConsumerSettings;
use kafkube_core::Shutdown;
use kafkube_http::{ErrorBody, Json, Path, Query, ServiceError, error_response, finish_router, ops_router};
use kafkube_outbox::{Notifier, Relay};
use kafkube_runtime::{Context, Running, Service, ServiceInfo, base_url};
use kafkube_store::{Db, GroupCommit, GroupOptions, StoreError};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::RestaurantsArgs;
use crate::follower::{StatusFollower, Updates};
use crate::model::{Cents, FieldError, OrderInput, OrderView, Restaurant, Status};
use crate::store::{self, Placed, Placement, Search};

/// What every handler needs, built once at start.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// `POST /orders` writes through this, so concurrent orders share a transaction.
    pub orders: GroupCommit<store::Orders>,
    pub relay: Notifier,
    pub default_amount: Cents,
    pub updates: Updates,
    /// Trips when the server stops taking requests: live streams end then.
    pub closing: Shutdown,
}

/// The API's errors, as `{"error"}` bodies (`{"error", "field"}` for a bad field).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.message)]
    Field(FieldError),
    #[error("{0}")]
    Invalid(String),
    #[error("no order with id {0:?}")]
    NotFound(String),
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
        match self {
            Self::Field(f) => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": f.message, "field": f.field})),
            )
                .into_response(),
            Self::Service(e) => e.into_response(),
            Self::Invalid(m) => error_response(StatusCode::BAD_REQUEST, m),
            e @ Self::NotFound(_) => error_response(StatusCode::NOT_FOUND, e.to_string()),
            Self::Conflict(m) => error_response(StatusCode::CONFLICT, m),
        }
    }
}

/// The page's files, built into the binary.
const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The API's routes (no socket: tests drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/search", get(search))
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(show_order))
        .route("/orders/{id}/events", get(order_events))
        .route("/openapi.json", get(|| async { axum::Json(ApiDoc::openapi()) }))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /search`'s query, with the seed's parameter names.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Case-insensitive part of the name.
    restaurant_name: Option<String>,
    /// Case-insensitive style, exactly ("chinese").
    restaurant_style: Option<String>,
    /// `true`: vegetarian restaurants only; `false` or empty: no filter.
    vegetarian: Option<String>,
    /// `true`: restaurants that deliver only; `false` or empty: no filter.
    delivery: Option<String>,
}

fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::Invalid(format!(
            "`{name}` must be true or false, not {other:?}"
        ))),
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Restaurants matching every filter given, by name.
#[utoipa::path(get, path = "/search", params(SearchQuery),
    responses((status = 200, body = [Restaurant]), (status = 400, body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody)))]
async fn search(State(s): State<AppState>, Query(q): Query<SearchQuery>) -> Result<Response, ApiError> {
    let query = Search {
        vegetarian: flag("vegetarian", q.vegetarian.as_deref())?,
        delivery: flag("delivery", q.delivery.as_deref())?,
        name: nonempty(q.restaurant_name),
        style: nonempty(q.restaurant_style),
    };
    if query.name.as_ref().is_some_and(|n| n.len() > 200) {
        return Err(ApiError::Invalid(
            "`restaurant_name` is longer than 200 characters".into(),
        ));
    }
    Ok(Json(store::search(&s.db, &query).await?).into_response())
}

/// What `POST /orders` answers.
#[derive(serde::Serialize, ToSchema)]
pub struct Accepted {
    order_id: String,
    message: &'static str,
}

/// The seed's answer to an order.
pub const ACCEPTED_MESSAGE: &str = "Order successfully placed, Wait for confirmation in your mail";

/// Accepts an order: its row and its `order` record commit together; the payments service takes
/// it from there. An `Idempotency-Key` header makes a retried request return the same order.
#[utoipa::path(post, path = "/orders", request_body = OrderDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same order: a retry places nothing twice.")),
    responses((status = 202, body = Accepted), (status = 400, body = FieldErrorDoc), (status = 409, body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, description = "The database is unreachable; retry", body = ErrorBody)))]
async fn place_order(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(input): Json<OrderInput>,
) -> Result<Response, ApiError> {
    let order = input.validate(s.default_amount).map_err(ApiError::Field)?;
    let order_id = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        Some(Ok(key)) if !key.is_empty() && key.len() <= 200 => {
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("kafkube-order:{key}").as_bytes())
        }
        Some(_) => {
            return Err(ApiError::Invalid(
                "`Idempotency-Key` must be 1 to 200 visible characters".into(),
            ));
        }
        None => uuid::Uuid::now_v7(),
    }
    .to_string();
    let restaurant = order.restaurant.clone();
    let placement = Placement {
        order_id: order_id.clone(),
        order,
    };
    match s.orders.submit(placement).await? {
        Placed::New => {
            s.relay.notify();
            metrics::counter!("restaurants_orders_placed_total").increment(1);
        }
        Placed::Existing { same: true } => {}
        Placed::Existing { same: false } => {
            return Err(ApiError::Conflict(
                "this Idempotency-Key was used for a different order".into(),
            ));
        }
        Placed::UnknownRestaurant => {
            return Err(ApiError::Field(FieldError {
                field: "restaurant",
                message: format!("there is no restaurant named {restaurant:?} (GET /search lists them)"),
            }));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            order_id,
            message: ACCEPTED_MESSAGE,
        }),
    )
        .into_response())
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ApiError::NotFound(id.chars().take(64).collect()));
    }
    Ok(())
}

/// The order, its current status and the statuses it reached.
#[utoipa::path(get, path = "/orders/{id}", params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody)))]
async fn show_order(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_id(&id)?;
    match store::order(&s.db, &id).await? {
        Some(o) => Ok(Json(o).into_response()),
        None => Err(ApiError::NotFound(id)),
    }
}

/// Server-Sent Events, `event: status`, one per status the order reached (the ones so far
/// first); the stream ends after a final status (`email_sent`, `rejected`).
#[utoipa::path(get, path = "/orders/{id}/events", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`event: status` with a JSON history entry as data"), (status = 404, body = ErrorBody),
        (status = 503, description = "The database is unreachable; retry", body = ErrorBody)))]
async fn order_events(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_id(&id)?;
    // Subscribed before the first read, so no change slips between the two.
    let mut updates = s.updates.subscribe();
    let mut history = store::history(&s.db, &id).await?;
    if history.is_empty() {
        // Every order has its `placed` entry from the transaction that made it.
        return Err(ApiError::NotFound(id));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let mut sent = HashSet::new();
        loop {
            let mut finished = false;
            for entry in history {
                // Statuses come from two topics (`order_status`, `order_confirm`), so `confirmed`
                // may be applied after `email_sent`: hold a step back until the one before it
                // was sent, so the stream shows the steps in order and never ends without one.
                let needs = match entry.status {
                    Status::Confirmed => Some(Status::Paid),
                    Status::EmailSent => Some(Status::Confirmed),
                    _ => None,
                };
                if needs.is_some_and(|s| !sent.contains(&s)) {
                    break;
                }
                finished |= entry.status.is_final();
                if !sent.insert(entry.status) {
                    continue;
                }
                let Ok(event) = Event::default().event("status").json_data(&entry) else {
                    continue;
                };
                if tx.send(event).await.is_err() {
                    return; // the client went away
                }
            }
            if finished {
                return;
            }
            // Woken by this process's follower; the periodic re-read covers changes another
            // replica's follower applied.
            tokio::select! {
                () = wait_for(&mut updates, &id) => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = s.closing.cancelled() => return,
                () = tx.closed() => return,
            }
            history = store::history(&s.db, &id).await.unwrap_or_else(|e| {
                tracing::warn!(order = %id, "live stream: cannot read the order's history: {e}");
                Vec::new()
            });
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn wait_for(updates: &mut tokio::sync::broadcast::Receiver<Arc<str>>, id: &str) {
    loop {
        match updates.recv().await {
            Ok(changed) if &*changed == id => return,
            Ok(_) => {}
            // Missed some: re-read to be safe.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// `POST /orders`' body.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema: read by the generator, never constructed
pub struct OrderDoc {
    /// Where the confirmation goes.
    email: String,
    /// The card number (the seed's 16 digits; spaces allowed). The payments service checks it;
    /// only its last four digits are kept.
    #[serde(rename = "creditCard")]
    credit_card: String,
    /// A restaurant's name, as `GET /search` lists it (any capitalisation).
    restaurant: String,
    /// Optional, like `25.00` (default: the `ORDER_AMOUNT` option).
    amount: Option<String>,
}

/// `{"error": "…", "field": "email"}`: which field of the order is wrong.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    error: String,
    field: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kafkube restaurants",
        description = "Search restaurants, order, follow the order to its confirmation e-mail (seed 004)."
    ),
    paths(search, place_order, show_order, order_events),
    components(schemas(
        Restaurant,
        Accepted,
        OrderDoc,
        ErrorBody,
        FieldErrorDoc,
        OrderView,
        crate::model::HistoryEntry,
        crate::model::Status
    ))
)]
struct ApiDoc;

/// The restaurants page and API as a service: the HTTP server and outbox relay (intake), and the
/// status follower (consumer).
pub struct RestaurantsApi;

#[kafkube_runtime::async_trait]
impl Service<RestaurantsArgs> for RestaurantsApi {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::intake(
            "restaurants",
            "Restaurants page and API on port 5000: search, order, live order status.",
        )
        .reads(&[
            "restaurants-port",
            "restaurants-host",
            "restaurants-database-url",
            "restaurants-file",
            "restaurants-writers",
            "order-amount",
            "order-topic",
            "order-confirm-topic",
            "order-status-topic",
            "order-status-group",
            "restaurants-partitions",
        ])
    }

    /// Connects (waiting for the database), migrates, imports the restaurant list into an empty
    /// database, binds, joins the status group.
    async fn start(&self, args: &RestaurantsArgs, ctx: &Context) -> anyhow::Result<Running> {
        let db = ctx.open_db(&args.database_url, &crate::orders_migrations()).await?;
        let list = crate::restaurant_list(args.restaurants_file.as_deref())?;
        if store::seed_restaurants(&db, &list).await? {
            tracing::info!(restaurants = list.len(), "imported the restaurant list");
        }
        let relay = Relay::new(db.clone(), ctx.producer.clone());
        let (updates, _) = tokio::sync::broadcast::channel(1024);
        let state = AppState {
            db: db.clone(),
            orders: GroupCommit::start(
                db.clone(),
                store::Orders {
                    topic: args.order_topic.as_str().into(),
                },
                GroupOptions {
                    writers: args.writers,
                    max_weight: 1000,
                    metric: "restaurants_orders_per_transaction",
                },
            ),
            relay: relay.notifier(),
            default_amount: args.order_amount,
            updates: updates.clone(),
            closing: ctx.stops.intake.clone(),
        };
        let readiness = ctx.readiness().database("database", db.clone());
        let router = finish_router(
            router(state).merge(ops_router(json!({"status": "healthy"}), readiness.clone())),
            64 * 1024,
        );
        let server = ctx
            .bind(SocketAddr::new(args.host, args.port))
            .await
            .context("restaurants: change the port with --restaurants-port / RESTAURANTS_PORT")?;
        let addr = server.local_addr();
        let serve = ctx.serve(server, router);
        let intake = relay.alongside(serve);
        let follower = StatusFollower {
            db,
            confirm_topic: args.confirm_topic.clone(),
            updates,
        };
        let settings = ConsumerSettings::new(&args.status_group, &[&args.status_topic, &args.confirm_topic]);
        let runner = ctx.consumer(settings, follower)?;
        Ok(Running::new(readiness)
            .http(addr)
            .summary(format!("{}/", base_url(addr)))
            .intake(intake)
            .consumer(ctx.run_consumer(runner)))
    }
}
