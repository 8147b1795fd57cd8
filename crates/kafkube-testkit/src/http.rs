//! HTTP calls that fail the test with the URL when they fail.

use std::sync::LazyLock;

/// One client for every call of every test. It keeps no idle connections: each test has its own
/// runtime, and a pooled connection would outlive the runtime it was opened on. (Building a
/// client per call, as before, loads the system's TLS roots each time: with 40 test clients
/// hashing in a loop that took the CPU the services under test needed.)
pub fn client() -> &'static reqwest::Client {
    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client")
    });
    &CLIENT
}

/// `GET url` and its JSON body (the test fails with the URL if either step does).
pub async fn get_json(url: &str) -> serde_json::Value {
    let res = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// `GET url` and its body as text (`/metrics`).
pub async fn get_text(url: &str) -> String {
    let res = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `POST url` with a JSON body; the status and the JSON body of the answer (`null` if empty).
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let res = client()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
