//! The students app (seed `000`, "Kafkube Experimental").
//!
//! - [`api`]: `/api/mahasiswa` CRUD on port 3000. Every change writes its row and its event in
//!   one transaction (the outbox); the relay publishes the event to `mahasiswa_events` at once.
//! - [`logger`]: the event logger, a consumer group writing each event exactly once to
//!   `event_logs` in the log database, with Kafka and processing timestamps.
//! - [`latency`]: `kafkube latency`, the seed's latency test as a command.
//! - [`bench`]: `kafkube bench event-logger`, the logger's throughput benchmark.

pub mod api;
pub mod bench;
pub mod config;
pub mod latency;
pub mod logger;
pub mod model;
pub mod store;

pub use api::StudentsApi;
pub use config::StudentsArgs;
pub use logger::EventLogger;

use kafkube_bus::TopicSpec;
use kafkube_runtime::{App, Database, Service};
use kafkube_store::Migrations;

/// The students app, as the binary lists it.
pub struct Students;

impl App for Students {
    type Args = StudentsArgs;

    fn name(&self) -> &'static str {
        "students"
    }

    fn about(&self) -> &'static str {
        "students REST API with an outbox, and the event logger (seed 000)"
    }

    fn topics(&self, args: &StudentsArgs) -> Vec<TopicSpec> {
        topics(args)
    }

    fn databases(&self, args: &StudentsArgs) -> Vec<Database> {
        vec![
            Database {
                label: "students",
                url: args.db.database_url.clone(),
                migrations: main_migrations().into(),
            },
            Database {
                label: "event log",
                url: args.db.log.url.clone(),
                migrations: vec![log_migrations()],
            },
        ]
    }

    fn services(&self) -> Vec<Box<dyn Service<StudentsArgs>>> {
        vec![Box::new(StudentsApi), Box::new(EventLogger)]
    }
}

/// Migrations of the main database (students and the outbox).
pub fn main_migrations() -> [Migrations; 2] {
    [
        kafkube_outbox::migrations(),
        Migrations {
            name: "students",
            sqlite: sqlx::migrate!("./migrations/main/sqlite"),
            postgres: sqlx::migrate!("./migrations/main/postgres"),
        },
    ]
}

/// Migrations of the log database (`event_logs`).
pub fn log_migrations() -> Migrations {
    Migrations {
        name: "students-log",
        sqlite: sqlx::migrate!("./migrations/log/sqlite"),
        postgres: sqlx::migrate!("./migrations/log/postgres"),
    }
}

/// A progress bar for long commands: `{label} {pos}/{len} [bar] {rate}`.
pub(crate) fn progress_bar(len: u64, label: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {label} {{pos}}/{{len}} [{{bar:30}}] {{per_sec}} {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    indicatif::ProgressBar::new(len).with_style(style)
}

/// The topics the app needs.
pub fn topics(args: &StudentsArgs) -> Vec<TopicSpec> {
    TopicSpec::with_dlq(args.topic.clone(), args.partitions).to_vec()
}
