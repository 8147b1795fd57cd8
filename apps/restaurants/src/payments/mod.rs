//! The payments service (`restaurant-payments`, group `transaction-service`): `order` → the bank →
//! `order_status` (paid or rejected) and, for paid orders, `order_confirm`.
//!
//! Exactly one charge per order, however often an order is delivered: the bank is asked with the
//! order id as idempotency key, and the decision is stored (`payments`, keyed by order) before
//! the runner stores the record's offset. A redelivered order finds its decision and publishes
//! it again instead of asking the bank; duplicates downstream are absorbed (statuses are unique
//! per order, the mailer keeps a sent-log). Only the last four digits of a card are kept.

pub mod bank;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kafkube_bus::{BatchOutput, ConsumerSettings, Handler, HandlerError, Outgoing, Record};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};
use kafkube_store::{Db, StoreError, on_db};

use crate::RestaurantsArgs;
use crate::model::{Cents, Confirmation, OrderPlaced, Status, StatusChange, card_last4};
use crate::store::ROWS_PER_STATEMENT;
use bank::{Bank, BankError, Charge, Decision, HttpBank, TestBank};

/// Why a card is refused before the bank is asked.
pub fn check_card(card: &str) -> Result<String, String> {
    let digits: String = card.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("the card number may only contain digits".into());
    }
    if digits.len() != 16 {
        return Err(format!("the card number has {} digits, not 16", digits.len()));
    }
    let sum: u32 = digits
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err("the card number fails the Luhn check (a typo?)".into());
    }
    Ok(digits)
}

/// A decision about one order, as stored.
#[derive(Clone, Debug)]
struct Outcome {
    order_id: String,
    paid: bool,
    reason: Option<String>,
    charge_id: Option<String>,
    card_last4: String,
    amount_cents: i64,
    email: String,
    restaurant: String,
    decided_at: DateTime<Utc>,
}

type OutcomeRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    String,
    String,
    DateTime<Utc>,
);

impl Outcome {
    fn from_row(r: OutcomeRow) -> Self {
        Self {
            order_id: r.0,
            paid: r.1 == "paid",
            reason: r.2,
            charge_id: r.3,
            card_last4: r.4,
            amount_cents: r.5,
            email: r.6,
            restaurant: r.7,
            decided_at: r.8,
        }
    }

    fn new(o: &OrderPlaced, decision: Result<String, String>) -> Self {
        let (paid, charge_id, reason) = match decision {
            Ok(charge) => (true, Some(charge), None),
            Err(reason) => (false, None, Some(reason)),
        };
        Self {
            order_id: o.order_id.clone(),
            paid,
            reason,
            charge_id,
            card_last4: card_last4(&o.credit_card),
            amount_cents: o.amount_cents,
            email: o.email.clone(),
            restaurant: o.restaurant.clone(),
            decided_at: Utc::now(),
        }
    }

    /// The records that announce it: a status, and the confirmation of a paid order.
    fn records(&self, status_topic: &str, confirm_topic: &str) -> Vec<Outgoing> {
        let status = StatusChange {
            order_id: self.order_id.clone(),
            status: if self.paid { Status::Paid } else { Status::Rejected },
            at: self.decided_at,
            reason: self.reason.clone(),
        };
        let mut out = vec![crate::model::keyed_record(
            status_topic,
            &self.order_id,
            &status,
            status.status.as_str(),
        )];
        if let (true, Some(charge_id)) = (self.paid, &self.charge_id) {
            let c = Confirmation {
                order_id: self.order_id.clone(),
                email: self.email.clone(),
                restaurant: self.restaurant.clone(),
                card_last4: self.card_last4.clone(),
                amount_cents: self.amount_cents,
                charge_id: charge_id.clone(),
                paid_at: self.decided_at,
            };
            out.push(crate::model::keyed_record(
                confirm_topic,
                &self.order_id,
                &c,
                "order_confirmed",
            ));
        }
        out
    }
}

/// The decisions stored for `order_ids` (one query per 500).
async fn stored(db: &Db, order_ids: &[&str]) -> Result<HashMap<String, Outcome>, StoreError> {
    let mut found = HashMap::new();
    for chunk in order_ids.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<OutcomeRow> = on_db!(db, p => {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT order_id, outcome, reason, charge_id, card_last4, amount_cents, email, restaurant, decided_at \
                 FROM payments WHERE order_id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push(")");
            q.build_query_as().fetch_all(p).await?
        });
        found.extend(rows.into_iter().map(|r| (r.0.clone(), Outcome::from_row(r))));
    }
    Ok(found)
}

/// Stores decisions (one statement per 500; a decision stored before is kept).
async fn store(db: &Db, outcomes: &[Outcome]) -> Result<(), StoreError> {
    for chunk in outcomes.chunks(ROWS_PER_STATEMENT) {
        on_db!(db, p => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO payments (order_id, outcome, reason, charge_id, card_last4, amount_cents, email, \
                 restaurant, decided_at) ",
            );
            q.push_values(chunk, |mut row, o| {
                row.push_bind(&o.order_id)
                    .push_bind(if o.paid { "paid" } else { "rejected" })
                    .push_bind(&o.reason)
                    .push_bind(&o.charge_id)
                    .push_bind(&o.card_last4)
                    .push_bind(o.amount_cents)
                    .push_bind(&o.email)
                    .push_bind(&o.restaurant)
                    .push_bind(o.decided_at);
            });
            q.push(" ON CONFLICT (order_id) DO NOTHING");
            q.build().execute(p).await?;
        });
    }
    Ok(())
}

/// Decides the orders of a batch, the bank's calls concurrently.
pub struct PaymentHandler {
    pub db: Db,
    pub bank: Arc<dyn Bank>,
    pub status_topic: String,
    pub confirm_topic: String,
    pub concurrency: usize,
    pub bank_timeout: Duration,
}

/// What became of one order of a batch.
enum Step {
    /// Decided earlier (a redelivery): publish again.
    Stored(Outcome),
    /// Decided now: store, then publish.
    New(Outcome),
    /// The bank could not answer: the batch is retried (same idempotency keys).
    Later(String),
    /// The bank refused the request: dead-lettered.
    Refused(String),
}

impl PaymentHandler {
    /// Decides an order with no stored decision.
    async fn decide(&self, o: &OrderPlaced) -> Step {
        let card = match check_card(&o.credit_card) {
            Ok(card) => card,
            Err(reason) => return Step::New(Outcome::new(o, Err(reason))),
        };
        let charge = Charge {
            idempotency_key: o.order_id.clone(),
            card_number: card,
            amount: Cents(o.amount_cents),
            description: format!("order {} at {}", o.order_id, o.restaurant),
        };
        let answer = tokio::time::timeout(self.bank_timeout, self.bank.charge(&charge))
            .await
            .unwrap_or(Err(BankError::Timeout(self.bank_timeout)));
        match answer {
            Ok(Decision::Approved { charge_id }) => Step::New(Outcome::new(o, Ok(charge_id))),
            Ok(Decision::Declined { reason }) => Step::New(Outcome::new(o, Err(reason))),
            Err(e @ BankError::Refused(_)) => Step::Refused(e.to_string()),
            Err(e) => Step::Later(e.to_string()),
        }
    }
}

impl Handler for PaymentHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut orders = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match r.json::<OrderPlaced>() {
                Ok(o) if !o.order_id.is_empty() => orders.push((i, o)),
                Ok(_) => out.reject(i, "order_id is empty"),
                Err(why) => out.reject(i, why),
            }
        }
        // Decided earlier (a redelivery): published again, the bank not asked.
        let ids: Vec<&str> = orders.iter().map(|(_, o)| o.order_id.as_str()).collect();
        let decided = stored(&self.db, &ids).await?;
        let mut steps: Vec<(usize, Step)> = Vec::with_capacity(orders.len());
        let mut undecided = Vec::with_capacity(orders.len());
        let mut asking = HashSet::new();
        for (i, o) in orders {
            match decided.get(&o.order_id).cloned() {
                Some(done) => steps.push((i, Step::Stored(done))),
                // The same order twice in one batch: decided once.
                None if !asking.insert(o.order_id.clone()) => {}
                None => undecided.push((i, o)),
            }
        }
        let asked: Vec<(usize, Step)> = futures::stream::iter(undecided)
            .map(|(i, o)| async move { (i, self.decide(&o).await) })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        steps.extend(asked);
        let mut new = Vec::new();
        let mut publish = Vec::new();
        let mut later = None;
        for (i, step) in steps {
            match step {
                Step::Stored(o) => publish.push(o),
                Step::New(o) => {
                    new.push(o.clone());
                    publish.push(o);
                }
                Step::Later(why) => later = Some(why),
                Step::Refused(why) => out.reject(i, why),
            }
        }
        // Decisions are stored even when others of the batch must wait, so that the retry finds
        // them instead of asking the bank again.
        store(&self.db, &new).await?;
        for o in &new {
            let kind = if o.paid { "paid" } else { "rejected" };
            metrics::counter!("restaurant_payments_total", "outcome" => kind).increment(1);
        }
        if let Some(why) = later {
            tracing::warn!("the bank could not answer ({why}); retrying the batch with the same idempotency keys");
            return Err(HandlerError::transient(why));
        }
        let mut seen = HashSet::new();
        for o in publish {
            if seen.insert(o.order_id.clone()) {
                out.produce.extend(o.records(&self.status_topic, &self.confirm_topic));
            }
        }
        Ok(out)
    }
}

/// The payments service. `Payments::default()` uses `BANK_URL`'s bank, or an in-process test
/// bank; tests hand it a [`TestBank`] they keep.
#[derive(Default)]
pub struct Payments {
    pub bank: Option<Arc<dyn Bank>>,
}

impl Payments {
    pub fn with_bank(bank: Arc<dyn Bank>) -> Self {
        Self { bank: Some(bank) }
    }
}

#[kafkube_runtime::async_trait]
impl Service<RestaurantsArgs> for Payments {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "restaurant-payments",
            "Payments: `order` → card check and bank charge (once per order) → \
             `order_confirm`, `order_status`.",
        )
        .reads(&[
            "payments-database-url",
            "payments-group",
            "bank-url",
            "bank-api-key",
            "bank-timeout-ms",
            "payments-concurrency",
            "order-topic",
            "order-confirm-topic",
            "order-status-topic",
            "restaurants-partitions",
        ])
    }

    async fn start(&self, args: &RestaurantsArgs, ctx: &Context) -> anyhow::Result<Running> {
        let p = &args.payments;
        let db = ctx.open_db(&p.database_url, &[crate::payments_migrations()]).await?;
        let timeout = Duration::from_millis(p.bank_timeout_ms.max(1));
        let bank: Arc<dyn Bank> = match (&self.bank, &p.bank_url) {
            (Some(bank), _) => bank.clone(),
            (None, Some(url)) => Arc::new(HttpBank::new(url, p.bank_api_key.clone(), timeout)?),
            (None, None) => Arc::new(TestBank::new()),
        };
        let summary = format!(
            "group {} on {} → {}, {} ({})",
            p.group,
            args.order_topic,
            args.confirm_topic,
            args.status_topic,
            bank.describe()
        );
        let handler = PaymentHandler {
            db: db.clone(),
            bank,
            status_topic: args.status_topic.clone(),
            confirm_topic: args.confirm_topic.clone(),
            concurrency: p.concurrency,
            bank_timeout: timeout,
        };
        let runner = ctx.consumer(ConsumerSettings::new(&p.group, &[&args.order_topic]), handler)?;
        Ok(Running::new(ctx.readiness().database("database", db))
            .summary(summary)
            .consumer(ctx.run_consumer(runner)))
    }
}

/// Orders decided so far, by outcome (`paid`, `rejected`).
pub async fn count(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        on_db!(db, p => sqlx::query_as("SELECT outcome, COUNT(*) FROM payments GROUP BY outcome ORDER BY outcome")
        .fetch_all(p)
        .await)?,
    )
}

#[cfg(test)]
mod tests {
    use super::check_card;

    #[test]
    fn cards_are_16_digits_with_a_luhn_check_digit() {
        assert_eq!(check_card("4242 4242 4242 4242").as_deref(), Ok("4242424242424242"));
        assert!(check_card("4242-4242-4242-4241").unwrap_err().contains("Luhn"));
        assert!(check_card("4242").unwrap_err().contains("4 digits"));
        assert!(
            check_card("4242x242424242424")
                .unwrap_err()
                .contains("only contain digits")
        );
        assert!(check_card("4000000000000002").is_ok());
    }
}
