//! Operational endpoints every Kafkube HTTP service has.
//!
//! `GET /health` is liveness (the process answers); `GET /ready` runs the service's named
//! dependency checks (database, broker) and answers 503 naming the one that failed, so
//! Kubernetes stops routing to a replica that cannot work; `GET /metrics` renders the process's
//! Prometheus registry, followed by the same checks as `kafkube_ready{check}` (1 passing, 0
//! failing), so Prometheus sees readiness without anything probing `/ready`.

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
        .route("/metrics", get(metrics))
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

async fn metrics(State(s): State<OpsState>) -> Response {
    let (_, checks) = s.readiness.run().await;
    let mut body = kafkube_core::telemetry::metrics_handle().render();
    body.push_str(&readiness_text(&checks));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// `kafkube_ready{check}` in Prometheus' text format, from [`Readiness::run`]'s report. These
/// lines belong to the endpoint, not to the process's registry: in `kafkube up` every service's
/// `/metrics` shows the one registry and its own checks.
fn readiness_text(report: &Value) -> String {
    let mut out = String::from(
        "# HELP kafkube_ready Whether a readiness check of /ready passes (1) or fails (0).\n\
         # TYPE kafkube_ready gauge\n",
    );
    for (name, result) in report["checks"].as_object().into_iter().flatten() {
        let ok = u8::from(result["ok"] == true);
        let name = name.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        out.push_str(&format!("kafkube_ready{{check=\"{name}\"}} {ok}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_is_a_gauge_per_check() {
        let readiness = Readiness::new()
            .check("database", || async { Ok(()) })
            .check("kafka \"main\"", || async { Err("down".to_owned()) });
        let (_, report) = readiness.run().await;
        let text = readiness_text(&report);
        assert!(text.contains("# TYPE kafkube_ready gauge\n"), "{text}");
        assert!(text.contains("kafkube_ready{check=\"database\"} 1\n"), "{text}");
        assert!(
            text.contains("kafkube_ready{check=\"kafka \\\"main\\\"\"} 0\n"),
            "{text}"
        );
    }
}
