//! 1,000 orders while the payments service and the mailer are killed (tasks aborted, nothing
//! committed or flushed) and restarted mid-stream, and the bank times out, fails, and loses the
//! answers of charges it made: every order reaches one end state, every paid order is charged
//! once and mailed once, declined cards are neither charged nor mailed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{DECLINED_CARD, GOOD_CARD, Stack};
use kafkube_restaurants::payments::bank::Decision;
use kafkube_testkit::{Backend, eventually, http_client};
use serde_json::json;

const ORDERS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_killed_services_and_a_flaky_bank() {
    kafkube_testkit::show_logs();
    // PostgreSQL, as in production; the other tests cover SQLite.
    let mut s = Stack::start(Backend::Postgres).await;
    s.bank.set_latency(Duration::from_millis(2));
    let url = s.url("/orders");
    // Every 20th card is declined.
    let cards: Vec<&str> = (0..ORDERS)
        .map(|i| if i % 20 == 7 { DECLINED_CARD } else { GOOD_CARD })
        .collect();
    let place = |i: usize| {
        let url = url.clone();
        let card = cards[i];
        async move {
            let res = http_client()
                .post(url)
                .json(&json!({"email": format!("guest{i}@example.com"), "creditCard": card, "restaurant": "Sabich"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
            let body: serde_json::Value = res.json().await.unwrap();
            (body["order_id"].as_str().unwrap().to_owned(), card == DECLINED_CARD)
        }
    };
    let mut orders = Vec::with_capacity(ORDERS);
    for i in 0..ORDERS {
        orders.push(place(i).await);
        match i {
            250 => {
                // The bank misbehaves: down, slow, and charging without answering.
                s.bank.fail_next(3);
                s.bank.time_out_next(3);
                s.bank.lose_answer_next(5);
            }
            400 => {
                s.payments.take().unwrap().kill();
            }
            500 => s.start_payments().await,
            650 => {
                s.mailer.take().unwrap().kill();
            }
            750 => {
                s.start_mailer().await;
                s.payments.take().unwrap().kill();
                s.bank.lose_answer_next(5);
            }
            800 => s.start_payments().await,
            _ => {}
        }
    }
    let declined = orders.iter().filter(|(_, d)| *d).count();
    let paid = ORDERS - declined;

    // Every order reaches its end state.
    let finished = eventually(Duration::from_secs(300), || async {
        let counts: HashMap<String, i64> = kafkube_restaurants::store::count_by_status(&s.db.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
        (counts.get("email_sent") == Some(&(paid as i64)) && counts.get("rejected") == Some(&(declined as i64)))
            .then_some(())
            .ok_or(counts)
            .ok()
    })
    .await;
    if finished.is_none() {
        panic!(
            "not every order finished: {:?}; payments {:?}, e-mails logged {}, files {}",
            kafkube_restaurants::store::count_by_status(&s.db.db).await.unwrap(),
            kafkube_restaurants::payments::count(&s.db.db).await.unwrap(),
            kafkube_restaurants::mailer::count(&s.db.db).await.unwrap(),
            s.eml_files().len()
        );
    }
    // Charged once each: the bank made one charge per paid order, and each paid order's
    // decision names the bank's charge.
    assert_eq!(s.bank.charges(), paid as u64);
    for (id, was_declined) in &orders {
        match s.bank.decision(id) {
            Some(Decision::Approved { .. }) => assert!(!was_declined),
            Some(Decision::Declined { .. }) => assert!(was_declined),
            None => panic!("order {id} never reached the bank"),
        }
    }
    let payments = kafkube_restaurants::payments::count(&s.db.db).await.unwrap();
    assert_eq!(
        payments,
        [
            ("paid".to_owned(), paid as i64),
            ("rejected".to_owned(), declined as i64)
        ]
    );
    // Mailed once each: one file per paid order, none for a declined one, one sent-log row each.
    let files = s.eml_files();
    assert_eq!(files.len(), paid);
    let declined_ids: std::collections::HashSet<_> = orders.iter().filter(|(_, d)| *d).map(|(id, _)| id).collect();
    assert!(files.iter().all(|(id, _)| !declined_ids.contains(id)));
    assert_eq!(kafkube_restaurants::mailer::count(&s.db.db).await.unwrap(), paid as i64);
}
