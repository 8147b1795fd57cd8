//! The restaurants app's three services inside a test, on a test broker and a test database.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use kafkube_restaurants::config::{MailerArgs, PaymentsArgs};
use kafkube_restaurants::payments::bank::TestBank;
use kafkube_restaurants::{Mailer, Payments, RestaurantsApi, RestaurantsArgs};
use kafkube_testkit::{Backend, Spawned, TestDb, TestKafka, eventually, http_client, spawn, unique};
use serde_json::{Value, json};

pub const GOOD_CARD: &str = "4242424242424242";
pub const DECLINED_CARD: &str = "4000000000000002";

pub struct Stack {
    /// Never dropped: the services' consumers close when the test's runtime shuts down, after
    /// the test body, and an embedded broker gone by then makes each close wait for it.
    pub kafka: std::mem::ManuallyDrop<TestKafka>,
    pub db: TestDb,
    pub args: RestaurantsArgs,
    pub bank: Arc<TestBank>,
    pub mail_dir: tempfile::TempDir,
    pub api: Option<Spawned>,
    pub payments: Option<Spawned>,
    pub mailer: Option<Spawned>,
}

impl Stack {
    /// Topics, one database for the three services, the options; nothing started yet.
    pub async fn new(backend: Backend) -> Self {
        let kafka = TestKafka::start();
        let order_topic = kafka.topic("order", 4).await;
        let confirm_topic = kafka.topic("order_confirm", 4).await;
        let status_topic = kafka.topic("order_status", 4).await;
        let db = TestDb::new(backend).await;
        let mail_dir = tempfile::tempdir().unwrap();
        let defaults = RestaurantsArgs::defaults();
        let args = RestaurantsArgs {
            port: 0,
            host: [127, 0, 0, 1].into(),
            database_url: db.url.parse().unwrap(),
            order_topic,
            confirm_topic,
            status_topic,
            status_group: unique("status"),
            payments: PaymentsArgs {
                database_url: db.url.parse().unwrap(),
                group: unique("payments"),
                bank_timeout_ms: 500,
                ..defaults.payments.clone()
            },
            mailer: MailerArgs {
                database_url: db.url.parse().unwrap(),
                group: unique("mailer"),
                smtp_url: None,
                mail_dir: mail_dir.path().to_owned(),
                ..defaults.mailer.clone()
            },
            ..defaults
        };
        Self {
            kafka: std::mem::ManuallyDrop::new(kafka),
            db,
            args,
            bank: Arc::new(TestBank::new()),
            mail_dir,
            api: None,
            payments: None,
            mailer: None,
        }
    }

    /// All three services, ready.
    pub async fn start(backend: Backend) -> Self {
        let mut s = Self::new(backend).await;
        s.start_api().await;
        s.start_payments().await;
        s.start_mailer().await;
        s
    }

    pub async fn start_api(&mut self) {
        let api = spawn(RestaurantsApi, self.args.clone(), &self.kafka.config())
            .await
            .unwrap();
        api.ready(Duration::from_secs(30)).await;
        self.api = Some(api);
    }

    pub async fn start_payments(&mut self) {
        self.start_payments_as(Payments::with_bank(self.bank.clone())).await;
    }

    /// The payments service as given (`Payments::default()` takes `BANK_URL`'s bank).
    pub async fn start_payments_as(&mut self, payments: Payments) {
        let p = spawn(payments, self.args.clone(), &self.kafka.config()).await.unwrap();
        p.ready(Duration::from_secs(30)).await;
        self.payments = Some(p);
    }

    pub async fn start_mailer(&mut self) {
        let m = spawn(Mailer, self.args.clone(), &self.kafka.config()).await.unwrap();
        m.ready(Duration::from_secs(30)).await;
        self.mailer = Some(m);
    }

    pub fn url(&self, path: &str) -> String {
        self.api.as_ref().expect("the API runs").url(path)
    }

    /// Places an order; returns its id (panics unless 202).
    pub async fn place(&self, card: &str, email: &str) -> String {
        let res = http_client()
            .post(self.url("/orders"))
            .json(&json!({"email": email, "creditCard": card, "restaurant": "China city"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{:?}", res.text().await);
        let body: Value = res.json().await.unwrap();
        body["order_id"].as_str().unwrap().to_owned()
    }

    pub async fn order(&self, id: &str) -> Value {
        let res = http_client()
            .get(self.url(&format!("/orders/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Waits until the order's status is `status`; returns the order.
    pub async fn wait_for(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let found = eventually(timeout, || async {
            let o = self.order(id).await;
            (o["status"] == status).then_some(o)
        })
        .await;
        match found {
            Some(o) => o,
            None => panic!(
                "order {id} did not reach {status} within {timeout:?}: {}",
                self.order(id).await
            ),
        }
    }

    /// The `.eml` files the mailer wrote, by order id.
    pub fn eml_files(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = std::fs::read_dir(self.mail_dir.path())
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let id = name.strip_suffix(".eml")?.to_owned();
                        (!id.starts_with('.')).then(|| (id, std::fs::read_to_string(e.path()).unwrap()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// `(status, reason)` of each history entry.
pub fn history(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

impl Drop for Stack {
    /// Asks every service still running to stop (their tasks end with the test's runtime).
    fn drop(&mut self) {
        for s in [&self.api, &self.payments, &self.mailer].into_iter().flatten() {
            s.stops().all();
        }
    }
}
