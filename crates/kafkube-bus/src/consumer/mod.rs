//! The consumer runner: Kafkube's one consumer loop.
//!
//! Apps implement [`Handler`] for a *batch* of records and report what happened; the runner does
//! the rest, the same way for every app:
//!
//! - **at-least-once with effects first**: a record's offset is stored (and later auto-committed)
//!   only after the handler returned `Ok` — i.e. after its database transaction committed — and
//!   after everything the handler asked to publish was acknowledged by the broker;
//! - **retry**: [`HandlerError::Transient`] (database or broker down) is retried with backoff for
//!   as long as it takes, without committing; [`HandlerError::Permanent`] is retried a few times,
//!   then the batch is split and each record retried alone, so one poison record cannot block or
//!   take down its neighbours;
//! - **dead letters**: records the handler rejects, and records that still fail alone, go to
//!   `<topic>.dlq` with the error and their origin in headers, and are committed past;
//! - **shutdown**: finish the batch in hand, commit what was stored, leave the group;
//!   **drain**: keep consuming until every assigned partition is caught up, then stop.

//!
//! The parts: [`Handler`] and [`HandlerError`] (`handler`), the layers that wrap every handler
//! with tracing, retry and dead-lettering ([`layers`]), [`Record`] (`record`),
//! [`ConsumerSettings`] (`settings`), the loop (`runner`), leaving a group with a bound on the
//! wait ([`close`]), dead-letter records (`dead_letter`) and
//! librdkafka's callbacks (`context`).

pub mod close;
mod context;
mod dead_letter;
mod handler;
mod lag;
pub mod layers;
mod record;
mod runner;
mod settings;

pub(crate) use context::log_librdkafka;
pub use handler::{BatchOutput, BoxError, Handler, HandlerError};
pub use record::Record;
pub use runner::{ConsumerRunner, RunStats};
pub use settings::{ConsumerSettings, default_instance_name};
