//! The page in a real browser: headless Chromium at a phone's width, driven over WebDriver
//! (`chromedriver`, started here on a port of its own). Search with the keyboard, order from a
//! result, follow the order live to "e-mail sent" without a reload, a declined card, and the
//! first view's weight and origins.
//!
//! Needs Debian's `chromium` and `chromium-driver`, which `scripts/test` installs; without them
//! the test fails (it never skips).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Stack;
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use kafkube_testkit::Backend;
use kafkube_testkit::browser::{ChromeDriver, screenshot, wait_js};
use serde::Deserialize;
use serde_json::{Value, json};

/// What the first view (page, styles, script, first search) may weigh, in bytes.
const FIRST_VIEW_BUDGET: f64 = 100_000.0;

const RESULT_NAMES: &str = "return [...document.querySelectorAll('#results li .name')].map(e => e.textContent);";
const ORDER_VIEW: &str = "const $ = (id) => document.getElementById(id);
    return {
        home: !$('home-view').hidden,
        order: !$('order-view').hidden,
        hash: location.hash,
        body: !$('order-body').hidden,
        id: $('order-id').textContent,
        status: $('order-status').textContent,
        reason: $('order-reason').hidden ? null : $('order-reason').textContent,
        timeline: [...document.querySelectorAll('#timeline li')].map(li => li.dataset.status),
        formError: $('order-form-error').hidden ? null : $('order-form-error').textContent,
    };";
const ENTRIES: &str = "return {
        origin: location.origin,
        entries: [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
            .map(e => ({ name: e.name, kind: e.initiatorType || e.entryType,
                         transfer: e.transferSize || 0, encoded: e.encodedBodySize || 0 })),
    };";

#[derive(Debug, Deserialize)]
struct Entries {
    origin: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
    kind: String,
    transfer: f64,
    encoded: f64,
}

async fn entries(c: &Client) -> Entries {
    serde_json::from_value(c.execute(ENTRIES, vec![]).await.unwrap()).unwrap()
}

async fn field(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.find(Locator::Css(css)).await.unwrap()
}

/// Places the order in the form (restaurant already chosen) and waits for the order view.
async fn place(c: &Client, email: &str, card: &str) -> Value {
    let e = field(c, "#order-email").await;
    e.clear().await.unwrap();
    e.send_keys(email).await.unwrap();
    let k = field(c, "#order-card").await;
    k.clear().await.unwrap();
    k.send_keys(card).await.unwrap();
    field(c, "#order-submit").await.click().await.unwrap();
    // The view shows the order the URL names (not the one shown before) once it is loaded.
    let v = wait_js(c, "the order view", Duration::from_secs(15), ORDER_VIEW, |v| {
        v["order"] == true
            && v["home"] == false
            && v["body"] == true
            && v["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty() && v["hash"] == format!("#order={id}"))
    })
    .await;
    assert!(field(c, "#order-status").await.is_displayed().await.unwrap());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_order_in_a_phone_sized_browser() {
    let started = Instant::now();
    let driver = ChromeDriver::start().await;
    let s = Stack::start(Backend::Sqlite).await;
    let c = driver.session().await;
    let url = s.url("/");
    c.goto(&url).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Restaurants – search & order");
    let screen = c
        .execute("return [innerWidth, document.documentElement.scrollWidth];", vec![])
        .await
        .unwrap();
    assert_eq!(screen, json!([390, 390]), "phone-wide, nothing wider: [viewport, page]");

    // The first view is loaded once all restaurants fill the results and the order form's list.
    let first = wait_js(
        &c,
        "the first view",
        Duration::from_secs(15),
        "return { results: document.querySelectorAll('#results li').length,
                  options: document.getElementById('order-restaurant').options.length,
                  count: document.getElementById('results-count').textContent };",
        |v| v["results"] == 15 && v["options"] == 16,
    )
    .await;
    assert_eq!(first["count"], "15 restaurants");
    let first_view = entries(&c).await;
    let weight: f64 = first_view.entries.iter().map(|e| e.transfer.max(e.encoded)).sum();
    for part in ["/style.css", "/app.js", "/search"] {
        assert!(
            first_view
                .entries
                .iter()
                .any(|e| e.name == format!("{}{part}", first_view.origin)),
            "{part} in {first_view:?}"
        );
    }
    assert!(
        weight > 1000.0 && weight < FIRST_VIEW_BUDGET,
        "first view: {weight} bytes: {first_view:?}"
    );

    // 1. A name, submitted with Enter.
    let name = field(&c, "#search-name").await;
    name.send_keys(&format!("china{}", Key::Enter)).await.unwrap();
    let names = wait_js(&c, "the search for china", Duration::from_secs(15), RESULT_NAMES, |v| {
        v.as_array().is_some_and(|a| a.len() < 15)
    })
    .await;
    assert_eq!(names, json!(["China city", "China town"]));
    assert_eq!(field(&c, "#results-count").await.text().await.unwrap(), "2 restaurants");

    // 2. Vegetarian only.
    field(&c, "#search-vegetarian").await.click().await.unwrap();
    assert!(field(&c, "#search-vegetarian").await.is_selected().await.unwrap());
    field(&c, "#search-button").await.click().await.unwrap();
    let names = wait_js(
        &c,
        "the vegetarian search",
        Duration::from_secs(15),
        RESULT_NAMES,
        |v| v.as_array().is_some_and(|a| a.len() != 2),
    )
    .await;
    assert_eq!(names, json!(["China city"]));

    // 3. Order from the result: the form gets the restaurant and the focus.
    let button = field(&c, r#"#results button[aria-label="Order from China city"]"#).await;
    assert_eq!(button.text().await.unwrap(), "Order");
    button.click().await.unwrap();
    let focused = c.active_element().await.unwrap().attr("id").await.unwrap();
    assert_eq!(focused.as_deref(), Some("order-email"));
    let restaurant = field(&c, "#order-restaurant").await.prop("value").await.unwrap();
    assert_eq!(restaurant.as_deref(), Some("China city"));
    // Gone after a reload: the order must be followed in place.
    c.execute("window.__marker = 1;", vec![]).await.unwrap();
    let placed = place(&c, "ana@example.com", "4242 4242 4242 4242").await;
    let id = placed["id"].as_str().unwrap().to_owned();
    let done = wait_js(&c, "e-mail sent", Duration::from_secs(30), ORDER_VIEW, |v| {
        v["status"] == "e-mail sent" || v["status"] == "rejected"
    })
    .await;
    assert_eq!(done["status"], "e-mail sent", "{done}");
    assert_eq!(done["reason"], Value::Null, "{done}");
    assert_eq!(
        done["timeline"],
        json!(["placed", "paid", "confirmed", "email_sent"]),
        "{done}"
    );
    assert_eq!(
        field(&c, "#order-restaurant-name").await.text().await.unwrap(),
        "China city"
    );
    assert_eq!(
        field(&c, "#order-email-value").await.text().await.unwrap(),
        "ana@example.com"
    );
    assert_eq!(field(&c, "#order-card-value").await.text().await.unwrap(), "•••• 4242");
    assert_eq!(
        field(&c, "#order-status-text").await.text().await.unwrap(),
        "Confirmation e-mail sent to ana@example.com."
    );
    assert_eq!(
        c.execute("return window.__marker;", vec![]).await.unwrap(),
        1,
        "reloaded"
    );
    assert_eq!(s.order(&id).await["status"], "email_sent");

    // 4. A picture of it.
    let (_, width, height) = screenshot(&c, "restaurants-order").await;
    assert_eq!((width, height), (390, 844), "a phone's screen");

    // 5. Back to the form, a declined card.
    field(&c, "#new-order").await.click().await.unwrap();
    wait_js(&c, "the home view", Duration::from_secs(15), ORDER_VIEW, |v| {
        v["home"] == true && v["order"] == false
    })
    .await;
    let restaurant = field(&c, "#order-restaurant").await.prop("value").await.unwrap();
    assert_eq!(restaurant.as_deref(), Some("China city"));
    let placed = place(&c, "bo@example.com", "4000 0000 0000 0002").await;
    assert_ne!(placed["id"], id.as_str());
    let done = wait_js(&c, "rejected", Duration::from_secs(30), ORDER_VIEW, |v| {
        v["status"] == "rejected" || v["status"] == "e-mail sent"
    })
    .await;
    assert_eq!(done["status"], "rejected", "{done}");
    assert!(
        done["reason"].as_str().is_some_and(|r| r.contains("card declined")),
        "{done}"
    );
    assert!(field(&c, "#order-reason").await.is_displayed().await.unwrap());
    assert_eq!(
        c.execute("return window.__marker;", vec![]).await.unwrap(),
        1,
        "reloaded"
    );

    // 6. Everything came from the page's origin; one page load all along.
    let all = entries(&c).await;
    assert_eq!(all.origin, url.trim_end_matches('/'));
    let navigations: Vec<_> = all.entries.iter().filter(|e| e.kind == "navigation").collect();
    assert_eq!(navigations.len(), 1, "{all:?}");
    for e in &all.entries {
        assert!(
            e.name.starts_with(&format!("{}/", all.origin)),
            "third-party request: {e:?}"
        );
    }
    eprintln!(
        "first view: {weight} bytes in {} requests; {} requests in all; {:?}",
        first_view.entries.len(),
        all.entries.len(),
        started.elapsed()
    );

    assert_eq!(s.bank.charges(), 1, "the declined card was not charged");

    c.close().await.unwrap();
    drop(driver);
}
