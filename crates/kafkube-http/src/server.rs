//! Serving a router: the middleware every API shares, binding, graceful shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use kafkube_core::Shutdown;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};
use tracing::Level;

use crate::error::error_response;

/// Adds what every Kafkube API has: JSON 404/405, a body size limit, a panic guard that answers
/// 500 instead of dropping the connection, request tracing and request metrics.
///
/// Each response is logged once, at the level of whose fault it is: a client error (4xx) at
/// DEBUG, a 503 (a dependency unavailable: the client may retry, the cause is logged where it
/// arose) at WARN, any other 5xx at ERROR, everything else at DEBUG.
pub fn finish_router(router: Router, body_limit: usize) -> Router {
    router
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_request(())
                .on_response(log_response)
                // Every response is logged by `log_response`; a failure is a response here.
                .on_failure(()),
        )
}

fn log_response(res: &Response, latency: Duration, _span: &tracing::Span) {
    let (status, ms) = (res.status().as_u16(), latency.as_secs_f64() * 1e3);
    match res.status() {
        StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(status, ms, "service unavailable"),
        s if s.is_server_error() => tracing::error!(status, ms, "request failed"),
        s if s.is_client_error() => tracing::debug!(status, ms, "client error"),
        _ => tracing::debug!(status, ms, "response"),
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// A bound listener, ready to serve. Binding first lets tests use port 0 and read the port.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` trips, then stops accepting and finishes in-flight requests.
    pub async fn serve(self, router: Router, shutdown: Shutdown) -> std::io::Result<()> {
        use axum::serve::ListenerExt as _;
        tracing::info!(addr = %self.addr, "listening");
        // Small writes go out at once: a live stream's events (SSE) and a response written in
        // parts must not wait for the client's delayed ACK (Nagle's algorithm, ~40 ms).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;
    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// Records the level of every event.
    #[derive(Clone, Default)]
    struct Levels(Arc<Mutex<Vec<Level>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if let Ok(mut l) = self.0.lock() {
                l.push(*event.metadata().level());
            }
        }
    }

    async fn levels_of(status: StatusCode) -> Vec<Level> {
        let levels = Levels::default();
        let subscriber = tracing_subscriber::registry().with(levels.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = finish_router(
            Router::new().route("/", get(move || async move { error_response(status, "x") })),
            1024,
        );
        let res = app
            .oneshot(Request::get("/").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(res.status(), status);
        levels.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// ERROR is for faults of ours: a client's mistake is DEBUG, a 503 is WARN, a 500 is ERROR.
    #[tokio::test(flavor = "current_thread")]
    async fn responses_are_logged_at_the_level_of_whose_fault_they_are() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::OK,
        ] {
            assert_eq!(levels_of(status).await, [Level::DEBUG], "{status}");
        }
        assert_eq!(levels_of(StatusCode::SERVICE_UNAVAILABLE).await, [Level::WARN]);
        assert_eq!(levels_of(StatusCode::INTERNAL_SERVER_ERROR).await, [Level::ERROR]);
    }
}
