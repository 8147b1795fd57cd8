//! Operational endpoints every Kafkube HTTP service has.
//!
//! `GET /health` is liveness (the process answers); `GET /ready` runs the service's named
//! dependency checks (database, broker) and answers 503 naming the one that failed, so
//! Kubernetes stops routing to a replica that cannot work; `GET /metrics` renders the process's
//! Prometheus registry.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::{BoxFuture, join_all};
use serde_json::{Value, json};

/// One named dependency check.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The checks behind `/ready`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, ReadinessCheck)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.checks.iter().map(|(n, _)| n)).finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name.into(), Arc::new(move || Box::pin(f()))));
        self
    }

    /// Adds `other`'s checks, each named `prefix/name` (a process running several services
    /// reports them all on one `/ready`).
    pub fn merge(mut self, prefix: &str, other: &Readiness) -> Self {
        self.checks.extend(
            other
                .checks
                .iter()
                .map(|(name, check)| (format!("{prefix}/{name}"), check.clone())),
        );
        self
    }

    /// Adds the check every Kafkube service has for its database: a round trip.
    pub fn database(self, name: &str, db: kafkube_store::Db) -> Self {
        self.check(name, move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })
    }

    /// Adds the broker check: a metadata request answered within 2 s.
    pub fn kafka(self, producer: kafkube_bus::Producer) -> Self {
        self.check("kafka", move || {
            let p = producer.clone();
            async move { p.ping(Duration::from_secs(2)).await.map_err(|e| e.to_string()) }
        })
    }

    /// Runs every check (each bounded to 3 s) and reports per check.
    pub async fn run(&self) -> (bool, Value) {
        let results = join_all(self.checks.iter().map(|(name, check)| async move {
            let r = match tokio::time::timeout(Duration::from_secs(3), check()).await {
                Ok(r) => r,
                Err(_) => Err("timed out after 3 s".to_owned()),
            };
            (name.clone(), r)
        }))
        .await;
        let ok = results.iter().all(|(_, r)| r.is_ok());
        let checks: serde_json::Map<String, Value> = results
            .into_iter()
            .map(|(n, r)| {
                (
                    n,
                    r.map_or_else(|e| json!({"ok": false, "error": e}), |()| json!({"ok": true})),
                )
            })
            .collect();
        (ok, json!({"ready": ok, "checks": checks}))
    }
}

#[derive(Clone)]
struct OpsState {
    health: Value,
    readiness: Readiness,
}

/// `/health` (answering `health_body`), `/ready` and `/metrics`.
pub fn ops_router<S: Clone + Send + Sync + 'static>(health_body: Value, readiness: Readiness) -> Router<S> {
    // Install the recorder now, so metrics recorded before the first scrape are kept.
    drop(kafkube_core::telemetry::metrics_handle());
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState {
            health: health_body,
            readiness,
        })
}

async fn health(State(s): State<OpsState>) -> Response {
    axum::Json(s.health).into_response()
}

async fn ready(State(s): State<OpsState>) -> Response {
    let (ok, body) = s.readiness.run().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text() -> Response {
    let body = kafkube_core::telemetry::metrics_handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
