//! Options of the ETL app: every one a flag and an environment variable, with the seed's
//! variable names where the seed has them (`SOURCE_TOPIC`, `TARGET_TOPIC`, `ETL_GROUP_ID`,
//! `SINK_GROUP_ID`, `MYSQL_*`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use clap::Args;
use kafkube_store::DatabaseUrl;
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

    #[command(flatten)]
    pub cdc: CdcArgs,

    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The webhook sink's options (what the seed uses n8n for).
#[derive(Args, Clone, Debug)]
pub struct WebhookArgs {
    /// Where `etl-webhook` POSTs the enriched orders, e.g. an n8n webhook
    /// (`http://n8n:5678/webhook/orders`). Without it `etl-webhook` is off.
    #[arg(
        id = "webhook-url",
        long = "webhook-url",
        env = "WEBHOOK_URL",
        value_name = "URL",
        value_parser = parse_webhook_url
    )]
    pub url: Option<reqwest::Url>,

    /// Records per POST: 1 sends each record as one JSON object, more sends a JSON array.
    #[arg(
        id = "webhook-batch",
        long = "webhook-batch",
        env = "WEBHOOK_BATCH",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub batch: u32,

    /// POSTs in flight at once.
    #[arg(
        id = "webhook-concurrency",
        long = "webhook-concurrency",
        env = "WEBHOOK_CONCURRENCY",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub concurrency: u32,

    /// How long one POST may take before it is retried.
    #[arg(
        id = "webhook-timeout-ms",
        long = "webhook-timeout-ms",
        env = "WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,

    /// Consumer group of the webhook sink.
    #[arg(
        id = "webhook-group",
        long = "webhook-group",
        env = "WEBHOOK_GROUP_ID",
        default_value = "etl-webhook"
    )]
    pub group: String,

    /// Topic the webhook sink reads. Default: the one the sink reads.
    #[arg(id = "webhook-topic", long = "webhook-topic", env = "WEBHOOK_TOPIC")]
    pub topic: Option<String>,

    /// Value of the `Authorization` header of every POST (e.g. `Bearer …`); never logged.
    #[arg(
        id = "webhook-authorization",
        long = "webhook-authorization",
        env = "WEBHOOK_AUTHORIZATION",
        hide_env_values = true,
        value_name = "VALUE",
        value_parser = parse_secret
    )]
    pub authorization: Option<SecretString>,
}

/// The CDC service's options: Maxwell's names with a `CDC_` prefix, or Maxwell's own
/// `config.properties` (`--maxwell-config`); a flag or variable wins over the file.
#[derive(Args, Clone, Debug)]
pub struct CdcArgs {
    /// The source server, read as a replica: `mysql://USER:PASSWORD@HOST:PORT` (MySQL 8 or
    /// MariaDB 10.11; the user needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT). Without
    /// it (and without a Maxwell config naming one) `etl-cdc` is off.
    #[arg(id = "cdc-mysql-url", long = "cdc-mysql-url", env = "CDC_MYSQL_URL")]
    pub mysql_url: Option<SinkUrl>,

    /// Maxwell's `config.properties`: replication_host/port/user/password (or host/…), filter,
    /// kafka_topic, ddl_kafka_topic, producer_partition_by, output_binlog_position,
    /// replica_server_id, client_id.
    #[arg(
        id = "maxwell-config",
        long = "maxwell-config",
        env = "CDC_MAXWELL_CONFIG",
        value_name = "FILE"
    )]
    pub maxwell_config: Option<std::path::PathBuf>,

    /// Which tables: Maxwell's filter, e.g. `exclude: *.*, include: app_producer.*`.
    #[arg(id = "cdc-filter", long = "cdc-filter", env = "CDC_FILTER")]
    pub filter: Option<String>,

    /// Topic of a change; `%{database}` and `%{table}` are replaced (Maxwell's kafka_topic).
    /// Default `raw_orders`, the transform's input.
    #[arg(id = "cdc-kafka-topic", long = "cdc-kafka-topic", env = "CDC_KAFKA_TOPIC")]
    pub kafka_topic: Option<String>,

    /// Topic for schema changes (DDL statements), off by default (Maxwell's ddl_kafka_topic).
    #[arg(
        id = "cdc-ddl-kafka-topic",
        long = "cdc-ddl-kafka-topic",
        env = "CDC_DDL_KAFKA_TOPIC"
    )]
    pub ddl_kafka_topic: Option<String>,

    /// How records are keyed: `primary_key` (Maxwell's producer_partition_by; the only choice).
    #[arg(
        id = "cdc-producer-partition-by",
        long = "cdc-producer-partition-by",
        env = "CDC_PRODUCER_PARTITION_BY"
    )]
    pub producer_partition_by: Option<String>,

    /// Add `position` (binlog FILE:OFFSET) to each record (Maxwell's output_binlog_position).
    #[arg(
        id = "cdc-output-binlog-position",
        long = "cdc-output-binlog-position",
        env = "CDC_OUTPUT_BINLOG_POSITION"
    )]
    pub output_binlog_position: Option<bool>,

    /// Server id this replica registers with; unique among the source's replicas.
    #[arg(id = "cdc-server-id", long = "cdc-server-id", env = "CDC_SERVER_ID")]
    pub server_id: Option<u32>,

    /// Name under which the binlog position is stored (one per source server).
    #[arg(id = "cdc-client-id", long = "cdc-client-id", env = "CDC_CLIENT_ID")]
    pub client_id: Option<String>,

    /// Where the binlog position is stored: `sqlite:PATH` or `postgres://…`.
    #[arg(
        id = "cdc-state-url",
        long = "cdc-state-url",
        env = "CDC_STATE_URL",
        default_value = "sqlite:data/etl-cdc.db"
    )]
    pub state_url: DatabaseUrl,

    /// Largest number of changes published before their acknowledgement is awaited. Larger is
    /// faster and holds more memory: on 2 cores, 1,000 gave 75-86k changes/s at a 38 MiB peak
    /// RSS, 5,000 gave 83-113k at 56 MiB (BENCHMARKS.md).
    #[arg(id = "cdc-batch", long = "cdc-batch", env = "CDC_BATCH", default_value_t = 1000)]
    pub batch: usize,

    /// On a first start (no stored position), publish every existing row of the filtered
    /// tables as a Maxwell `bootstrap-insert` first, read in one consistent snapshot; the binlog
    /// follows from the snapshot's position.
    #[arg(
        id = "cdc-snapshot",
        long = "cdc-snapshot",
        env = "CDC_SNAPSHOT",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub snapshot: Option<bool>,
}

/// [`CdcArgs`] with the Maxwell file merged in and the defaults applied.
#[derive(Clone, Debug)]
pub struct CdcResolved {
    pub mysql_url: Option<SinkUrl>,
    pub filter: Option<String>,
    pub kafka_topic: String,
    pub ddl_kafka_topic: Option<String>,
    pub output_binlog_position: bool,
    pub server_id: u32,
    pub client_id: String,
    pub state_url: DatabaseUrl,
    pub batch: usize,
    pub snapshot: bool,
}

impl CdcArgs {
    /// Merges `--maxwell-config` under the flags and variables, and checks the result.
    pub fn resolved(&self) -> anyhow::Result<CdcResolved> {
        let file = match &self.maxwell_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--maxwell-config {}: {e}", path.display()))?;
                properties(&text)
            }
            None => BTreeMap::new(),
        };
        let get = |k: &str| file.get(k).cloned();
        let file_url = {
            let host = get("replication_host").or_else(|| get("host"));
            host.map(|host| {
                let r = |k: &str| get(&format!("replication_{k}")).or_else(|| get(k));
                let user = r("user").unwrap_or_else(|| "root".into());
                let password = r("password").map(|p| format!(":{}", percent(&p))).unwrap_or_default();
                let port = r("port").unwrap_or_else(|| "3306".into());
                SinkUrl::new(&format!("mysql://{}{password}@{host}:{port}", percent(&user)))
            })
        };
        let mysql_url = self.mysql_url.clone().or(file_url);
        if let Some(u) = &mysql_url {
            anyhow::ensure!(
                u.backend() == SinkBackend::MySql,
                "CDC_MYSQL_URL {u}: the CDC source must be mysql://USER:PASSWORD@HOST:PORT"
            );
        }
        let partition_by = self
            .producer_partition_by
            .clone()
            .or_else(|| get("producer_partition_by"));
        if let Some(p) = partition_by.filter(|p| p != "primary_key") {
            anyhow::bail!(
                "producer_partition_by={p}: only primary_key is supported (records are keyed by primary key)"
            );
        }
        let output_binlog_position = match self.output_binlog_position {
            Some(b) => b,
            None => get("output_binlog_position").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        let server_id = match self.server_id {
            Some(id) => id,
            None => get("replica_server_id")
                .map(|s| {
                    s.parse()
                        .map_err(|_| anyhow::anyhow!("replica_server_id={s}: not a number"))
                })
                .transpose()?
                .unwrap_or(6379),
        };
        Ok(CdcResolved {
            mysql_url,
            filter: self.filter.clone().or_else(|| get("filter")),
            kafka_topic: self
                .kafka_topic
                .clone()
                .or_else(|| get("kafka_topic"))
                .unwrap_or_else(|| "raw_orders".into()),
            ddl_kafka_topic: self.ddl_kafka_topic.clone().or_else(|| get("ddl_kafka_topic")),
            output_binlog_position,
            server_id,
            client_id: self
                .client_id
                .clone()
                .or_else(|| get("client_id"))
                .unwrap_or_else(|| "kafkube".into()),
            state_url: self.state_url.clone(),
            batch: self.batch.max(1),
            snapshot: self.snapshot.unwrap_or(false),
        })
    }
}

/// A Java `.properties` file's `key=value` lines (comments and blank lines skipped).
fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
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

fn parse_webhook_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{e} (expected http://HOST[:PORT]/PATH or https://…)"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err("expected http://HOST[:PORT]/PATH or https://…".into()),
    }
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
    fn reads_the_seeds_maxwell_config() {
        let dir = tempfile_dir();
        let path = dir.join("config.properties");
        std::fs::write(
            &path,
            "# Maxwell\nhost=mysql_cdc\nuser=root\npassword=root\nreplication_host=mysql_servers\n\
             replication_port=3306\nreplication_user=root\nreplication_password=root\nproducer=kafka\n\
             kafka_topic=app_producer.%{database}.%{table}\nddl_kafka_topic=maxwell_ddl_producer\n\
             producer_partition_by=primary_key\noutput_binlog_position=true\n\
             filter=exclude: mysql.*, include: app_producer.*\n",
        )
        .unwrap_or_default();
        let mut a = EtlArgs::defaults();
        a.cdc.maxwell_config = Some(path);
        let r = a.cdc.resolved().map_err(|e| e.to_string());
        let r = r.as_ref().expect("resolves");
        assert_eq!(
            r.mysql_url.as_ref().map(|u| u.expose().to_owned()).as_deref(),
            Some("mysql://root:root@mysql_servers:3306")
        );
        assert_eq!(r.kafka_topic, "app_producer.%{database}.%{table}");
        assert_eq!(r.ddl_kafka_topic.as_deref(), Some("maxwell_ddl_producer"));
        assert!(r.output_binlog_position);
        assert_eq!(r.filter.as_deref(), Some("exclude: mysql.*, include: app_producer.*"));
        // A variable wins over the file.
        a.cdc.kafka_topic = Some("raw_orders".into());
        assert_eq!(
            a.cdc.resolved().map(|r| r.kafka_topic).ok().as_deref(),
            Some("raw_orders")
        );
        a.cdc.producer_partition_by = Some("table".into());
        assert!(a.cdc.resolved().is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kafkube-etl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap_or_default();
        d
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
