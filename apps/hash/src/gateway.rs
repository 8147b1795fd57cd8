//! The gateway: `POST /hash` on port 3001, answered through Kafka request/reply.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kafkube_bus::{Header, Outgoing, RpcClient, RpcError, RpcSettings};
use kafkube_core::Shutdown;
use kafkube_http::{ErrorBody, JsonBytes, error_response, finish_router, ops_router};
use kafkube_runtime::{Context, Running, Service, ServiceInfo, base_url};
use serde_json::json;
use utoipa::OpenApi;

use crate::HashArgs;
use crate::model::{HashReply, HashRequest, parse_body};

/// Largest `POST /hash` body (a Kafka record must stay under the broker's 1 MB default).
pub const BODY_LIMIT: usize = 512 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub rpc: RpcClient,
    pub request_topic: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Invalid(String),
    #[error("no reply from the hash processor within {} ms; is a processor running (group service_2)?", .0.as_millis())]
    Timeout(Duration),
    #[error("{0}; retry later")]
    Unavailable(String),
    #[error("the hash processor answered with an error: {0}")]
    BadGateway(String),
}

impl From<RpcError> for GatewayError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Timeout(t) => Self::Timeout(t),
            RpcError::Remote(why) => Self::BadGateway(why),
            RpcError::Unreachable(_)
            | RpcError::NoRoute(_)
            | RpcError::Publish(_)
            | RpcError::DuplicateId(_)
            | RpcError::Shutdown => Self::Unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
        };
        error_response(status, self.to_string())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hash", post(hash))
        .route("/openapi.json", get(|| async { axum::Json(ApiDoc::openapi()) }))
        .with_state(state)
}

/// `{"data": "<string>"}` in the body.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema: read by the generator, never constructed
struct HashBody {
    data: String,
}

/// SHA-256 of `data`, computed by a hash processor over Kafka.
#[utoipa::path(
    post,
    path = "/hash",
    request_body = HashBody,
    responses(
        (status = 200, description = "The hash and the request's id", body = HashReply),
        (status = 400, description = "Invalid JSON, or `data` missing or not a string", body = ErrorBody),
        (status = 413, description = "The body is over 512 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 502, description = "The processor could not handle the request", body = ErrorBody),
        (status = 503, description = "The broker is unreachable, or the gateway is not ready yet", body = ErrorBody),
        (status = 504, description = "No reply within REQUEST_TIMEOUT", body = ErrorBody),
    )
)]
async fn hash(State(s): State<AppState>, JsonBytes(body): JsonBytes) -> Result<Response, GatewayError> {
    let data = parse_body(&body).map_err(GatewayError::Invalid)?;
    let id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_vec(&HashRequest {
        id: id.as_str().into(),
        data,
    })
    .expect("two strings always serialise");
    let request = Outgoing::new(s.request_topic.as_str(), Some(id.as_str()), payload)
        .header(Header::CORRELATION_ID, id.as_str())
        .header(Header::EVENT_TYPE, "hash.requested");
    let reply = s.rpc.request(request, s.timeout).await?;
    let reply: HashReply = serde_json::from_slice(reply.payload())
        .map_err(|e| GatewayError::BadGateway(format!("unreadable reply: {e}")))?;
    if reply.id != id {
        // Correlation ids make this impossible; refuse rather than answer with another's hash.
        return Err(GatewayError::BadGateway(format!(
            "reply for request {} arrived for {id}",
            reply.id
        )));
    }
    Ok(axum::Json(reply).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kafkube hash gateway",
        description = "SHA-256 over Kafka request/reply (seed 001)."
    ),
    paths(hash),
    components(schemas(HashBody, HashReply, ErrorBody))
)]
struct ApiDoc;

/// The gateway as a service: the HTTP server and the reply listener. It provides its
/// [`RpcClient`].
pub struct HashGateway;

#[kafkube_runtime::async_trait]
impl Service<HashArgs> for HashGateway {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::intake(
            "hash-gateway",
            "Hash gateway on port 3001: `POST /hash` answered over Kafka request/reply. Run several; \
             each reads its own partitions of the reply topic.",
        )
        .reads(&[
            "hash-host",
            "hash-port",
            "hash-request-topic",
            "hash-response-topic",
            "hash-request-timeout",
            "hash-gateway-group",
            "hash-partitions",
        ])
    }

    async fn start(&self, args: &HashArgs, ctx: &Context) -> anyhow::Result<Running> {
        // Stops the reply listener once the HTTP server has answered every request in flight.
        let listener_stop = Shutdown::new();
        let settings = RpcSettings::new(args.response_topic.as_str(), args.gateway_group.as_str());
        let (rpc, listener) = RpcClient::new(&ctx.kafka, ctx.producer.clone(), settings, &listener_stop)?;
        let routes = rpc.clone();
        let group = args.gateway_group.clone();
        let readiness = ctx.readiness().check("replies", move || {
            let (ready, topic, group) = (routes.is_ready(), routes.reply_topic().to_owned(), group.clone());
            async move {
                if ready {
                    Ok(())
                } else {
                    Err(format!(
                        "no partition of {topic} assigned to this replica yet (group {group}); if this lasts, \
                         the topic has fewer partitions than there are gateway replicas"
                    ))
                }
            }
        });
        let state = AppState {
            rpc: rpc.clone(),
            request_topic: args.request_topic.clone(),
            timeout: args.request_timeout,
        };
        let router = finish_router(
            router(state).merge(ops_router(json!({"ok": true}), readiness.clone())),
            BODY_LIMIT,
        );
        let server = ctx
            .bind(SocketAddr::new(args.host, args.port))
            .await
            .context("hash gateway: change the port with --hash-port / SERVICE_1_PORT")?;
        let addr = server.local_addr();
        let serve = ctx.serve(server, router);
        let intake = async move {
            let listener = tokio::spawn(listener.run());
            let served = serve.await;
            listener_stop.trigger();
            listener.await??;
            served
        };
        Ok(Running::new(readiness)
            .http(addr)
            .summary(format!(
                "{}/hash (over {} → group {} → {})",
                base_url(addr),
                args.request_topic,
                args.processor_group,
                args.response_topic
            ))
            .intake(intake)
            .provide(rpc))
    }
}
