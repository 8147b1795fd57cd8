//! Kafkube's foundation: what every crate and app shares and nothing Kafka- or SQL-specific.
//!
//! - [`telemetry`]: `tracing` subscriber and the Prometheus recorder behind `/metrics`.
//! - [`shutdown`]: one cancellation token per process, tripped by Ctrl-C or SIGTERM.
//! - [`backoff`]: the retry schedule used by consumers, the outbox relay and start-up connects.
//! - [`outage`]: an unreachable dependency said once with its cause, not once per retry.
//! - [`args`]: defaults of the apps' option structs.
//! - [`time`]: epoch helpers, because event timestamps cross process boundaries as numbers.

pub mod args;
pub mod backoff;
pub mod outage;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use backoff::Backoff;
pub use outage::Outage;
pub use shutdown::Shutdown;
