//! HTTP calls that fail the test with the URL when they fail.

/// `GET url` and its JSON body (the test fails with the URL if either step does).
pub async fn get_json(url: &str) -> serde_json::Value {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// `GET url` and its body as text (`/metrics`).
pub async fn get_text(url: &str) -> String {
    let res = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    res.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `POST url` with a JSON body; the status and the JSON body of the answer (`null` if empty).
pub async fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}
