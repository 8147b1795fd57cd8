//! Options of the ETL app: every one a flag and an environment variable, with the seed's
//! variable names where the seed has them (`SOURCE_TOPIC`, `TARGET_TOPIC`, `ETL_GROUP_ID`,
//! `SINK_GROUP_ID`, `MYSQL_*`).

use std::fmt;
use std::str::FromStr;

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

#[derive(Args, Clone, Debug)]
pub struct EtlArgs {
    /// Topics the transform reads: plain orders and/or Maxwell change records (comma-separated).
    /// The seed's transform and sink both call their input `SOURCE_TOPIC`; see `--etl-sink-topic`.
    #[arg(
        id = "etl-source-topic",
        long = "etl-source-topic",
        env = "SOURCE_TOPIC",
        value_delimiter = ',',
        default_value = "raw_orders"
    )]
    pub source_topics: Vec<String>,

    /// Topic the transform writes enriched orders to (and the sink reads by default).
    #[arg(
        id = "etl-target-topic",
        long = "etl-target-topic",
        env = "TARGET_TOPIC",
        default_value = "enriched_orders"
    )]
    pub target_topic: String,

    /// Consumer group of the transform.
    #[arg(
        id = "etl-group",
        long = "etl-group",
        env = "ETL_GROUP_ID",
        default_value = "etl-workers"
    )]
    pub transform_group: String,

    /// Topic the sink reads. Default: the transform's target topic; when only `SOURCE_TOPIC` is
    /// set (the seed's sink configuration, which has no `TARGET_TOPIC`), that one.
    #[arg(id = "etl-sink-topic", long = "etl-sink-topic", env = "SINK_SOURCE_TOPIC")]
    pub sink_topic: Option<String>,

    /// Consumer group of the sink.
    #[arg(
        id = "etl-sink-group",
        long = "etl-sink-group",
        env = "SINK_GROUP_ID",
        default_value = "sink-mysql-workers"
    )]
    pub sink_group: String,

    /// Partitions of the topics when Kafkube creates them.
    #[arg(
        id = "etl-partitions",
        long = "etl-partitions",
        env = "ETL_PARTITIONS",
        default_value_t = 4
    )]
    pub partitions: i32,

    /// Largest batch the transform or the sink handles at once (one statement per batch).
    #[arg(id = "etl-batch", long = "etl-batch", env = "ETL_BATCH", default_value_t = 2000)]
    pub batch: usize,

    #[command(flatten)]
    pub sink: SinkDbArgs,
}

/// Where the sink writes: `SINK_DATABASE_URL`, or the seed's `MYSQL_*` variables, or SQLite.
#[derive(Args, Clone, Debug)]
pub struct SinkDbArgs {
    /// Sink database: `mysql://USER:PASSWORD@HOST:PORT/DB` (MySQL or MariaDB),
    /// `postgres://…` or `sqlite:PATH`. Default: built from `MYSQL_HOST` & co. when
    /// `MYSQL_HOST` is set, else `sqlite:data/etl.db`.
    #[arg(id = "sink-database-url", long = "sink-database-url", env = "SINK_DATABASE_URL")]
    pub url: Option<SinkUrl>,

    /// MySQL host of the sink (the seed's variable; used when no `SINK_DATABASE_URL` is given).
    #[arg(id = "mysql-host", long = "mysql-host", env = "MYSQL_HOST")]
    pub mysql_host: Option<String>,

    #[arg(id = "mysql-port", long = "mysql-port", env = "MYSQL_PORT", default_value_t = 3306)]
    pub mysql_port: u16,

    #[arg(id = "mysql-user", long = "mysql-user", env = "MYSQL_USER", default_value = "root")]
    pub mysql_user: String,

    #[arg(id = "mysql-password", long = "mysql-password", env = "MYSQL_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub mysql_password: Option<SecretString>,

    #[arg(
        id = "mysql-database",
        long = "mysql-database",
        env = "MYSQL_DATABASE",
        default_value = "app_consumer"
    )]
    pub mysql_database: String,

    /// Table the sink upserts into (created when missing).
    #[arg(id = "mysql-table", long = "mysql-table", env = "MYSQL_TABLE", default_value = "orders", value_parser = table_name)]
    pub table: String,
}

impl EtlArgs {
    /// Defaults, as if no flag were given (tests start from this).
    pub fn defaults() -> Self {
        kafkube_core::args::defaults()
    }

    /// The topic the sink reads (see `--etl-sink-topic`).
    pub fn sink_topic(&self) -> String {
        if let Some(t) = &self.sink_topic {
            return t.clone();
        }
        let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
        match self.source_topics.as_slice() {
            [only] if set("SOURCE_TOPIC") && !set("TARGET_TOPIC") => only.clone(),
            _ => self.target_topic.clone(),
        }
    }
}

impl SinkDbArgs {
    /// The sink database's URL, from `SINK_DATABASE_URL`, `MYSQL_*` or the SQLite default.
    pub fn url(&self) -> SinkUrl {
        if let Some(u) = &self.url {
            return u.clone();
        }
        let Some(host) = &self.mysql_host else {
            return SinkUrl::new("sqlite:data/etl.db");
        };
        let password = self
            .mysql_password
            .as_ref()
            .map(|p| format!(":{}", percent(p.expose_secret())))
            .unwrap_or_default();
        SinkUrl::new(&format!(
            "mysql://{}{password}@{host}:{}/{}",
            percent(&self.mysql_user),
            self.mysql_port,
            self.mysql_database
        ))
    }
}

/// Percent-encodes what may not appear in a URL's user or password as is.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

fn table_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a plain table name (letters, digits and _)"))
    }
}

/// Which database the sink writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkBackend {
    Sqlite,
    Postgres,
    MySql,
}

/// The sink's database URL; like [`kafkube_store::DatabaseUrl`] it is never shown with its
/// password, and it also takes `mysql://` / `mariadb://`.
#[derive(Clone)]
pub struct SinkUrl(SecretString);

impl SinkUrl {
    fn new(s: &str) -> Self {
        Self(SecretString::from(s.to_owned()))
    }

    /// The URL as given, for the driver only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn backend(&self) -> SinkBackend {
        backend_of(self.expose()).unwrap_or(SinkBackend::Sqlite)
    }
}

fn backend_of(url: &str) -> Result<SinkBackend, String> {
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(SinkBackend::MySql)
    } else if url.starts_with("sqlite:") {
        Ok(SinkBackend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(SinkBackend::Postgres)
    } else {
        Err(format!(
            "`{}`: expected mysql://USER:PASSWORD@HOST:PORT/DB, postgres://… or sqlite:PATH",
            kafkube_store::db::redact(url)
        ))
    }
}

impl FromStr for SinkUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        backend_of(s)?;
        Ok(Self::new(s))
    }
}

impl fmt::Display for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&kafkube_store::db::redact(self.expose()))
    }
}

impl fmt::Debug for SinkUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_url_from_the_seeds_mysql_variables() {
        let mut a = EtlArgs::defaults();
        assert_eq!(a.sink.url().expose(), "sqlite:data/etl.db");
        a.sink.mysql_host = Some("mysql_servers".into());
        a.sink.mysql_password = Some(SecretString::from("r@ot:pw"));
        let url = a.sink.url();
        assert_eq!(url.expose(), "mysql://root:r%40ot%3Apw@mysql_servers:3306/app_consumer");
        assert_eq!(url.to_string(), "mysql://root:***@mysql_servers:3306/app_consumer");
        assert_eq!(url.backend(), SinkBackend::MySql);
    }

    #[test]
    fn refuses_bad_urls_and_table_names() {
        assert!("oracle://x".parse::<SinkUrl>().is_err());
        assert!("mariadb://u:p@h/db".parse::<SinkUrl>().is_ok());
        assert!(table_name("orders; DROP TABLE x").is_err());
        assert!(table_name("1orders").is_err());
        assert_eq!(table_name("orders_2").as_deref(), Ok("orders_2"));
    }
}
