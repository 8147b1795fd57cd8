//! Connection settings shared by every producer and consumer of a process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

use crate::embedded::{EmbeddedBroker, EmbeddedBrokerGuard};
use crate::{BusError, Result};

/// Kafka connection options (flags and environment variables).
#[derive(Args, Clone, Debug, Default)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port…]`. When unset, `kafkube up` starts the
    /// embedded in-memory broker; `kafkube serve` requires it.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", value_name = "HOSTS")]
    pub brokers: Option<String>,

    /// The restaurants seed's name for the bootstrap servers, used when `KAFKA_BROKERS` is unset.
    #[arg(long = "bootstrap-svr", env = "BOOTSTRAP_SVR", value_name = "HOSTS", hide = true)]
    pub bootstrap_svr: Option<String>,

    /// How long a produced message may wait for the broker before it counts as failed, in seconds
    /// (librdkafka `message.timeout.ms`). Failed outbox sends are retried, never dropped.
    #[arg(
        long = "kafka-timeout",
        env = "KAFKA_TIMEOUT",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub timeout_secs: u64,

    /// Consumer group session timeout in milliseconds: how soon a crashed consumer's partitions
    /// move to a survivor (the broker must allow it; Kafka's minimum is 6000).
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u64,

    /// Extra librdkafka properties, `key=value`, repeatable or comma-separated in the variable
    /// (for example `security.protocol=SASL_SSL,sasl.mechanism=PLAIN`).
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,

    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

/// How Kafkube proves who it is to the brokers and checks who they are: TLS and SASL, as
/// managed and production clusters require (Strimzi's TLS listeners, cloud services).
#[derive(Args, Clone, Debug, Default)]
pub struct KafkaSecurityArgs {
    /// How to talk to the brokers (librdkafka `security.protocol`). `sasl_ssl` for SASL over TLS
    /// (most managed clusters), `ssl` for TLS with or without a client certificate.
    #[arg(
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        value_name = "PROTOCOL"
    )]
    pub protocol: Option<SecurityProtocol>,

    /// SASL mechanism, with `sasl_ssl` or `sasl_plaintext` (default SCRAM-SHA-512).
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        value_name = "MECHANISM"
    )]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name.
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME", value_name = "USER")]
    pub sasl_username: Option<String>,

    /// SASL password (never logged or shown; prefer the variable to the flag, which `ps` shows).
    #[arg(long = "kafka-sasl-password", env = "KAFKA_SASL_PASSWORD", hide_env_values = true, value_name = "PASSWORD", value_parser = parse_secret)]
    pub sasl_password: Option<SecretString>,

    /// PEM file of the CA certificate(s) that signed the brokers' certificates. Without it the
    /// system's trusted CAs are used.
    #[arg(long = "kafka-ca", env = "KAFKA_SSL_CA_LOCATION", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// PEM client certificate, for brokers that authenticate clients by TLS (mutual TLS).
    #[arg(
        long = "kafka-client-cert",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,

    /// PEM private key of the client certificate.
    #[arg(
        long = "kafka-client-key",
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
}

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanism` (those that need no extra system library).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN", alias = "plain")]
    Plain,
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

fn parse_secret(s: &str) -> std::result::Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

impl KafkaSecurityArgs {
    /// Anything set at all?
    pub fn is_set(&self) -> bool {
        self.protocol.is_some()
            || self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
            || self.ca.is_some()
            || self.cert.is_some()
    }

    /// The same options as the environment variables a `kafkube` child process reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            (
                "KAFKA_SECURITY_PROTOCOL",
                self.protocol.map(|p| p.as_librdkafka().to_owned()),
            ),
            (
                "KAFKA_SASL_MECHANISM",
                self.sasl_mechanism.map(|m| m.as_librdkafka().to_owned()),
            ),
            ("KAFKA_SASL_USERNAME", self.sasl_username.clone()),
            (
                "KAFKA_SASL_PASSWORD",
                self.sasl_password.as_ref().map(|p| p.expose_secret().to_owned()),
            ),
            ("KAFKA_SSL_CA_LOCATION", path(&self.ca)),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", path(&self.cert)),
            ("KAFKA_SSL_KEY_LOCATION", path(&self.key)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }

    /// Checks that the options fit together and that the files exist, and returns the
    /// librdkafka properties (the password separately, to keep it out of logs).
    fn resolve(&self) -> Result<(BTreeMap<String, String>, Option<SecretString>)> {
        let mut props = BTreeMap::new();
        let has_sasl_options =
            self.sasl_mechanism.is_some() || self.sasl_username.is_some() || self.sasl_password.is_some();
        let has_tls_options = self.ca.is_some() || self.cert.is_some();
        let protocol = match self.protocol {
            Some(p) => p,
            None if has_sasl_options || has_tls_options => {
                return Err(BusError::Config(
                    "Kafka TLS or SASL options are set but KAFKA_SECURITY_PROTOCOL is not: set it to sasl_ssl (SASL over TLS), ssl or sasl_plaintext".into(),
                ));
            }
            None => return Ok((props, None)),
        };
        props.insert("security.protocol".into(), protocol.as_librdkafka().into());
        if has_sasl_options && !protocol.sasl() {
            return Err(BusError::Config(format!(
                "KAFKA_SASL_* options are set but KAFKA_SECURITY_PROTOCOL is {}: use sasl_ssl or sasl_plaintext",
                protocol.as_librdkafka()
            )));
        }
        if has_tls_options && !protocol.tls() {
            return Err(BusError::Config(format!(
                "a CA or client certificate is set but KAFKA_SECURITY_PROTOCOL is {}: use ssl or sasl_ssl",
                protocol.as_librdkafka()
            )));
        }
        let mut password = None;
        if protocol.sasl() {
            let (Some(user), Some(pass)) = (&self.sasl_username, &self.sasl_password) else {
                return Err(BusError::Config(format!(
                    "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                    protocol.as_librdkafka()
                )));
            };
            let mechanism = self.sasl_mechanism.unwrap_or(SaslMechanism::ScramSha512);
            props.insert("sasl.mechanism".into(), mechanism.as_librdkafka().into());
            props.insert("sasl.username".into(), user.clone());
            password = Some(pass.clone());
        }
        for (what, path, key) in [
            ("KAFKA_SSL_CA_LOCATION", &self.ca, "ssl.ca.location"),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &self.cert, "ssl.certificate.location"),
            ("KAFKA_SSL_KEY_LOCATION", &self.key, "ssl.key.location"),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return Err(BusError::Config(format!("{what}: no such file {}", path.display())));
                }
                props.insert(key.into(), path.display().to_string());
            }
        }
        Ok((props, password))
    }
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// Resolved connection settings. Cheap to clone; every client of the process is built from it.
/// Its `Debug` output masks passwords and secrets.
#[derive(Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub message_timeout: Duration,
    pub session_timeout: Duration,
    /// librdkafka properties applied last, so they override Kafkube's defaults (the security
    /// options among them).
    pub options: BTreeMap<String, String>,
    /// The SASL password, applied with the options.
    pub sasl_password: Option<SecretString>,
    /// The embedded broker behind `brokers`, when it runs in this process: topics are created
    /// through its handle (it has no Admin API). Set by [`Cluster::resolve`] and the tests.
    pub embedded: Option<EmbeddedBroker>,
}

/// Does this librdkafka property hold a secret?
fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".pem") || key == "sasl.jaas.config"
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("message_timeout", &self.message_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("options", &options)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            message_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            options: BTreeMap::new(),
            sasl_password: None,
            embedded: None,
        }
    }

    /// Settings for the embedded broker `broker` of this process.
    pub fn for_embedded(broker: &EmbeddedBroker) -> Self {
        Self {
            embedded: Some(broker.clone()),
            ..Self::new(broker.bootstrap_servers())
        }
    }

    /// Settings from the command line; `brokers` is the resolved address (from `--kafka-brokers`
    /// or the embedded broker).
    pub fn from_args(args: &KafkaArgs, brokers: impl Into<String>) -> Result<Self> {
        let brokers = brokers.into();
        if brokers.trim().is_empty() {
            return Err(BusError::Config(
                "no Kafka bootstrap servers given (set KAFKA_BROKERS)".into(),
            ));
        }
        let (mut options, sasl_password) = args.security.resolve()?;
        // KAFKA_OPTIONS is applied after the security options, so it can refine them.
        options.extend(args.options.iter().cloned());
        Ok(Self {
            brokers,
            message_timeout: Duration::from_secs(args.timeout_secs.max(1)),
            session_timeout: Duration::from_millis(args.session_timeout_ms),
            options,
            sasl_password,
            embedded: None,
        })
    }

    /// Is the connection to the brokers encrypted or authenticated?
    pub fn is_secured(&self) -> bool {
        self.options
            .get("security.protocol")
            .is_some_and(|p| !p.eq_ignore_ascii_case("plaintext"))
    }

    pub fn with_message_timeout(mut self, t: Duration) -> Self {
        self.message_timeout = t;
        self
    }

    pub fn with_session_timeout(mut self, t: Duration) -> Self {
        self.session_timeout = t;
        self
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "kafkube")
            // Reconnect quickly after an outage; the defaults back off to 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3");
        c
    }

    fn apply_overrides(&self, mut c: ClientConfig) -> ClientConfig {
        if let Some(password) = &self.sasl_password {
            c.set("sasl.password", password.expose_secret());
        }
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }

    /// Idempotent producer: `acks=all`, no duplicates or reordering from internal retries,
    /// no linger: Kafkube's events are latency-sensitive, and messages queued while a request is
    /// in flight are still batched (raise it with `KAFKA_OPTIONS=linger.ms=5` for bulk loads).
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string())
            .set("compression.type", "none");
        self.apply_overrides(c)
    }

    /// Consumer in `group`: offsets are *stored* by Kafkube after each effect commits and
    /// auto-committed from there (`enable.auto.offset.store=false`), so nothing is committed
    /// before it was processed.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 5).max(100).to_string(),
            )
            // The broker answers a waiting fetch as soon as data arrives (the embedded one too,
            // with Kafkube's patch of the mock cluster), so this bounds only idle polling: at
            // librdkafka's default of 500 ms an idle `up` (five consumers) costs the broker a
            // fifth of the fetches it did at 100 ms, and no record waits for it.
            .set("fetch.wait.max.ms", "500")
            .set("allow.auto.create.topics", "true");
        self.apply_overrides(c)
    }

    /// Admin and metadata clients.
    pub fn admin_config(&self) -> ClientConfig {
        self.apply_overrides(self.base())
    }
}

/// The broker a process talks to, decided once: the one given by `KAFKA_BROKERS`, or an embedded
/// broker started here (only where the command allows it: `up`, `broker`, the benchmarks).
#[derive(Debug)]
pub struct Cluster {
    pub config: KafkaConfig,
    /// Owns the embedded broker; dropping it stops the broker, so it is dropped last.
    embedded: Option<EmbeddedBrokerGuard>,
}

impl Cluster {
    /// Uses `args.brokers` when given; otherwise starts an embedded broker if `embedded_allowed`,
    /// else fails with an error that says what to set.
    pub fn resolve(args: &KafkaArgs, embedded_allowed: bool) -> Result<Self> {
        match args.brokers.as_ref().or(args.bootstrap_svr.as_ref()) {
            Some(brokers) => Ok(Self {
                config: KafkaConfig::from_args(args, brokers.clone())?,
                embedded: None,
            }),
            None if embedded_allowed => Self::embedded(args, 1),
            None => Err(BusError::Config(
                "no broker given: set KAFKA_BROKERS (or --kafka-brokers); `kafkube up` and \
                 `kafkube broker` run an embedded one"
                    .into(),
            )),
        }
    }

    /// Starts an embedded broker of `brokers` nodes with the other settings of `args`. The
    /// embedded broker speaks plaintext: TLS and SASL options are ignored (with a warning).
    pub fn embedded(args: &KafkaArgs, brokers: i32) -> Result<Self> {
        let mut args = args.clone();
        if args.security.is_set() {
            tracing::warn!(
                "KAFKA_SECURITY_PROTOCOL and the other TLS/SASL options apply to a broker given by KAFKA_BROKERS; the embedded broker speaks plaintext, so they are ignored"
            );
            args.security = KafkaSecurityArgs::default();
        }
        let guard = EmbeddedBroker::start(brokers)?;
        let mut config = KafkaConfig::from_args(&args, guard.bootstrap_servers())?;
        config.embedded = Some((*guard).clone());
        Ok(Self {
            config,
            embedded: Some(guard),
        })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.config.brokers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restaurants_seeds_bootstrap_svr_names_the_brokers_when_kafka_brokers_does_not() {
        let seed = KafkaArgs {
            bootstrap_svr: Some("kafka:9092".into()),
            ..KafkaArgs::default()
        };
        let cluster = Cluster::resolve(&seed, false).expect("BOOTSTRAP_SVR is enough");
        assert_eq!(cluster.bootstrap_servers(), "kafka:9092");
        let both = KafkaArgs {
            brokers: Some("b:9092".into()),
            ..seed
        };
        assert_eq!(
            Cluster::resolve(&both, false).expect("valid").bootstrap_servers(),
            "b:9092"
        );
        assert!(Cluster::resolve(&KafkaArgs::default(), false).is_err());
    }

    #[test]
    fn user_options_override_defaults() {
        let args = KafkaArgs {
            brokers: Some("b:9092".into()),
            timeout_secs: 5,
            session_timeout_ms: 6000,
            options: vec![("linger.ms".into(), "20".into())],
            security: KafkaSecurityArgs::default(),
            ..KafkaArgs::default()
        };
        let cfg = KafkaConfig::from_args(&args, "b:9092").expect("valid");
        let p = cfg.producer_config();
        assert_eq!(p.get("linger.ms"), Some("20"));
        assert_eq!(p.get("message.timeout.ms"), Some("5000"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let c = cfg.consumer_config("g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
    }

    fn sasl_args(dir: &std::path::Path) -> KafkaArgs {
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").expect("write");
        KafkaArgs {
            brokers: Some("b:9093".into()),
            timeout_secs: 5,
            session_timeout_ms: 6000,
            options: vec![],
            security: KafkaSecurityArgs {
                protocol: Some(SecurityProtocol::SaslSsl),
                sasl_mechanism: Some(SaslMechanism::ScramSha256),
                sasl_username: Some("alice".into()),
                sasl_password: Some(SecretString::from("s3cret-pw".to_owned())),
                ca: Some(ca),
                ..KafkaSecurityArgs::default()
            },
            ..KafkaArgs::default()
        }
    }

    #[test]
    fn security_options_reach_every_client_and_the_password_is_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = sasl_args(dir.path());
        let cfg = KafkaConfig::from_args(&args, "b:9093").expect("valid");
        for c in [cfg.producer_config(), cfg.consumer_config("g"), cfg.admin_config()] {
            assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
            assert_eq!(c.get("sasl.username"), Some("alice"));
            assert_eq!(c.get("sasl.password"), Some("s3cret-pw"));
            assert!(c.get("ssl.ca.location").is_some_and(|p| p.ends_with("ca.pem")));
        }
        assert!(cfg.is_secured());
        // A child process gets the same options through its environment.
        let env = args.security.env();
        assert!(env.contains(&("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into())), "{env:?}");
        assert!(
            env.contains(&("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".into())),
            "{env:?}"
        );
        assert!(env.contains(&("KAFKA_SASL_PASSWORD", "s3cret-pw".into())), "{env:?}");
        let shown = format!("{cfg:?} {args:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        // A password given through KAFKA_OPTIONS is masked too.
        let mut raw = KafkaConfig::new("b:9093");
        raw.options.insert("sasl.password".into(), "other-pw".into());
        assert!(!format!("{raw:?}").contains("other-pw"));
    }

    #[test]
    fn security_options_that_do_not_fit_together_say_what_to_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = |args: &KafkaArgs| KafkaConfig::from_args(args, "b:9093").expect_err("invalid").to_string();
        let mut args = sasl_args(dir.path());
        args.security.protocol = None;
        assert!(err(&args).contains("KAFKA_SECURITY_PROTOCOL is not"), "{}", err(&args));
        let mut args = sasl_args(dir.path());
        args.security.sasl_password = None;
        assert!(err(&args).contains("KAFKA_SASL_PASSWORD"), "{}", err(&args));
        let mut args = sasl_args(dir.path());
        args.security.protocol = Some(SecurityProtocol::Ssl);
        assert!(err(&args).contains("use sasl_ssl"), "{}", err(&args));
        let mut args = sasl_args(dir.path());
        args.security.ca = Some(dir.path().join("missing.pem"));
        assert!(err(&args).contains("no such file"), "{}", err(&args));
        let mut args = sasl_args(dir.path());
        args.security.sasl_mechanism = None;
        let cfg = KafkaConfig::from_args(&args, "b:9093").expect("valid");
        assert_eq!(cfg.producer_config().get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    }

    #[test]
    fn rejects_empty_brokers_and_bad_options() {
        assert!(KafkaConfig::from_args(&KafkaArgs::default(), " ").is_err());
        assert!(parse_key_value("novalue").is_err());
        assert_eq!(parse_key_value("a = b").expect("ok"), ("a".into(), "b".into()));
    }
}
