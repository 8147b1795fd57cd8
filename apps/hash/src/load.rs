//! `kafkube load hash`: requests with random data over `--concurrency` connections, each answer
//! checked against a locally computed SHA-256.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::model::{HashReply, sha256_hex};

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Base URL of a hash gateway.
    #[arg(long, env = "HASH_GATEWAY_URL", default_value = "http://127.0.0.1:3001")]
    pub url: String,

    /// Requests to send.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 50, value_parser = kafkube_core::args::at_least_one())]
    pub concurrency: usize,

    /// Length of each request's random `data`, in characters.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

pub use kafkube_load::LoadReport;

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if args.requests == 0 {
        anyhow::bail!("--requests must be at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{}/hash", args.url.trim_end_matches('/'));
    // One request first: a clear message when nothing listens, instead of a run of failures.
    check_one(&client, &url)
        .await
        .with_context(|| format!("{url} does not answer correctly: is the hash gateway (and a processor) running?"))?;
    let wrong = Arc::new(AtomicU64::new(0));
    let summary = kafkube_load::run(args.requests, args.concurrency, args.requests, "hashing", |_| {
        let (client, url, wrong) = (client.clone(), url.clone(), wrong.clone());
        let data: String = std::iter::repeat_with(fastrand::alphanumeric).take(args.size).collect();
        async move {
            let reply = post(&client, &url, &data).await?;
            if reply.hash != sha256_hex(data.as_bytes()) || uuid::Uuid::parse_str(&reply.id).is_err() {
                wrong.fetch_add(1, Ordering::Relaxed);
                return Err("wrong hash or id in the reply".to_owned());
            }
            Ok(1)
        }
    })
    .await;
    let wrong = wrong.load(Ordering::Relaxed);
    let mut text = format!(
        "done requests={} ok={} failed={} wrong={wrong}\n",
        summary.requests,
        summary.units,
        summary.failed()
    );
    text += &summary.report("requests");
    let ok = summary.failed() == 0;
    if ok {
        text += "check      every reply carried the right SHA-256\n";
    }
    Ok(LoadReport { text, ok })
}

async fn check_one(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let reply = post(client, url, "hello world").await.map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        reply.hash == sha256_hex(b"hello world"),
        "wrong hash for \"hello world\": {}",
        reply.hash
    );
    Ok(())
}

async fn post(client: &reqwest::Client, url: &str, data: &str) -> Result<HashReply, String> {
    let res = client
        .post(url)
        .json(&json!({ "data": data }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    if !status.is_success() {
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", body["error"].as_str().unwrap_or("")));
    }
    res.json().await.map_err(|e| format!("unreadable reply: {e}"))
}
