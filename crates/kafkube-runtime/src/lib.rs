//! The shape of a Kafkube app, and the one supervisor that runs apps.
//!
//! - [`App`]: one value per app: its options, topics, databases and [`Service`]s. The binary keeps
//!   one list of apps ([`AppEntry`] is the object-safe view of it); `up`, `serve <service>`,
//!   `migrate`, `broker` and `--help` are derived from that list.
//! - [`Service`]: a named part of an app that runs in its own process in production (`serve`)
//!   or beside the others (`up`). [`Service::start`] connects, migrates and binds, and returns a
//!   [`Running`]: its readiness checks and its tasks (HTTP intake, consumers).
//! - [`Context`]: what a service is handed: the process's one producer, the Kafka settings, the
//!   database pool options and the stop signals.
//! - [`Supervisor`]: starts services in order, waits until every one is ready, and on
//!   SIGINT/SIGTERM drains in order: intake stops (outboxes flush as it does), consumers catch
//!   up (in `up`) or finish their batch (in `serve`), then the broker stops. A second signal stops
//!   at once; a service that dies stops the rest with a non-zero exit.

pub mod app;
pub mod context;
pub mod service;
pub mod supervisor;

pub use app::{App, AppEntry, Configured, Database};
pub use context::{Context, Stops};
pub use service::{BoundService, Kind, Running, Service, ServiceInfo};
pub use supervisor::{Launched, OpsPort, Ready, Report, StopMode, Supervisor};

/// Re-exported so apps implement [`Service`] with the same macro.
pub use async_trait::async_trait;

/// `http://localhost:PORT` for a wildcard bind, `http://ADDR` otherwise: what a person can open.
pub fn base_url(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}
