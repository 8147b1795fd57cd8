//! Options of the restaurants app (flags and environment variables; the seed's names where it has
//! them: `BOOTSTRAP_SVR` is read by the Kafka options, the groups are the seed's).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use kafkube_store::DatabaseUrl;
use secrecy::SecretString;

use crate::model::Cents;

#[derive(Args, Clone, Debug)]
pub struct RestaurantsArgs {
    /// Port of the restaurants page and API (the seed's Flask port).
    #[arg(
        id = "restaurants-port",
        long = "restaurants-port",
        env = "RESTAURANTS_PORT",
        default_value_t = 5000
    )]
    pub port: u16,

    /// Address the restaurants API binds to.
    #[arg(
        id = "restaurants-host",
        long = "restaurants-host",
        env = "RESTAURANTS_HOST",
        default_value = "0.0.0.0"
    )]
    pub host: IpAddr,

    /// Orders database (restaurants, orders, their status history, the outbox): `sqlite:PATH` or
    /// `postgres://…`.
    #[arg(
        id = "restaurants-database-url",
        long = "restaurants-database-url",
        env = "RESTAURANTS_DATABASE_URL",
        default_value = "sqlite:data/restaurants.db"
    )]
    pub database_url: DatabaseUrl,

    /// The restaurant list imported into an empty orders database at the first start (a JSON
    /// array of `{name, style, vegetarian, delivery}`, the seed's `restaurants.json`); the
    /// seed's list is built in. `kafkube restaurants import FILE` re-imports.
    #[arg(
        id = "restaurants-file",
        long = "restaurants-file",
        env = "RESTAURANTS_FILE",
        value_name = "FILE"
    )]
    pub restaurants_file: Option<PathBuf>,

    /// Topic of placed orders (written through the outbox; the card number travels here once).
    #[arg(
        id = "order-topic",
        long = "order-topic",
        env = "ORDER_TOPIC",
        default_value = "order"
    )]
    pub order_topic: String,

    /// Topic of paid orders, for the mailer.
    #[arg(
        id = "order-confirm-topic",
        long = "order-confirm-topic",
        env = "ORDER_CONFIRM_TOPIC",
        default_value = "order_confirm"
    )]
    pub confirm_topic: String,

    /// Topic of status changes (paid, rejected, e-mail sent) flowing back to the orders.
    #[arg(
        id = "order-status-topic",
        long = "order-status-topic",
        env = "ORDER_STATUS_TOPIC",
        default_value = "order_status"
    )]
    pub status_topic: String,

    /// Partitions of the three topics when Kafkube creates them.
    #[arg(
        id = "restaurants-partitions",
        long = "restaurants-partitions",
        env = "RESTAURANTS_PARTITIONS",
        default_value_t = 4
    )]
    pub partitions: i32,

    /// Consumer group of the API's status follower (status changes → the orders database).
    #[arg(
        id = "order-status-group",
        long = "order-status-group",
        env = "ORDER_STATUS_GROUP_ID",
        default_value = "restaurants-status"
    )]
    pub status_group: String,

    /// Writer tasks for `POST /orders`: each writes every order waiting for it in one
    /// transaction (group commit), so concurrent orders share a commit.
    #[arg(
        id = "restaurants-writers",
        long = "restaurants-writers",
        env = "RESTAURANTS_WRITERS",
        value_name = "N",
        default_value_t = 2
    )]
    pub writers: usize,

    /// What an order costs when its body names no `amount` (the seed's orders carry no price).
    #[arg(id = "order-amount", long = "order-amount", env = "ORDER_AMOUNT", default_value = "25.00", value_parser = parse_cents)]
    pub order_amount: Cents,

    #[command(flatten)]
    pub payments: PaymentsArgs,

    #[command(flatten)]
    pub mailer: MailerArgs,
}

/// The payments service (`restaurant-payments`).
#[derive(Args, Clone, Debug)]
pub struct PaymentsArgs {
    /// Payments database (one decision per order, never a full card number).
    #[arg(
        id = "payments-database-url",
        long = "payments-database-url",
        env = "PAYMENTS_DATABASE_URL",
        default_value = "sqlite:data/restaurant-payments.db"
    )]
    pub database_url: DatabaseUrl,

    /// Consumer group of the payments service (the seed's).
    #[arg(
        id = "payments-group",
        long = "payments-group",
        env = "PAYMENTS_GROUP_ID",
        default_value = "transaction-service"
    )]
    pub group: String,

    /// The bank's base URL (it is sent `POST {url}/charges` with an `Idempotency-Key`). Unset: an
    /// in-process test bank that charges every valid card except the test cards
    /// 4000 0000 0000 0002 (declined) and 4000 0000 0000 9995 (insufficient funds).
    #[arg(id = "bank-url", long = "bank-url", env = "BANK_URL", value_name = "URL")]
    pub bank_url: Option<String>,

    /// Bearer token for the bank.
    #[arg(id = "bank-api-key", long = "bank-api-key", env = "BANK_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub bank_api_key: Option<SecretString>,

    /// How long one charge may take before it is retried (same idempotency key), in ms.
    #[arg(
        id = "bank-timeout-ms",
        long = "bank-timeout-ms",
        env = "BANK_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub bank_timeout_ms: u64,

    /// Charges in flight at once.
    #[arg(
        id = "payments-concurrency",
        long = "payments-concurrency",
        env = "PAYMENTS_CONCURRENCY",
        default_value_t = 32,
        value_parser = kafkube_core::args::at_least_one()
    )]
    pub concurrency: usize,
}

/// The mailer (`restaurant-mailer`).
#[derive(Args, Clone, Debug)]
pub struct MailerArgs {
    /// Mailer database (the sent-log: at most one confirmation per order).
    #[arg(
        id = "mailer-database-url",
        long = "mailer-database-url",
        env = "MAILER_DATABASE_URL",
        default_value = "sqlite:data/restaurant-mail.db"
    )]
    pub database_url: DatabaseUrl,

    /// Consumer group of the mailer (the seed's).
    #[arg(
        id = "mailer-group",
        long = "mailer-group",
        env = "MAILER_GROUP_ID",
        default_value = "confirmation-service"
    )]
    pub group: String,

    /// SMTP server: `smtp://[user:password@]host[:port]` (add `?tls=required` for STARTTLS) or
    /// `smtps://…` (TLS from the start). Unset: each e-mail is written to MAIL_DIR as an `.eml`
    /// file instead.
    #[arg(id = "smtp-url", long = "smtp-url", env = "SMTP_URL", value_name = "URL", value_parser = parse_secret, hide_env_values = true)]
    pub smtp_url: Option<SecretString>,

    /// Where e-mails go when no SMTP server is configured.
    #[arg(id = "mail-dir", long = "mail-dir", env = "MAIL_DIR", default_value = "data/mail")]
    pub mail_dir: PathBuf,

    /// The confirmations' sender.
    #[arg(
        id = "mail-from",
        long = "mail-from",
        env = "MAIL_FROM",
        default_value = "Kafkube Restaurants <orders@restaurants.kafkube.localhost>"
    )]
    pub from: String,

    /// E-mails in flight at once.
    #[arg(
        id = "mailer-concurrency",
        long = "mailer-concurrency",
        env = "MAILER_CONCURRENCY",
        default_value_t = 16,
        value_parser = kafkube_core::args::at_least_one()
    )]
    pub concurrency: usize,
}

impl RestaurantsArgs {
    /// Defaults, as if no flag were given (tests start from this).
    pub fn defaults() -> Self {
        kafkube_core::args::defaults()
    }
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

fn parse_cents(s: &str) -> Result<Cents, String> {
    Cents::parse(s)
}
