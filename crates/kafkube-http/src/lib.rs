//! HTTP plumbing shared by every Kafkube API, on `axum`.
//!
//! - [`error`]: the `{"error": "…"}` body, and extractors ([`Json`], [`Path`], [`Query`]) that turn
//!   axum's rejections into it, so malformed input is always a 4xx JSON that says what is wrong.
//! - [`ops`]: `GET /health`, `GET /ready` (named dependency checks) and `GET /metrics`.
//! - [`server`]: binding (port 0 in tests), the common middleware stack, graceful shutdown.

pub mod error;
pub mod ops;
pub mod server;

pub use error::{ErrorBody, Json, JsonBytes, Path, Query, RequestError, ServiceError, error_response};
pub use ops::{Readiness, ReadinessCheck, ops_router};
pub use server::{HttpServer, finish_router};
