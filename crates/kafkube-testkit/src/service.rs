//! [`spawn`]: a service running inside a test, as the supervisor runs it.

use std::net::SocketAddr;
use std::time::Duration;

use kafkube_bus::KafkaConfig;
use kafkube_runtime::{BoundService, Context, Launched, Service, Stops};
use kafkube_store::DbArgs;

use crate::eventually;

/// A service running inside a test, as the supervisor runs it, on the test's broker.
pub struct Spawned {
    launched: Launched,
    pub ctx: Context,
}

/// Starts `service` with `args` against `kafka` (a context of its own: its own producer and stop
/// signals), and runs its tasks in the background.
pub async fn spawn<A: Send + Sync + 'static>(
    service: impl Service<A>,
    args: A,
    kafka: &KafkaConfig,
) -> anyhow::Result<Spawned> {
    let ctx = Context::new(kafka.clone(), DbArgs::default())?;
    let bound = BoundService::new(Box::new(service), args);
    let launched = Launched::launch(bound, &ctx, &std::sync::Arc::default()).await?;
    Ok(Spawned { launched, ctx })
}

impl Spawned {
    /// The HTTP API's address (panics for a service without one).
    pub fn addr(&self) -> SocketAddr {
        self.launched.http.expect("the service has an HTTP API")
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A handle the service provides (its RPC client, a counter).
    pub fn get<T: std::any::Any + Send + Sync + Clone>(&self) -> T {
        self.launched.get::<T>().expect("the service provides this handle")
    }

    pub fn stops(&self) -> &Stops {
        &self.ctx.stops
    }

    /// Waits until every readiness check of the service passes.
    pub async fn ready(&self, timeout: Duration) {
        let r = eventually(timeout, || async {
            self.launched.readiness.run().await.0.then_some(())
        })
        .await;
        assert!(
            r.is_some(),
            "{} did not become ready within {timeout:?}",
            self.launched.info.name
        );
    }

    /// Stops as `serve` does on SIGTERM: intake finishes, then the consumer after its batch.
    /// Fails the test if a task failed.
    /// Each step is bounded (60 s): a service that does not stop fails the test, saying which
    /// step, rather than hanging it.
    pub async fn stop(mut self) {
        const LIMIT: Duration = Duration::from_secs(60);
        self.ctx.stops.intake.trigger();
        tokio::time::timeout(LIMIT, self.launched.join_intake())
            .await
            .expect("the intake stops within 60 s")
            .expect("intake ended cleanly");
        self.ctx.stops.hard.trigger();
        tokio::time::timeout(LIMIT, self.launched.join_consumer())
            .await
            .expect("the consumer stops within 60 s of a hard stop")
            .expect("consumer ended cleanly");
    }

    /// Stops as `up` does: intake finishes, then the consumer once caught up (at most 30 s).
    pub async fn drain(mut self) {
        self.ctx.stops.intake.trigger();
        self.launched.join_intake().await.expect("intake ended cleanly");
        self.ctx.stops.drain.trigger();
        tokio::time::timeout(Duration::from_secs(30), self.launched.join_consumer())
            .await
            .expect("the consumer drains within 30 s")
            .expect("consumer ended cleanly");
    }

    /// Stops the tasks where they are, with nothing committed or flushed: a crash.
    pub fn kill(mut self) {
        self.launched.abort();
    }
}

/// A service a test did not stop (it ended early, or panicked) is aborted with it, not left
/// running until the runtime shuts down.
impl Drop for Spawned {
    fn drop(&mut self) {
        self.launched.abort();
    }
}
