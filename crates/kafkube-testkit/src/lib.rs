//! Real infrastructure for Kafkube's tests: a Kafka broker and databases, each test with its own
//! topics, groups and database so tests run in parallel without seeing each other.
//!
//! - Kafka: the embedded broker (librdkafka's mock cluster) by default; set
//!   `KAFKUBE_TEST_KAFKA_BROKERS=host:9092` to run the same tests against a real cluster (tests
//!   that need to take the broker down are then skipped, saying so).
//! - PostgreSQL: `KAFKUBE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   on which each test creates a database of its own. `scripts/test` makes sure it answers.
//! - SQLite: a file in a fresh temporary directory.
//!
//! No test is skipped for want of PostgreSQL: a missing server is a failure that says what to do.
//!
//! Services run in tests as the supervisor runs them ([`spawn`]): through their `Service`
//! implementation, on port 0, with a context of their own.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: panics are the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use kafkube_bus::embedded::EmbeddedBrokerGuard;
use kafkube_bus::{EmbeddedBroker, KafkaConfig, TopicSpec, ensure_topics};
use kafkube_runtime::{BoundService, Context, Launched, Service, Stops};
pub use kafkube_store::Backend;
use kafkube_store::{Db, DbArgs};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The broker of a test.
#[derive(Clone)]
pub struct TestKafka {
    config: KafkaConfig,
    embedded: Option<Arc<EmbeddedBrokerGuard>>,
}

impl TestKafka {
    /// A real cluster from `KAFKUBE_TEST_KAFKA_BROKERS`, or a fresh embedded broker.
    pub fn start() -> Self {
        let (config, embedded) = match std::env::var("KAFKUBE_TEST_KAFKA_BROKERS") {
            Ok(b) if !b.trim().is_empty() => (KafkaConfig::new(b), None),
            _ => {
                let guard = EmbeddedBroker::start(1).expect("start the embedded broker");
                (KafkaConfig::for_embedded(&guard), Some(Arc::new(guard)))
            }
        };
        let config = config
            .with_session_timeout(Duration::from_secs(6))
            .with_message_timeout(Duration::from_secs(10));
        Self { config, embedded }
    }

    pub fn config(&self) -> KafkaConfig {
        self.config.clone()
    }

    pub fn brokers(&self) -> &str {
        &self.config.brokers
    }

    /// The embedded broker, for tests that take it down; `None` against a real cluster.
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        self.embedded.as_deref().map(|g| &**g)
    }

    /// Creates a uniquely named topic (and its `.dlq`) and returns its name.
    pub async fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = unique(prefix);
        ensure_topics(&self.config, &TopicSpec::with_dlq(name.clone(), partitions))
            .await
            .expect("create topic");
        name
    }

    /// Reads `topic` expecting exactly `expected` records: waits up to `timeout` for them, then
    /// 1.5 s more so that a duplicate or stray record would show up too. Returns all it read.
    pub async fn read_exact(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<ReadRecord> {
        self.read_inner(topic, expected, timeout, Duration::from_millis(1500))
            .await
    }

    /// Reads `topic` from the beginning in a fresh group until `count` records arrived or
    /// `timeout` passed; returns what arrived.
    pub async fn read(&self, topic: &str, count: usize, timeout: Duration) -> Vec<ReadRecord> {
        self.read_inner(topic, count, timeout, Duration::ZERO).await
    }

    async fn read_inner(&self, topic: &str, count: usize, timeout: Duration, settle: Duration) -> Vec<ReadRecord> {
        let consumer: StreamConsumer = self
            .config
            .consumer_config(&unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("create reader");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut deadline = Instant::now() + timeout;
        let mut settling = false;
        let mut out = Vec::new();
        loop {
            if out.len() >= count && !settling {
                if settle.is_zero() {
                    break;
                }
                settling = true;
                deadline = Instant::now() + settle;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(m)) => out.push(ReadRecord {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: {
                        use rdkafka::message::Headers;
                        m.headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (
                                            h.key.to_owned(),
                                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    },
                    partition: m.partition(),
                }),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => break,
            }
        }
        out
    }
}

/// A record as a test sees it.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
}

impl ReadRecord {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("record payload is JSON")
    }

    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// A database of a test: a temporary SQLite file or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: String,
    pub db: Db,
    /// The PostgreSQL database's name (`None` for SQLite).
    pub pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("test.db").display());
        let db = Db::connect(&url, &DbArgs::default()).await.expect("open SQLite");
        Self {
            url,
            db,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let admin_url = postgres_url();
        let admin = Db::connect(&admin_url, &DbArgs::default()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). Run the tests with `scripts/test`, \
                 which starts one, or set KAFKUBE_TEST_POSTGRES_URL."
            )
        });
        let name = unique("kt");
        let Db::Postgres(pool) = &admin else {
            panic!("KAFKUBE_TEST_POSTGRES_URL must be postgres://")
        };
        kafkube_store::sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(pool)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let db = Db::connect(&url, &DbArgs::default())
            .await
            .expect("connect to test database");
        Self {
            url,
            db,
            pg_name: Some(name),
            _dir: None,
        }
    }

    /// PostgreSQL only: refuses new connections to this database and cuts the open ones (`false`),
    /// or lets them in again (`true`) — a database outage as clients see it.
    pub async fn set_reachable(&self, up: bool) {
        let name = self.pg_name.as_deref().expect("outages are simulated on PostgreSQL");
        let admin = Db::connect(&postgres_url(), &DbArgs::default())
            .await
            .expect("admin connection");
        let Db::Postgres(pool) = &admin else { unreachable!() };
        kafkube_store::sqlx::query(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {up}"))
            .execute(pool)
            .await
            .expect("alter database");
        if !up {
            kafkube_store::sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .execute(pool)
                .await
                .expect("terminate connections");
        }
        admin.close().await;
    }
}

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("KAFKUBE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

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
    let launched = Launched::launch(bound, &ctx, &Arc::default()).await?;
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
    pub async fn stop(mut self) {
        self.ctx.stops.intake.trigger();
        self.launched.join_intake().await.expect("intake ended cleanly");
        self.ctx.stops.hard.trigger();
        self.launched.join_consumer().await.expect("consumer ended cleanly");
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

/// `GET url` and its JSON body (the test fails with the URL if either step does).
pub async fn get_json(url: &str) -> serde_json::Value {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// `GET url` and its body as text (`/metrics`).
pub async fn get_text(url: &str) -> String {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `POST url` with a JSON body; the status and the JSON body of the answer (`null` if empty).
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
