//! Orders end to end on a real broker and database: API → outbox → `order` → payments (a test
//! bank) → `order_confirm` / `order_status` → mailer (`.eml` files) → the order's status, live.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{DECLINED_CARD, GOOD_CARD, Stack, history};
use kafkube_testkit::{Backend, backend_tests, http_client};
use serde_json::Value;

/// Reads an order's live stream to its end (the server closes it after a final status).
async fn live_statuses(s: &Stack, id: &str) -> Vec<Value> {
    let mut res = http_client()
        .get(s.url(&format!("/orders/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends after a final status");
    text.split("\n\n")
        .filter(|block| block.contains("event: status"))
        .map(|block| {
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

async fn an_order_goes_from_placed_to_email_sent_live(backend: Backend) {
    let s = Stack::start(backend).await;
    let id = s.place("4242 4242 4242 4242", "ana@example.com").await;
    // Subscribed right away: the stream replays what happened so far, then follows live.
    let live = live_statuses(&s, &id).await;
    let statuses: Vec<_> = live.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["placed", "paid", "confirmed", "email_sent"]);
    let order = s.order(&id).await;
    assert_eq!(order["status"], "email_sent");
    assert_eq!(history(&order), ["placed", "paid", "confirmed", "email_sent"]);
    assert_eq!(order["card_last4"], "4242");
    assert_eq!(s.bank.charges(), 1);

    let mails = s.eml_files();
    assert_eq!(mails.len(), 1);
    let (mail_id, eml) = &mails[0];
    assert_eq!(mail_id, &id);
    assert!(eml.contains("To: ana@example.com"), "{eml}");
    assert!(
        eml.contains(&format!("Message-ID: <order-{id}@restaurants.kafkube>")),
        "{eml}"
    );
    assert!(eml.contains("Subject: Your order at China city is confirmed"), "{eml}");
    assert!(eml.contains("text/html") && eml.contains("text/plain"), "{eml}");
    assert!(eml.contains(&id) && eml.contains("4242"), "{eml}");

    // A declined card and a mistyped one: rejected with the reason, nothing charged, no mail.
    let declined = s.place(DECLINED_CARD, "bo@example.com").await;
    let typo = s.place("4242424242424241", "cy@example.com").await;
    let o = s.wait_for(&declined, "rejected", Duration::from_secs(30)).await;
    assert_eq!(o["history"][1]["reason"], "card declined");
    let o = s.wait_for(&typo, "rejected", Duration::from_secs(30)).await;
    assert!(o["history"][1]["reason"].as_str().unwrap().contains("Luhn"), "{o}");
    let live = live_statuses(&s, &declined).await;
    assert_eq!(live.last().unwrap()["status"], "rejected");
    assert_eq!(history(&s.order(&declined).await), ["placed", "rejected"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.bank.charges(), 1);
    assert_eq!(s.eml_files().len(), 1);

    // The full card number exists on the `order` topic only: not in any table, not downstream.
    let dump = |topic: String| {
        let k = &s.kafka;
        async move {
            let n = k.records_written(&topic) as usize;
            k.read(&topic, n, Duration::from_secs(10)).await
        }
    };
    for topic in [s.args.confirm_topic.clone(), s.args.status_topic.clone()] {
        for r in dump(topic.clone()).await {
            let text = String::from_utf8_lossy(&r.payload).into_owned();
            assert!(
                !text.contains(GOOD_CARD) && !text.contains("424242424242"),
                "{topic}: {text}"
            );
        }
    }
    // Live rows only: a deleted outbox row's bytes may linger in free pages until reused.
    for table in ["orders", "order_status", "payments", "mail_sent", "kafkube_outbox"] {
        let texts: Vec<String> = kafkube_store::on_db!(&s.db.db, p => {
            use kafkube_store::sqlx::Row;
            let rows = kafkube_store::sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(p).await.unwrap();
            rows.iter()
                .flat_map(|row| (0..row.len()).filter_map(move |i| {
                    row.try_get::<String, _>(i)
                        .ok()
                        .or_else(|| row.try_get::<Vec<u8>, _>(i).ok().map(|b| String::from_utf8_lossy(&b).into_owned()))
                }))
                .collect()
        });
        assert!(!texts.is_empty() || table == "kafkube_outbox", "{table} has rows");
        for text in texts {
            assert!(!text.contains("424242424242"), "{table}: {text}");
        }
    }
}

async fn a_broker_outage_delays_orders_and_loses_none(backend: Backend) {
    let s = Stack::start(backend).await;
    let Some(broker) = s.kafka.embedded() else {
        eprintln!("skipped: the broker outage is simulated on the embedded broker only");
        return;
    };
    broker.set_reachable(false).unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(s.place(GOOD_CARD, &format!("u{i}@example.com")).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        s.bank.charges(),
        0,
        "nothing reached the payments service while the broker was down"
    );
    broker.set_reachable(true).unwrap();
    for id in &ids {
        s.wait_for(id, "email_sent", Duration::from_secs(60)).await;
    }
    assert_eq!(s.bank.charges(), 10);
    assert_eq!(s.eml_files().len(), 10);
}

/// Sends the one record on `topic` again, `copies` times at once (a consumer killed before its
/// offsets were committed, a replayed batch).
async fn redeliver(s: &Stack, topic: &str, copies: usize) {
    let records = s.kafka.read_exact(topic, 1, Duration::from_secs(15)).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let again = kafkube_bus::Outgoing::new(topic, records[0].key.clone(), records[0].payload.clone());
    let producer = kafkube_bus::Producer::new(&s.kafka.config()).unwrap();
    for sent in producer.send_all(&vec![again; copies]).await {
        sent.unwrap();
    }
}

/// A confirmation delivered again after its e-mail went out (a consumer killed before its
/// offsets were committed): the mailer finds it in the sent-log, announces `email_sent` again and
/// sends nothing. (On PostgreSQL the sent-log lookup once failed to decode, and the mailer retried
/// that batch forever.)
async fn a_redelivered_confirmation_is_announced_again_not_mailed_again(backend: Backend) {
    let s = Stack::start(backend).await;
    let id = s.place(GOOD_CARD, "again@example.com").await;
    s.wait_for(&id, "email_sent", Duration::from_secs(30)).await;
    redeliver(&s, &s.args.confirm_topic, 1).await;

    // `paid`, `email_sent`, and `email_sent` once more for the redelivery.
    let statuses = s
        .kafka
        .read_exact(&s.args.status_topic, 3, Duration::from_secs(30))
        .await;
    let names: Vec<String> = statuses
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["paid", "email_sent", "email_sent"]);
    assert!(statuses.iter().all(|r| r.key_str() == Some(id.as_str())));
    assert_eq!(s.eml_files().len(), 1, "one e-mail");
    assert_eq!(kafkube_restaurants::mailer::count(&s.db.db).await.unwrap(), 1);
    assert_eq!(s.order(&id).await["status"], "email_sent");
}

/// An order delivered to payments again after its decision (twice at once, as a replayed batch
/// would): the stored decision is published again, the bank is not asked again, and the mailer
/// announces the e-mail again without sending another.
async fn a_redelivered_order_is_published_again_not_charged_again(backend: Backend) {
    let s = Stack::start(backend).await;
    let id = s.place(GOOD_CARD, "twice@example.com").await;
    s.wait_for(&id, "email_sent", Duration::from_secs(30)).await;
    assert_eq!(s.bank.charges(), 1);
    redeliver(&s, &s.args.order_topic, 2).await;

    // `paid` and `email_sent`, then once more for each batch the two copies arrived in.
    let statuses = s.kafka.read(&s.args.status_topic, 6, Duration::from_secs(10)).await;
    let count = |name: &str| statuses.iter().filter(|r| r.json()["status"] == name).count();
    assert!(count("paid") >= 2, "the decision is published again: {statuses:?}");
    assert_eq!(count("paid"), count("email_sent"), "{statuses:?}");
    assert_eq!(count("paid") + count("email_sent"), statuses.len(), "{statuses:?}");
    assert_eq!(s.bank.charges(), 1, "charged once");
    assert_eq!(s.eml_files().len(), 1, "one e-mail");
    assert_eq!(s.order(&id).await["status"], "email_sent");
}

backend_tests!(
    an_order_goes_from_placed_to_email_sent_live,
    a_broker_outage_delays_orders_and_loses_none,
    a_redelivered_confirmation_is_announced_again_not_mailed_again,
    a_redelivered_order_is_published_again_not_charged_again
);

/// The payments database goes away while orders arrive (connections cut, new ones refused): the
/// orders wait as `placed`, nothing is dead-lettered, and once it is back each is charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payments_database_down_delays_payments_and_charges_once() {
    let mut s = Stack::new(Backend::Postgres).await;
    let payments_db = kafkube_testkit::TestDb::postgres().await;
    s.args.payments.database_url = payments_db.url.parse().unwrap();
    s.start_api().await;
    s.start_payments().await;
    s.start_mailer().await;
    payments_db.set_reachable(false).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(s.place(GOOD_CARD, &format!("db{i}@example.com")).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in &ids {
        assert_eq!(
            s.order(id).await["status"],
            "placed",
            "no decision without its database"
        );
    }
    payments_db.set_reachable(true).await;
    for id in &ids {
        s.wait_for(id, "email_sent", Duration::from_secs(60)).await;
    }
    assert_eq!(s.bank.charges(), 8, "asked again after the outage, charged once each");
    assert_eq!(s.eml_files().len(), 8);
    let dlq = s
        .kafka
        .read(&format!("{}.dlq", s.args.order_topic), 1, Duration::from_secs(2))
        .await;
    assert!(dlq.is_empty(), "nothing dead-lettered for an outage");
}

/// Malformed records on each of the three topics go to that topic's dead-letter topic with the
/// reason, and the orders behind them go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_and_the_stream_goes_on() {
    let s = Stack::start(Backend::Sqlite).await;
    let producer = kafkube_bus::Producer::new(&s.kafka.config()).unwrap();
    let bad = |topic: &str, payload: &str| kafkube_bus::Outgoing::new(topic, Some("k"), payload.as_bytes().to_vec());
    let records = [
        bad(&s.args.order_topic, "not json"),
        bad(&s.args.order_topic, r#"{"order_id": "", "email": "a@b.co"}"#),
        bad(&s.args.confirm_topic, r#"{"order_id": 5}"#),
        bad(
            &s.args.status_topic,
            r#"{"order_id": "x", "status": "teleported", "at": "2026-01-01T00:00:00Z"}"#,
        ),
    ];
    for r in producer.send_all(&records).await {
        r.unwrap();
    }
    let id = s.place(GOOD_CARD, "after@example.com").await;
    s.wait_for(&id, "email_sent", Duration::from_secs(30)).await;
    for (topic, n) in [
        (&s.args.order_topic, 2),
        // Two groups read `order_confirm` (the mailer, the API's follower): each rejects it.
        (&s.args.confirm_topic, 2),
        (&s.args.status_topic, 1),
    ] {
        let dlq = s
            .kafka
            .read_exact(&format!("{topic}.dlq"), n, Duration::from_secs(15))
            .await;
        assert_eq!(dlq.len(), n, "{topic}.dlq");
        for r in &dlq {
            assert!(r.header("kafkube-error").is_some(), "{topic}.dlq: {:?}", r.headers);
        }
    }
    assert_eq!(s.bank.charges(), 1);
}

/// A bank over HTTP (`BANK_URL`): a real HTTP peer that fails twice with 503, declines one card
/// with 402 and approves the rest. Every attempt for an order carries the order id as
/// `Idempotency-Key`, the 503s are retried, and each order is charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_bank_is_asked_with_the_order_id_and_retried_after_a_503() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};

    #[derive(Default)]
    struct Bank {
        requests: Vec<(String, String)>,
        charges: HashMap<String, String>,
    }
    let bank = Arc::new(Mutex::new(Bank::default()));
    let state = bank.clone();
    let app = axum::Router::new().route(
        "/charges",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let state = state.clone();
            async move {
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let mut b = state.lock().unwrap();
                b.requests
                    .push((key.clone(), headers["authorization"].to_str().unwrap().to_owned()));
                if b.requests.len() <= 2 {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"error": "busy"})),
                    );
                }
                if body["card_number"] == DECLINED_CARD {
                    return (
                        StatusCode::PAYMENT_REQUIRED,
                        axum::Json(serde_json::json!({"reason": "do not honor"})),
                    );
                }
                let n = b.charges.len();
                let id = b.charges.entry(key).or_insert_with(|| format!("ch_{n}")).clone();
                (StatusCode::CREATED, axum::Json(serde_json::json!({"id": id})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut s = Stack::new(Backend::Sqlite).await;
    s.args.payments.bank_url = Some(url);
    s.args.payments.bank_api_key = Some(secrecy::SecretString::from("sk_test_1".to_owned()));
    s.start_api().await;
    s.start_payments_as(kafkube_restaurants::Payments::default()).await;
    s.start_mailer().await;
    let paid = s.place(GOOD_CARD, "http@example.com").await;
    let declined = s.place(DECLINED_CARD, "no@example.com").await;
    s.wait_for(&paid, "email_sent", Duration::from_secs(60)).await;
    let o = s.wait_for(&declined, "rejected", Duration::from_secs(60)).await;
    assert_eq!(o["history"][1]["reason"], "do not honor");

    let b = bank.lock().unwrap();
    assert!(
        b.requests.len() >= 4,
        "two 503s, then one answer per order: {:?}",
        b.requests
    );
    for (key, auth) in &b.requests {
        assert!(key == &paid || key == &declined, "idempotency key {key} is an order id");
        assert_eq!(auth, "Bearer sk_test_1");
    }
    assert_eq!(
        b.charges.keys().collect::<Vec<_>>(),
        [&paid],
        "one charge, for the paid order"
    );
    assert_eq!(s.bank.charges(), 0, "the test bank was not used");
}
