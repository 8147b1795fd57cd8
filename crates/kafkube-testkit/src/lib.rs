//! Real infrastructure for Kafkube's tests: a Kafka broker and databases, each test with its own
//! topics, groups and database so tests run in parallel without seeing each other.
//!
//! - Kafka: the embedded broker (librdkafka's mock cluster) by default; set
//!   `KAFKUBE_TEST_KAFKA_BROKERS=host:9092` to run the same tests against a real cluster (tests
//!   that need to take the broker down are then skipped, saying so).
//! - PostgreSQL: `KAFKUBE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   on which each test creates a database of its own. `scripts/test` makes sure it answers.
//! - MySQL/MariaDB: `KAFKUBE_TEST_MYSQL_URL` (default `mysql://kafkube:kafkube@127.0.0.1:23306`, the
//!   private MariaDB `scripts/test` starts with `scripts/mariadb`), a database per test.
//! - SQLite: a file in a fresh temporary directory.
//! - SMTP: [`TestSmtp`], a real SMTP server (aiosmtpd) on a free port, with what it received.
//! - A browser: [`browser::ChromeDriver`], headless Chromium over WebDriver.
//!
//! No test is skipped for want of PostgreSQL: a missing server is a failure that says what to do.
//!
//! Services run in tests as the supervisor runs them ([`spawn`]): through their `Service`
//! implementation, on port 0, with a context of their own.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: panics are the failure report

pub mod browser;
mod db;
mod http;
mod kafka;
mod mysql;
mod service;
mod smtp;

use std::time::{Duration, Instant};

pub use db::{TestDb, postgres_url};
pub use http::{client as http_client, get_json, get_text, post_json};
pub use kafka::{ReadRecord, TestKafka};
pub use kafkube_store::Backend;
pub use mysql::{TestMySql, mysql_is_private, mysql_url, restart_mysql};
pub use service::{Spawned, spawn};
pub use smtp::{ReceivedMail, TestSmtp};

/// Shows the services' logs in the test's output (captured unless `--nocapture`, printed for a
/// failed test), filtered by `RUST_LOG` (default `warn`). For tests where a failure is only
/// understood with the services' own account of it; once per test binary.
pub fn show_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Waits until `f` returns `Some`, polling every 50 ms, up to `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Declares one test per backend from one body: `backend_tests!(my_check)` turns
/// `async fn my_check(backend: Backend)` into `my_check::sqlite` and `my_check::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }
            }
        )*
    };
}
