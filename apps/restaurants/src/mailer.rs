//! The mailer (`restaurant-mailer`, group `confirmation-service`): `order_confirm` → one
//! confirmation e-mail per paid order (text and HTML) over SMTP with `lettre`, or an `.eml` file
//! per order under `MAIL_DIR` when no SMTP server is configured → `order_status` (`email_sent`).
//!
//! At most one e-mail per order in steady state: the sent-log (`mail_sent`, keyed by order) is
//! checked before sending and written after; a redelivered confirmation finds it and only
//! announces `email_sent` again. Only a crash between the SMTP server's acceptance and the
//! sent-log's commit sends twice, and then both copies carry the same `Message-ID`
//! (`<order-ID@restaurants.kafkube>`), which mail clients and servers recognise as one message.
//! SMTP down or a temporary refusal (4xx) → the batch waits and retries; nothing is lost.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use futures::StreamExt;
use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Record};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};
use kafkube_store::{Db, StoreError, on_db};
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::RestaurantsArgs;
use crate::model::{Cents, Confirmation, Status, StatusChange};
use crate::store::ROWS_PER_STATEMENT;

/// The `Message-ID` of an order's confirmation: the same on every attempt.
pub fn message_id(order_id: &str) -> String {
    format!("<order-{order_id}@restaurants.kafkube>")
}

/// Where e-mails go.
#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>, String),
    /// One `<order id>.eml` per order in this directory.
    Files(PathBuf),
}

impl Transport {
    pub fn from_args(args: &crate::config::MailerArgs) -> anyhow::Result<Self> {
        match &args.smtp_url {
            Some(url) => {
                let url = url.expose_secret();
                let shown = kafkube_store::db::redact(url);
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .with_context(|| format!("SMTP_URL {shown} is not a valid smtp:// or smtps:// URL"))?
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build();
                Ok(Self::Smtp(t, shown))
            }
            None => Ok(Self::Files(args.mail_dir.clone())),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Smtp(..) => "smtp",
            Self::Files(_) => "file",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Smtp(_, url) => format!("SMTP {url}"),
            Self::Files(dir) => format!(".eml files in {}", dir.display()),
        }
    }

    /// Sends `messages` (`(order id, e-mail)`), over SMTP `concurrency` at a time; as files, all
    /// in one blocking task. The results come in the order given.
    async fn send_all(&self, messages: Vec<(String, Message)>, concurrency: usize) -> Vec<Result<(), SendError>> {
        match self {
            Self::Smtp(t, _) => {
                let mut sent: Vec<(usize, Result<(), SendError>)> =
                    futures::stream::iter(messages.into_iter().enumerate())
                        .map(|(i, (_, m))| async move {
                            let result = match t.send(m).await {
                                Ok(_) => Ok(()),
                                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                                Err(e) => Err(SendError::Later(e.to_string())),
                            };
                            (i, result)
                        })
                        .buffer_unordered(concurrency.max(1))
                        .collect()
                        .await;
                sent.sort_unstable_by_key(|(i, _)| *i);
                sent.into_iter().map(|(_, result)| result).collect()
            }
            Self::Files(dir) => {
                let n = messages.len();
                let dir = dir.clone();
                let written = tokio::task::spawn_blocking(move || write_emls(&dir, &messages)).await;
                match written {
                    Ok(results) => results,
                    Err(e) => (0..n)
                        .map(|_| Err(SendError::Later(format!("the file writer failed: {e}"))))
                        .collect(),
                }
            }
        }
    }

    /// For readiness: the SMTP server answers (a file sink is always ready).
    async fn check(&self) -> Result<(), String> {
        match self {
            Self::Smtp(t, url) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("the SMTP server at {url} did not answer NOOP")),
                Err(e) => Err(format!("cannot reach the SMTP server at {url}: {e}")),
            },
            Self::Files(_) => Ok(()),
        }
    }
}

/// Writes each e-mail to `<order id>.eml` in `dir`, whole or not at all (a temporary file, then
/// a rename).
fn write_emls(dir: &Path, messages: &[(String, Message)]) -> Vec<Result<(), SendError>> {
    let failed = |e: std::io::Error| SendError::Later(format!("cannot write to {}: {e}", dir.display()));
    if let Err(e) = std::fs::create_dir_all(dir) {
        let why = failed(e);
        return messages.iter().map(|_| Err(why.clone())).collect();
    }
    messages
        .iter()
        .map(|(order_id, m)| {
            let tmp = dir.join(format!(".{order_id}.eml.tmp"));
            std::fs::write(&tmp, m.formatted())
                .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{order_id}.eml"))))
                .map_err(failed)
        })
        .collect()
}

#[derive(Clone, Debug)]
enum SendError {
    /// The server refused the message for good (a 5xx: no such mailbox): dead-lettered.
    Permanent(String),
    /// Try again later (connection refused, timeout, 4xx, disk full).
    Later(String),
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The confirmation e-mail of an order.
pub fn compose(from: &Mailbox, c: &Confirmation) -> Result<Message, String> {
    let to: Mailbox = c
        .email
        .parse()
        .map_err(|e| format!("{:?} is not an e-mail address: {e}", c.email))?;
    let amount = Cents(c.amount_cents);
    let text = format!(
        "Thank you for your order!\n\n\
         Restaurant: {restaurant}\n\
         Amount:     {amount}, paid with the card ending in {last4}\n\
         Order:      {id}\n\n\
         The restaurant has your order. Enjoy your meal!\n",
        restaurant = c.restaurant,
        last4 = c.card_last4,
        id = c.order_id,
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:system-ui,sans-serif;line-height:1.5\">\
         <h1 style=\"font-size:1.3em\">Thank you for your order!</h1>\
         <table><tr><th align=\"left\">Restaurant</th><td>{restaurant}</td></tr>\
         <tr><th align=\"left\">Amount</th><td>{amount}, paid with the card ending in {last4}</td></tr>\
         <tr><th align=\"left\">Order</th><td><code>{id}</code></td></tr></table>\
         <p>The restaurant has your order. Enjoy your meal!</p></body></html>",
        restaurant = escape_html(&c.restaurant),
        last4 = escape_html(&c.card_last4),
        id = escape_html(&c.order_id),
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("Your order at {} is confirmed", c.restaurant))
        .message_id(Some(message_id(&c.order_id)))
        .header(ContentType::TEXT_PLAIN)
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("cannot build the e-mail: {e}"))
}

/// Sends the confirmations of a batch, `concurrency` at a time.
pub struct MailHandler {
    pub db: Db,
    pub transport: Transport,
    pub from: Mailbox,
    pub status_topic: String,
    pub concurrency: usize,
}

enum Step {
    /// Sent: `(order id, Message-ID, recipient)` for the sent-log.
    Sent(String, String, String),
    /// Not now (SMTP down, a temporary refusal): the batch waits and retries.
    Later(String),
    /// Never (a bad address, a permanent refusal): dead-lettered.
    Refused(String),
}

/// Which of `order_ids` are in the sent-log (one query per 500).
async fn already_sent(db: &Db, order_ids: &[&str]) -> Result<HashSet<String>, StoreError> {
    let mut sent = HashSet::new();
    for chunk in order_ids.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(String,)> = on_db!(db, p => {
            let mut q = sqlx::QueryBuilder::new("SELECT order_id FROM mail_sent WHERE order_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build_query_as().fetch_all(p).await?
        });
        sent.extend(rows.into_iter().map(|(id,)| id));
    }
    Ok(sent)
}

/// Adds `(order id, Message-ID, recipient)` to the sent-log (one statement per 500 rows).
async fn log_sent(db: &Db, sent: &[(String, String, String)], transport: &str) -> Result<(), StoreError> {
    let now = Utc::now();
    for chunk in sent.chunks(ROWS_PER_STATEMENT) {
        on_db!(db, p => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO mail_sent (order_id, message_id, recipient, transport, sent_at) ",
            );
            q.push_values(chunk, |mut row, (order_id, message_id, recipient)| {
                row.push_bind(order_id)
                    .push_bind(message_id)
                    .push_bind(recipient)
                    .push_bind(transport)
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (order_id) DO NOTHING");
            q.build().execute(p).await?;
        });
    }
    Ok(())
}

impl Handler for MailHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut todo = Vec::with_capacity(batch.len());
        let mut seen = HashSet::new();
        for (i, r) in batch.iter().enumerate() {
            match r.json::<Confirmation>() {
                Ok(c) if c.order_id.is_empty() => out.reject(i, "order_id is empty"),
                // The same order twice in one batch: one e-mail.
                Ok(c) if !seen.insert(c.order_id.clone()) => {}
                Ok(c) => todo.push((i, c)),
                Err(why) => out.reject(i, why),
            }
        }
        // Already sent (a redelivery, or a retry after an outage): announced again, not sent.
        let ids: Vec<&str> = todo.iter().map(|(_, c)| c.order_id.as_str()).collect();
        let sent_before = already_sent(&self.db, &ids).await?;
        let (before, todo): (Vec<_>, Vec<_>) = todo.into_iter().partition(|(_, c)| sent_before.contains(&c.order_id));
        let mut announce: Vec<String> = before.into_iter().map(|(_, c)| c.order_id).collect();
        let mut steps: Vec<(usize, Step)> = Vec::with_capacity(todo.len());
        // `(index, order id, recipient)` of each e-mail in `messages`.
        let mut sending = Vec::with_capacity(todo.len());
        let mut messages = Vec::with_capacity(todo.len());
        for (i, c) in todo {
            match compose(&self.from, &c) {
                Ok(m) => {
                    sending.push((i, c.order_id.clone(), c.email));
                    messages.push((c.order_id, m));
                }
                Err(why) => steps.push((i, Step::Refused(why))),
            }
        }
        let results = self.transport.send_all(messages, self.concurrency).await;
        for ((i, order_id, to), result) in sending.into_iter().zip(results) {
            let step = match result {
                Ok(()) => {
                    let id = message_id(&order_id);
                    Step::Sent(order_id, id, to)
                }
                Err(SendError::Permanent(why)) => Step::Refused(format!("the SMTP server refused the e-mail: {why}")),
                Err(SendError::Later(why)) => Step::Later(why),
            };
            steps.push((i, step));
        }
        let mut sent_now = Vec::new();
        let mut later = None;
        for (i, step) in steps {
            match step {
                Step::Sent(order_id, message_id, to) => {
                    announce.push(order_id.clone());
                    sent_now.push((order_id, message_id, to));
                }
                Step::Later(why) => later = Some(why),
                Step::Refused(why) => out.reject(i, why),
            }
        }
        // Logged even when others must wait, so that the retry does not send these again.
        log_sent(&self.db, &sent_now, self.transport.kind()).await?;
        metrics::counter!("restaurant_mails_sent_total").increment(sent_now.len() as u64);
        if let Some(why) = later {
            tracing::warn!("cannot send e-mail now ({why}); retrying");
            return Err(HandlerError::transient(why));
        }
        let now = Utc::now();
        for order_id in announce {
            let status = StatusChange {
                order_id: order_id.clone(),
                status: Status::EmailSent,
                at: now,
                reason: None,
            };
            out.produce.push(crate::model::keyed_record(
                &self.status_topic,
                &order_id,
                &status,
                "email_sent",
            ));
        }
        Ok(out)
    }
}

/// The mailer as a service.
pub struct Mailer;

#[kafkube_runtime::async_trait]
impl Service<RestaurantsArgs> for Mailer {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "restaurant-mailer",
            "Mailer: `order_confirm` → one confirmation e-mail per paid order (SMTP, or \
             .eml files) → `order_status`.",
        )
        .reads(&[
            "mailer-database-url",
            "mailer-group",
            "smtp-url",
            "mail-dir",
            "mail-from",
            "mailer-concurrency",
            "order-confirm-topic",
            "order-status-topic",
            "restaurants-partitions",
        ])
    }

    async fn start(&self, args: &RestaurantsArgs, ctx: &Context) -> anyhow::Result<Running> {
        let m = &args.mailer;
        let from: Mailbox = m
            .from
            .parse()
            .with_context(|| format!("MAIL_FROM {:?} is not an address like `Name <user@host>`", m.from))?;
        let transport = Transport::from_args(m)?;
        let db = ctx.open_db(&m.database_url, &[crate::mailer_migrations()]).await?;
        let summary = format!("group {} on {} → {}", m.group, args.confirm_topic, transport.describe());
        let checked = Arc::new(transport.clone());
        let readiness = ctx.readiness().database("database", db.clone()).check("mail", move || {
            let t = checked.clone();
            async move { t.check().await }
        });
        let handler = MailHandler {
            db,
            transport,
            from,
            status_topic: args.status_topic.clone(),
            concurrency: m.concurrency,
        };
        let runner = ctx.consumer(ConsumerSettings::new(&m.group, &[&args.confirm_topic]), handler)?;
        Ok(Running::new(readiness)
            .summary(summary)
            .consumer(ctx.run_consumer(runner)))
    }
}

/// E-mails in the sent-log.
pub async fn count(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM mail_sent").fetch_one(p).await)?;
    Ok(n)
}
