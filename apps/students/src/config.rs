//! Options of the students app (flags and environment variables, seed names where they exist).

use std::net::IpAddr;

use clap::Args;
use kafkube_store::DatabaseUrl;

#[derive(Args, Clone, Debug)]
pub struct StudentsArgs {
    /// Port of the students API.
    #[arg(long = "students-port", env = "STUDENTS_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address the students API binds to.
    #[arg(long = "students-host", env = "STUDENTS_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    #[command(flatten)]
    pub db: StudentsDbArgs,

    /// Topic the students' change events are published to.
    #[arg(long = "students-topic", env = "MAHASISWA_TOPIC", default_value = "mahasiswa_events")]
    pub topic: String,

    /// Partitions of the topic when Kafkube creates it.
    #[arg(long = "students-partitions", env = "MAHASISWA_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,

    /// Consumer group of the event logger; replicas in one group share the partitions.
    #[arg(
        long = "event-logger-group",
        env = "EVENT_LOGGER_GROUP_ID",
        default_value = "event-logger"
    )]
    pub logger_group: String,

    /// Largest batch of events the logger writes in one transaction.
    #[arg(long = "event-logger-batch", env = "EVENT_LOGGER_BATCH", default_value_t = 1000)]
    pub logger_batch: usize,

    /// Name of this logger instance in `event_logs.consumer` (default: host and pid).
    #[arg(long = "event-logger-instance", env = "EVENT_LOGGER_INSTANCE")]
    pub logger_instance: Option<String>,
}

/// The students app's two databases.
#[derive(Args, Clone, Debug)]
pub struct StudentsDbArgs {
    /// Main database (students and their outbox): `sqlite:PATH` or `postgres://…`.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite:data/students.db"
    )]
    pub database_url: DatabaseUrl,

    #[command(flatten)]
    pub log: LogDatabaseArgs,
}

/// The log database, where the event logger writes `event_logs` and `kafkube latency` reads them:
/// declared once, here.
#[derive(Args, Clone, Debug)]
pub struct LogDatabaseArgs {
    /// Log database, where the event logger writes `event_logs`: `sqlite:PATH` or `postgres://…`.
    #[arg(
        id = "log-database-url",
        long = "log-database-url",
        env = "LOG_DATABASE_URL",
        default_value = "sqlite:data/event-logs.db"
    )]
    pub url: DatabaseUrl,
}

impl StudentsArgs {
    /// Defaults, as if no flag were given (tests start from this).
    pub fn defaults() -> Self {
        kafkube_core::args::defaults()
    }
}
