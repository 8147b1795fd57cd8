//! The one supervisor: what `kafkube up` and `kafkube serve` both run.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::join_all;
use kafkube_http::{Readiness, finish_router, ops_router};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::service::{BoundService, Kind, ServiceInfo, Task};
use crate::{Context, Stops};

/// A service whose tasks run: what the supervisor (and the test harness) holds.
pub struct Launched {
    pub info: ServiceInfo,
    pub readiness: Readiness,
    pub http: Option<SocketAddr>,
    pub summary: String,
    intake: Option<JoinHandle<anyhow::Result<()>>>,
    consumer: Option<JoinHandle<anyhow::Result<()>>>,
    handles: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Launched {
    /// Starts `service` and spawns its tasks. A task that ends before the first stop signal is a
    /// failure: it is logged, `failed` is set and every service is asked to stop.
    pub async fn launch(service: BoundService, ctx: &Context, failed: &Arc<AtomicBool>) -> anyhow::Result<Self> {
        let info = service.info;
        let mut running = service
            .start(ctx.clone())
            .await
            .with_context(|| format!("{} could not start", info.name))?;
        let handles = running.take_handles();
        let spawn =
            |task: Option<Task>| task.map(|t| tokio::spawn(watch(info.name, t, ctx.stops.clone(), failed.clone())));
        Ok(Self {
            info,
            intake: spawn(running.intake.take()),
            consumer: spawn(running.consumer.take()),
            readiness: running.readiness,
            http: running.http,
            summary: running.summary,
            handles,
        })
    }

    /// A handle the service [provided](crate::Running::provide).
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.handles
            .get(&TypeId::of::<T>())
            .and_then(|h| h.downcast_ref::<T>())
            .cloned()
    }

    /// Waits for the intake task (after [`Stops::intake`]).
    pub async fn join_intake(&mut self) -> anyhow::Result<()> {
        join(self.info.name, self.intake.take()).await
    }

    /// Waits for the consumer task (after [`Stops::drain`] or [`Stops::hard`]).
    pub async fn join_consumer(&mut self) -> anyhow::Result<()> {
        join(self.info.name, self.consumer.take()).await
    }

    /// Stops the tasks where they are, as a crash would (the test harness's SIGKILL).
    pub fn abort(&mut self) {
        for t in [self.intake.take(), self.consumer.take()].into_iter().flatten() {
            t.abort();
        }
    }

    fn report(&self) -> Report {
        Report {
            name: self.info.name,
            kind: self.info.kind,
            http: self.http,
            summary: self.summary.clone(),
        }
    }
}

async fn watch(name: &'static str, task: Task, stops: Stops, failed: Arc<AtomicBool>) -> anyhow::Result<()> {
    let r = task.await;
    if !stops.intake.is_triggered() {
        match &r {
            Ok(()) => tracing::error!(service = name, "stopped unexpectedly; stopping the other services"),
            Err(e) => tracing::error!(service = name, error = %format!("{e:#}"), "failed; stopping the other services"),
        }
        failed.store(true, Ordering::SeqCst);
        stops.intake.trigger();
    }
    r
}

async fn join(name: &str, task: Option<JoinHandle<anyhow::Result<()>>>) -> anyhow::Result<()> {
    match task {
        None => Ok(()),
        Some(t) => match t.await {
            Ok(r) => r.with_context(|| name.to_owned()),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{name} crashed: {e}")),
        },
    }
}

/// What the banner shows of a service once every service is ready.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: &'static str,
    pub kind: Kind,
    pub http: Option<SocketAddr>,
    pub summary: String,
}

/// Runs services until a signal, then drains them in order.
#[derive(Clone, Debug)]
pub struct Supervisor {
    /// What the consumers do on the first signal.
    pub stop: StopMode,
    /// `serve`: the port of `/health`, `/ready` and `/metrics` for a service without an HTTP API.
    pub ops_port: Option<OpsPort>,
    /// `up`: the port of one `/health`, `/ready` and `/metrics` for the whole process, whose
    /// `/ready` runs every service's checks (`service/check`), consumers included.
    pub process_ops_port: Option<OpsPort>,
    /// More routes for that server (`up`'s console).
    pub process_ops_routes: Option<axum::Router>,
}

/// What `on_ready` is told once every service is ready.
#[derive(Clone, Debug)]
pub struct Ready {
    pub services: Vec<Report>,
    /// Where the process's own `/ready` answers ([`Supervisor::process_ops_port`]).
    pub process_ops: Option<SocketAddr>,
}

/// How consumers stop on the first signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// After the batch in hand (`serve`: the broker keeps what is left for the next replica).
    Now,
    /// Once caught up (`up`, whose embedded broker dies with the process): with `None` for as
    /// long as it takes, each consumer saying what it waits for, until a second signal; with a
    /// limit, at most that long. Records left either way are counted and fail the run.
    Drain(Option<Duration>),
}

/// The port of `/health`, `/ready` and `/metrics` for a service without an HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsPort {
    /// This one, or fail (`OPS_PORT` given; 0 is any free port).
    Exactly(u16),
    /// This one, or any free port when it is taken: the default, so that several replicas of a
    /// consumer run side by side on one machine (in Kubernetes each pod has the port to itself).
    Preferably(u16),
}

impl Supervisor {
    /// Starts `services` in order with `ctx`, calls `on_ready` once every one passes its
    /// readiness checks, and returns after the drain: `Ok(true)` when everything ended cleanly.
    /// The first SIGINT/SIGTERM starts the drain, a second one stops at once.
    pub async fn run(
        &self,
        ctx: &Context,
        services: Vec<BoundService>,
        on_ready: impl FnOnce(&Ready),
    ) -> anyhow::Result<bool> {
        let stops = ctx.stops.clone();
        let signals = tokio::spawn(forward_signals(stops.clone()));
        let failed = Arc::new(AtomicBool::new(false));
        let mut launched = Vec::new();
        let mut ops = Vec::new();
        let started = async {
            for service in services {
                let l = Launched::launch(service, ctx, &failed).await?;
                if l.http.is_none()
                    && let Some(port) = self.ops_port
                {
                    ops.push(ops_server(port, l.readiness.clone(), None, &stops).await?.1);
                }
                launched.push(l);
            }
            match self.process_ops_port {
                Some(port) => {
                    let all = launched
                        .iter()
                        .fold(Readiness::new(), |all, l| all.merge(l.info.name, &l.readiness));
                    let (addr, server) = ops_server(port, all, self.process_ops_routes.clone(), &stops).await?;
                    ops.push(server);
                    anyhow::Ok(Some(addr))
                }
                None => anyhow::Ok(None),
            }
        }
        .await;
        let process_ops = match started {
            Ok(addr) => addr,
            Err(e) => {
                stops.all();
                for l in &mut launched {
                    let _ = l.join_intake().await;
                    let _ = l.join_consumer().await;
                }
                signals.abort();
                return Err(e);
            }
        };

        tokio::select! {
            () = stops.intake.cancelled() => {}
            () = wait_ready(&launched) => {
                on_ready(&Ready {
                    services: launched.iter().map(Launched::report).collect(),
                    process_ops,
                });
            }
        }
        stops.intake.cancelled().await;

        let mut ok = !failed.load(Ordering::SeqCst);
        // In-flight requests get 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        for l in &mut launched {
            ok &= report(bounded(deadline, &stops, l.join_intake()).await);
        }
        let deadline = match self.stop {
            StopMode::Now => {
                stops.hard.trigger();
                deadline
            }
            StopMode::Drain(limit) => {
                stops.drain.trigger();
                // No limit: until caught up, or the second signal.
                Instant::now() + limit.unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600))
            }
        };
        for l in &mut launched {
            ok &= report(bounded(deadline, &stops, l.join_consumer()).await);
        }
        stops.hard.trigger();
        for o in ops {
            ok &= report(o.await.map_err(anyhow::Error::from).and_then(|r| r.map_err(Into::into)));
        }
        signals.abort();
        Ok(ok)
    }
}

/// Awaits `f`; at `deadline` trips the hard stop (and says so) and keeps waiting.
async fn bounded(deadline: Instant, stops: &Stops, f: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::pin!(f);
    match tokio::time::timeout_at(deadline.into(), &mut f).await {
        Ok(r) => r,
        Err(_) => {
            if !stops.hard.is_triggered() {
                eprintln!("draining took longer than the drain timeout; stopping without waiting");
                stops.hard.trigger();
            }
            f.await
        }
    }
}

fn report(r: anyhow::Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("error: {e:#}");
            false
        }
    }
}

/// First signal: intake. Second: everything, now.
async fn forward_signals(stops: Stops) {
    kafkube_core::shutdown::wait_for_signal().await;
    tracing::info!("shutdown signal received; draining (a second signal stops at once)");
    stops.intake.trigger();
    kafkube_core::shutdown::wait_for_signal().await;
    eprintln!("second signal: stopping without draining");
    stops.all();
}

/// Returns once every service passes its readiness checks; says which one it waits for every
/// 5 s, so a start that hangs on a dependency explains itself.
async fn wait_ready(launched: &[Launched]) {
    let started = Instant::now();
    let mut next_note = started + Duration::from_secs(5);
    loop {
        let results = join_all(
            launched
                .iter()
                .map(|l| async { (l.info.name, l.readiness.run().await) }),
        )
        .await;
        let waiting: Vec<String> = results
            .into_iter()
            .filter(|(_, (ok, _))| !ok)
            .map(|(name, (_, body))| format!("{name} {}", body["checks"]))
            .collect();
        if waiting.is_empty() {
            tracing::info!(
                after_ms = started.elapsed().as_millis() as u64,
                "every service is ready"
            );
            return;
        }
        if Instant::now() >= next_note {
            eprintln!(
                "still waiting after {}s for: {}",
                started.elapsed().as_secs(),
                waiting.join("; ")
            );
            next_note += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ops_server(
    port: OpsPort,
    readiness: Readiness,
    extra: Option<axum::Router>,
    stops: &Stops,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let ops = ops_router(json!({"status": "ok"}), readiness);
    let router = finish_router(
        match extra {
            Some(extra) => ops.merge(extra),
            None => ops,
        },
        16 * 1024,
    );
    let bind = |port: u16| kafkube_http::HttpServer::bind(SocketAddr::from(([0, 0, 0, 0], port)));
    let server = match port {
        OpsPort::Exactly(p) => bind(p).await.with_context(|| {
            format!(
                "cannot listen on port {p} (OPS_PORT) for /health, /ready and /metrics; \
                 set OPS_PORT to a free port, or to 0 for any"
            )
        })?,
        OpsPort::Preferably(p) => match bind(p).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let server = bind(0)
                    .await
                    .context("cannot listen on any port for /health, /ready and /metrics")?;
                tracing::warn!(
                    "port {p} is taken (another replica on this machine?): /health, /ready and /metrics \
                     are on port {} instead; set OPS_PORT to choose",
                    server.local_addr().port()
                );
                server
            }
            other => other.with_context(|| {
                format!("cannot listen on port {p} for /health, /ready and /metrics; set OPS_PORT to a free port")
            })?,
        },
    };
    let addr = server.local_addr();
    tracing::info!("/health, /ready and /metrics on port {}", addr.port());
    // Probes keep answering while the consumers drain.
    Ok((addr, tokio::spawn(server.serve(router, stops.hard.clone()))))
}
