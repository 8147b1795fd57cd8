//! The bank, behind [`Bank`]: an in-process test bank ([`TestBank`], the default) or a real one
//! over HTTP ([`HttpBank`]). Every charge carries an idempotency key (the order id): asking twice
//! charges once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::model::Cents;

/// One charge request.
#[derive(Clone, Debug)]
pub struct Charge {
    /// The same for every attempt to charge one order.
    pub idempotency_key: String,
    /// Digits only, already checked (16 digits, Luhn).
    pub card_number: String,
    pub amount: Cents,
    pub description: String,
}

/// What the bank decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Approved { charge_id: String },
    Declined { reason: String },
}

/// The bank could not answer: retried with the same idempotency key.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("the bank did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the bank is unavailable: {0}")]
    Unavailable(String),
    /// The bank refused the request itself (not the card): retrying cannot help.
    #[error("the bank refused the request: {0}")]
    Refused(String),
}

pub trait Bank: Send + Sync + 'static {
    fn charge<'a>(&'a self, c: &'a Charge) -> BoxFuture<'a, Result<Decision, BankError>>;
    /// For the banner.
    fn describe(&self) -> String;
}

/// Stripe's test cards, which the test bank declines.
pub const DECLINED_CARD: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS_CARD: &str = "4000000000009995";

/// An in-process bank for running without one and for tests: approves every card except the
/// declining test cards, remembers each idempotency key (a repeated charge returns the first
/// decision and charges nothing more), and can be told to fail, time out, or charge and then
/// lose its answer — the case idempotency keys exist for.
#[derive(Debug, Default)]
pub struct TestBank {
    decisions: Mutex<HashMap<String, Decision>>,
    charges: AtomicU64,
    next_id: AtomicU64,
    fail_next: AtomicU32,
    lose_answer_next: AtomicU32,
    timeout_next: AtomicU32,
    latency_ms: AtomicU64,
}

impl TestBank {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cards charged so far: one per idempotency key approved.
    pub fn charges(&self) -> u64 {
        self.charges.load(Ordering::SeqCst)
    }

    /// The decision for an idempotency key, if the bank has seen it.
    pub fn decision(&self, key: &str) -> Option<Decision> {
        self.lock().get(key).cloned()
    }

    /// The next `n` requests fail as if the bank were down (nothing charged).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests take longer than the caller's timeout (nothing charged).
    pub fn time_out_next(&self, n: u32) {
        self.timeout_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests charge the card, then fail as if the answer were lost on the way.
    pub fn lose_answer_next(&self, n: u32) {
        self.lose_answer_next.store(n, Ordering::SeqCst);
    }

    /// Every request takes this long.
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Decision>> {
        self.decisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn decide(&self, c: &Charge) -> Decision {
        let mut decisions = self.lock();
        if let Some(d) = decisions.get(&c.idempotency_key) {
            return d.clone();
        }
        let d = match c.card_number.as_str() {
            DECLINED_CARD => Decision::Declined {
                reason: "card declined".into(),
            },
            INSUFFICIENT_FUNDS_CARD => Decision::Declined {
                reason: "insufficient funds".into(),
            },
            _ => {
                self.charges.fetch_add(1, Ordering::SeqCst);
                Decision::Approved {
                    charge_id: format!("ch_test_{}", self.next_id.fetch_add(1, Ordering::SeqCst) + 1),
                }
            }
        };
        decisions.insert(c.idempotency_key.clone(), d.clone());
        d
    }
}

impl Bank for TestBank {
    fn charge<'a>(&'a self, c: &'a Charge) -> BoxFuture<'a, Result<Decision, BankError>> {
        Box::pin(async move {
            let latency = self.latency_ms.load(Ordering::SeqCst);
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            if Self::take(&self.fail_next) {
                return Err(BankError::Unavailable("test bank told to fail".into()));
            }
            if Self::take(&self.timeout_next) {
                return Err(BankError::Timeout(Duration::ZERO));
            }
            let d = self.decide(c);
            if Self::take(&self.lose_answer_next) {
                return Err(BankError::Timeout(Duration::ZERO));
            }
            Ok(d)
        })
    }

    fn describe(&self) -> String {
        "the in-process test bank".into()
    }
}

/// A bank over HTTP: `POST {base}/charges` with `Idempotency-Key: <order id>` and
/// `{"amount": "25.00", "card_number", "description"}`. 200/201 `{"id"}` is an approval, 402
/// `{"reason"}` (or `{"error"}`) a decline; 408, 409 (the same key in flight), 429, 5xx,
/// timeouts and refused connections are retried with the same key; any other answer means the
/// request itself is wrong.
pub struct HttpBank {
    client: reqwest::Client,
    url: String,
    api_key: Option<SecretString>,
    timeout: Duration,
}

impl HttpBank {
    pub fn new(base: &str, api_key: Option<SecretString>, timeout: Duration) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/');
        reqwest::Url::parse(base).map_err(|e| anyhow::anyhow!("BANK_URL {base:?} is not a URL: {e}"))?;
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            url: format!("{base}/charges"),
            api_key,
            timeout,
        })
    }
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    amount: String,
    card_number: &'a str,
    description: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    id: Option<String>,
    reason: Option<String>,
    error: Option<String>,
}

impl Bank for HttpBank {
    fn charge<'a>(&'a self, c: &'a Charge) -> BoxFuture<'a, Result<Decision, BankError>> {
        Box::pin(async move {
            let mut req = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", &c.idempotency_key)
                .json(&ChargeBody {
                    amount: c.amount.to_string(),
                    card_number: &c.card_number,
                    description: &c.description,
                });
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key.expose_secret());
            }
            let res = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    BankError::Timeout(self.timeout)
                } else {
                    BankError::Unavailable(e.to_string())
                }
            })?;
            let status = res.status();
            let answer: Option<Answer> = res.json().await.ok();
            let text = |a: &Option<Answer>| {
                a.as_ref()
                    .and_then(|a| a.reason.clone().or_else(|| a.error.clone()))
                    .unwrap_or_else(|| status.to_string())
            };
            match status.as_u16() {
                200 | 201 => match answer.as_ref().and_then(|a| a.id.clone()) {
                    Some(charge_id) => Ok(Decision::Approved { charge_id }),
                    None => Err(BankError::Unavailable("an approval without a charge id".into())),
                },
                402 => Ok(Decision::Declined { reason: text(&answer) }),
                408 | 409 | 429 | 500..=599 => Err(BankError::Unavailable(format!("{status}: {}", text(&answer)))),
                _ => Err(BankError::Refused(format!("{status}: {}", text(&answer)))),
            }
        })
    }

    fn describe(&self) -> String {
        format!("bank at {}", self.url)
    }
}
