//! [`Service`]: one deployable part of an app, and [`Running`], what it is once started.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use kafkube_http::Readiness;

use crate::Context;

/// What a service mainly does; `serve --help` and the banner group by it, and the supervisor
/// gives a service without an HTTP API of its own an ops server (`/health`, `/ready`,
/// `/metrics`) in `serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Takes requests from outside (an HTTP API); stops first on a signal.
    Intake,
    /// Consumes topics; stops after intake, once caught up (`up`) or after its batch (`serve`).
    Consumer,
}

/// A service's name (the `serve` subcommand), one-line description, kind, and the options of its
/// app it reads.
#[derive(Clone, Copy, Debug)]
pub struct ServiceInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
    /// The long flags (without `--`) of the app's options this service reads, topics it creates
    /// included: `serve <service> --help` shows these and hides the app's others, which stay
    /// accepted (one ConfigMap can feed every service). The binary's tests check that each names
    /// an option of the app and that every option of the app is read by some service.
    pub options: &'static [&'static str],
}

impl ServiceInfo {
    pub const fn intake(name: &'static str, about: &'static str) -> Self {
        Self {
            name,
            about,
            kind: Kind::Intake,
            options: &[],
        }
    }

    pub const fn consumer(name: &'static str, about: &'static str) -> Self {
        Self {
            name,
            about,
            kind: Kind::Consumer,
            options: &[],
        }
    }

    /// The app's options this service reads (long flags without `--`).
    pub const fn reads(self, options: &'static [&'static str]) -> Self {
        Self { options, ..self }
    }
}

/// A part of an app with the options `A` of its app.
#[async_trait::async_trait]
pub trait Service<A: Send + Sync>: Send + Sync + 'static {
    fn info(&self) -> ServiceInfo;

    /// Connects (waiting for a database that is not up yet), migrates, binds its port and
    /// subscribes; returns the tasks to run. Nothing is served before the supervisor runs them.
    async fn start(&self, args: &A, ctx: &Context) -> anyhow::Result<Running>;
}

/// A future the supervisor runs as a task.
pub type Task = BoxFuture<'static, anyhow::Result<()>>;

/// A started service: its readiness checks and its tasks.
pub struct Running {
    pub readiness: Readiness,
    /// The address of its HTTP API, if it has one.
    pub http: Option<SocketAddr>,
    /// What the `up` banner shows after its name: the URL of its main route, or what it consumes.
    pub summary: String,
    pub(crate) intake: Option<Task>,
    pub(crate) consumer: Option<Task>,
    handles: HashMap<std::any::TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Running {
    pub fn new(readiness: Readiness) -> Self {
        Self {
            readiness,
            http: None,
            summary: String::new(),
            intake: None,
            consumer: None,
            handles: HashMap::new(),
        }
    }

    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    pub fn summary(mut self, s: impl Into<String>) -> Self {
        self.summary = s.into();
        self
    }

    /// The intake task: it must return once [`Stops::intake`](crate::Stops::intake) trips and its
    /// in-flight work (requests, the outbox's last pass) is done.
    pub fn intake(mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Self {
        self.intake = Some(Box::pin(task));
        self
    }

    /// The consumer task: it must return once [`Stops::hard`](crate::Stops::hard) trips, or once
    /// caught up after [`Stops::drain`](crate::Stops::drain) trips.
    pub fn consumer(mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> Self {
        self.consumer = Some(Box::pin(task));
        self
    }

    /// Exposes a handle of the service (a counter, a client) to whoever launched it: tests, and
    /// in time the console. One value per type.
    pub fn provide<T: Any + Send + Sync + Clone>(mut self, value: T) -> Self {
        self.handles.insert(std::any::TypeId::of::<T>(), Arc::new(value));
        self
    }

    pub(crate) fn take_handles(&mut self) -> HashMap<std::any::TypeId, Arc<dyn Any + Send + Sync>> {
        std::mem::take(&mut self.handles)
    }
}

/// A service with its app's options bound: what the supervisor starts.
pub struct BoundService {
    pub info: ServiceInfo,
    start: Box<dyn FnOnce(Context) -> BoxFuture<'static, anyhow::Result<Running>> + Send>,
}

impl BoundService {
    pub fn new<A: Send + Sync + 'static>(service: Box<dyn Service<A>>, args: A) -> Self {
        Self {
            info: service.info(),
            start: Box::new(move |ctx| Box::pin(async move { service.start(&args, &ctx).await })),
        }
    }

    pub async fn start(self, ctx: Context) -> anyhow::Result<Running> {
        (self.start)(ctx).await
    }
}
