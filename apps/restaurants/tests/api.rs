//! The restaurants API against a real database: the seed's search, orders, and a 4xx naming what
//! is wrong for every kind of bad input (never a 5xx).

#![allow(clippy::unwrap_used)]

mod common;

use common::{GOOD_CARD, Stack};
use kafkube_testkit::{Backend, backend_tests, http_client};
use serde_json::{Value, json};

async fn names(s: &Stack, query: &str) -> Vec<String> {
    let res = http_client()
        .get(s.url(&format!("/search{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{query}");
    let list: Vec<Value> = res.json().await.unwrap();
    list.iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

async fn search_filters_like_the_seed(backend: Backend) {
    let mut s = Stack::new(backend).await;
    s.start_api().await;
    assert_eq!(
        names(&s, "").await.len(),
        15,
        "the seed's list is imported at the first start"
    );
    assert_eq!(names(&s, "?restaurant_name=china").await, ["China city", "China town"]);
    assert_eq!(
        names(&s, "?restaurant_name=CHINA&vegetarian=true").await,
        ["China city"]
    );
    assert_eq!(names(&s, "?restaurant_style=chinese").await.len(), 5);
    assert_eq!(names(&s, "?restaurant_style=chin").await.len(), 0, "style is exact");
    assert_eq!(
        names(&s, "?restaurant_style=Italian&delivery=true").await,
        ["Amore Mio", "Cafe Italia"]
    );
    assert_eq!(
        names(&s, "?vegetarian=false&delivery=").await.len(),
        15,
        "false filters nothing"
    );
    assert_eq!(
        names(&s, "?restaurant_name=%25").await.len(),
        0,
        "LIKE wildcards are literal"
    );
    assert_eq!(names(&s, "?unknown=1").await.len(), 15);
    let one: Vec<Value> = http_client()
        .get(s.url("/search?restaurant_name=sabich"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        one,
        [json!({"name": "Sabich", "style": "Israeli", "vegetarian": true, "delivery": true})]
    );
}

async fn bad_input_gets_a_4xx_naming_the_field(backend: Backend) {
    let mut s = Stack::new(backend).await;
    s.start_api().await;
    let good = json!({"email": "ana@example.com", "creditCard": GOOD_CARD, "restaurant": "Sabich"});
    let post = |body: String, content_type: &'static str| {
        let url = s.url("/orders");
        async move {
            let res = http_client()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b.to_string()
    };
    for (body, field) in [
        (with("email", json!("not-an-address")), "email"),
        (with("email", json!("")), "email"),
        (with("email", json!(42)), "email"),
        (with("email", Value::Null), "email"),
        (with("restaurant", json!("Nowhere")), "restaurant"),
        (with("restaurant", json!(["Sabich"])), "restaurant"),
        (with("creditCard", json!("")), "creditCard"),
        (with("creditCard", json!("1".repeat(40))), "creditCard"),
        (with("amount", json!(-1)), "amount"),
        (with("amount", json!("12.345")), "amount"),
        (with("email", json!(format!("{}@x.io", "a".repeat(300)))), "email"),
        // Text PostgreSQL cannot store: the same 400 on every backend.
        (with("restaurant", json!("Sab\u{0}ich")), "restaurant"),
        (with("email", json!("ana\u{0}@example.com")), "email"),
        (with("creditCard", json!("4242\u{0}")), "creditCard"),
    ] {
        let (status, res) = post(body.clone(), "application/json").await;
        assert_eq!(status, 400, "{body} → {res}");
        assert_eq!(res["field"], field, "{body} → {res}");
        assert!(res["error"].as_str().unwrap().contains(field), "{res}");
    }
    for body in [
        "{",
        "[]",
        "null",
        "\"x\"",
        "{\"email\": \"a@b.co\", \"creditCard\": \"\u{0}\"}",
    ] {
        let (status, res) = post(body.to_owned(), "application/json").await;
        assert_eq!(status, 400, "{body} → {res}");
        assert!(res["error"].is_string(), "{res}");
    }
    let (status, _) = post(good.to_string(), "text/plain").await;
    assert_eq!(status, 415);
    let (status, _) = post(
        format!("{{\"email\":\"{}\"}}", "a".repeat(70 * 1024)),
        "application/json",
    )
    .await;
    assert_eq!(status, 413);

    for (path, expected) in [
        ("/search?vegetarian=yes", 400),
        ("/search?delivery=1", 400),
        ("/search?restaurant_name=chi%00na", 400),
        ("/search?restaurant_style=%00", 400),
        ("/orders/a%00b", 400),
        ("/orders/0190c2f0-0000-7000-8000-000000000000", 404),
        ("/orders/not%20an%20id", 404),
        ("/orders/0190c2f0-0000-7000-8000-000000000000/events", 404),
        (&format!("/orders/{}", "a".repeat(300)), 404),
    ] {
        let res = http_client().get(s.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), expected, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let health: Value = http_client()
        .get(s.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "healthy"}));
    let doc: Value = http_client()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/orders"]["post"].is_object(), "{doc}");
    assert!(doc["paths"]["/search"]["get"]["parameters"].as_array().unwrap().len() == 4);
}

async fn a_retried_order_with_the_same_idempotency_key_is_placed_once(backend: Backend) {
    let mut s = Stack::new(backend).await;
    s.start_api().await;
    let send = |key: &'static str, restaurant: &'static str| {
        let url = s.url("/orders");
        async move {
            let res = http_client()
                .post(url)
                .header("idempotency-key", key)
                .json(&json!({"email": "ana@example.com", "creditCard": GOOD_CARD, "restaurant": restaurant}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (a, first) = send("k-1", "Sabich").await;
    let (b, again) = send("k-1", "sabich").await;
    assert_eq!((a, b), (202, 202));
    assert_eq!(first["order_id"], again["order_id"]);
    assert_eq!(
        first["message"],
        "Order successfully placed, Wait for confirmation in your mail"
    );
    let (c, other) = send("k-1", "Ima").await;
    assert_eq!(c, 409, "{other}");
    let (d, second) = send("k-2", "Sabich").await;
    assert_eq!(d, 202);
    assert_ne!(second["order_id"], first["order_id"]);
    let records = s
        .kafka
        .read_exact(&s.args.order_topic, 2, std::time::Duration::from_secs(15))
        .await;
    assert_eq!(records.len(), 2, "one `order` record per order");
    let order = s.order(first["order_id"].as_str().unwrap()).await;
    assert_eq!(order["restaurant"], "Sabich");
    assert_eq!(order["card_last4"], "4242");
    assert_eq!(order["amount"], "25.00");
    assert_eq!(common::history(&order), ["placed"]);
}

/// 200 orders at once share transactions (group commit): each still gets its own answer — an
/// unknown restaurant its 400, a key sent five times at once one order, a key reused for another
/// order its 409 — and every order placed has exactly one `order` record.
async fn concurrent_orders_share_transactions_and_keep_their_own_answers(backend: Backend) {
    let mut s = Stack::new(backend).await;
    s.start_api().await;
    let url = s.url("/orders");
    let send = |i: usize| {
        let url = url.clone();
        async move {
            let (key, restaurant, email) = match i {
                i if i % 40 == 3 => (None, "No Such Place", format!("g{i}@example.com")),
                i if i % 50 == 5 => (Some("shared".to_owned()), "Sabich", "same@example.com".to_owned()),
                200 => (Some("shared".to_owned()), "Ima", "same@example.com".to_owned()),
                i => (Some(format!("k{i}")), "ima", format!("g{i}@example.com")),
            };
            let mut req = http_client()
                .post(url)
                .json(&json!({"email": email, "creditCard": GOOD_CARD, "restaurant": restaurant}));
            if let Some(key) = key {
                req = req.header("idempotency-key", key);
            }
            let res = req.send().await.unwrap();
            (i, res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let answers = futures::future::join_all((0..200).map(send)).await;
    let (_, status, body) = send(200).await;
    assert_eq!(status, 409, "the shared key, reused for another order: {body}");

    let mut shared_ids = std::collections::HashSet::new();
    let mut placed = std::collections::HashSet::new();
    for (i, status, body) in &answers {
        match i {
            i if i % 40 == 3 => {
                assert_eq!(*status, 400, "{i}: {body}");
                assert_eq!(body["field"], "restaurant");
                assert!(body["error"].as_str().unwrap().contains("No Such Place"), "{body}");
            }
            i if i % 50 == 5 => {
                assert_eq!(*status, 202, "{i}: {body}");
                shared_ids.insert(body["order_id"].as_str().unwrap().to_owned());
            }
            i => {
                assert_eq!(*status, 202, "{i}: {body}");
                placed.insert(body["order_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(shared_ids.len(), 1, "one order for the key sent four times at once");
    let expected = placed.len() + 1;
    assert_eq!(expected, 200 - 5 - 4 + 1);
    let records = s
        .kafka
        .read_exact(&s.args.order_topic, expected, std::time::Duration::from_secs(20))
        .await;
    let keys: std::collections::HashSet<String> = records
        .iter()
        .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(keys.len(), expected, "one `order` record per order placed");
    assert!(keys.is_superset(&placed) && keys.is_superset(&shared_ids));
    let order = s.order(shared_ids.iter().next().unwrap()).await;
    assert_eq!(
        order["restaurant"], "Sabich",
        "the shared key's first order, as the list spells it"
    );
    let order = s.order(placed.iter().next().unwrap()).await;
    assert_eq!(
        order["restaurant"], "Ima",
        "lower-case asked, the list's spelling stored"
    );
}

backend_tests!(
    search_filters_like_the_seed,
    bad_input_gets_a_4xx_naming_the_field,
    a_retried_order_with_the_same_idempotency_key_is_placed_once,
    concurrent_orders_share_transactions_and_keep_their_own_answers
);
