//! `kafkube load restaurants`: orders against a running restaurants app (`kafkube up`, or the
//! three services), at a rate or flat out; then waits for every order's end and reports the
//! order → e-mail latency (the order's `placed` and `email_sent` times, both stamped by the
//! services on this machine), the throughput, and checks that every accepted order reached one
//! end state and every paid order exactly one e-mail (`.eml` files in `--mail-dir`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::model::{OrderView, Status};
use crate::payments::bank::DECLINED_CARD;

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Base URL of the restaurants app.
    #[arg(long, env = "RESTAURANTS_URL", default_value = "http://127.0.0.1:5000")]
    pub url: String,

    /// Orders to place.
    #[arg(long, default_value_t = 2000)]
    pub orders: u64,

    /// Orders per second; 0 places them as fast as the API accepts them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Orders in flight at once.
    #[arg(long, default_value_t = 64, value_parser = kafkube_core::args::at_least_one())]
    pub concurrency: usize,

    /// Share of orders paid with the test bank's declining card, in percent.
    #[arg(long, default_value_t = 5)]
    pub declined_percent: u64,

    /// Where the mailer writes its `.eml` files (`kafkube up`'s default): every paid order must
    /// have exactly one. Give `--mail-dir ''` when the mailer sends over SMTP.
    #[arg(long, default_value = "data/mail")]
    pub mail_dir: PathBuf,

    /// How long to wait for the last orders to finish, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub use kafkube_load::LoadReport;

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(args.orders > 0, "--orders must be at least 1");
    anyhow::ensure!(args.declined_percent <= 100, "--declined-percent is at most 100");
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let health = client.get(format!("{base}/health")).send().await;
    if !health.as_ref().is_ok_and(|r| r.status().is_success()) {
        anyhow::bail!("{base}/health does not answer: is the restaurants app running (`kafkube up`)?");
    }

    // Place the orders, paced when --rate is given.
    let bar = kafkube_load::progress_bar(args.orders, "ordering");
    let mut accept_us = kafkube_load::latency_histogram();
    let mut failures: HashMap<String, u64> = HashMap::new();
    let mut placed = Vec::with_capacity(args.orders as usize);
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.orders {
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = limit.clone().acquire_owned().await?;
        let declined = i % 100 < args.declined_percent;
        let card = if declined { DECLINED_CARD } else { "4242424242424242" };
        let (client, url) = (client.clone(), format!("{base}/orders"));
        tasks.spawn(async move {
            let t = Instant::now();
            let r = client
                .post(url)
                .json(&json!({"email": format!("load{i}@example.com"), "creditCard": card, "restaurant": "Sabich"}))
                .send()
                .await;
            let took = t.elapsed();
            drop(permit);
            let r = match r {
                Ok(res) if res.status() == 202 => res
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|b| b["order_id"].as_str().map(str::to_owned))
                    .ok_or_else(|| "a 202 without an order_id".to_owned()),
                Ok(res) => Err(format!("HTTP {}", res.status())),
                Err(e) => Err(e.to_string()),
            };
            (r, took, declined)
        });
        while let Some(done) = tasks.try_join_next() {
            collect(done?, &mut accept_us, &mut failures, &mut placed, &bar);
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect(done?, &mut accept_us, &mut failures, &mut placed, &bar);
    }
    let placing = started.elapsed();
    bar.finish_and_clear();

    // Wait for every accepted order to end.
    let bar = kafkube_load::progress_bar(placed.len() as u64, "finishing");
    let mut pending: Vec<(String, bool)> = placed.clone();
    let mut finished: Vec<(OrderView, bool)> = Vec::with_capacity(placed.len());
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while !pending.is_empty() && Instant::now() < deadline {
        let views: Vec<_> = futures::stream::iter(pending.drain(..))
            .map(|(id, declined)| {
                let client = client.clone();
                let url = format!("{base}/orders/{id}");
                async move {
                    let view = async { client.get(url).send().await.ok()?.json::<OrderView>().await.ok() }.await;
                    (id, declined, view)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        for (id, declined, view) in views {
            match view {
                Some(v) if v.status.is_final() => {
                    bar.inc(1);
                    finished.push((v, declined));
                }
                _ => pending.push((id, declined)),
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    bar.finish_and_clear();

    let mut mail_us = kafkube_load::latency_histogram();
    // Each leg of a paid order's way: placed → paid → confirmed → email_sent.
    let mut legs_us: [_; 3] = std::array::from_fn(|_| kafkube_load::latency_histogram());
    let mut wrong = Vec::new();
    let mut paid = 0;
    for (v, declined) in &finished {
        let statuses: Vec<Status> = v.history.iter().map(|h| h.status).collect();
        let ends = statuses.iter().filter(|s| s.is_final()).count();
        let expected = if *declined { Status::Rejected } else { Status::EmailSent };
        if ends != 1 || v.status != expected {
            wrong.push(format!(
                "order {} ended {:?} (history {statuses:?})",
                v.order_id, v.status
            ));
            continue;
        }
        if let Some(sent) = v.history.iter().find(|h| h.status == Status::EmailSent) {
            paid += 1;
            let us = (sent.at - v.placed_at).num_microseconds().unwrap_or(0).max(1) as u64;
            let _ = mail_us.record(us);
            let at = |s: Status| v.history.iter().find(|h| h.status == s).map(|h| h.at);
            let way = [
                Some(v.placed_at),
                at(Status::Paid),
                at(Status::Confirmed),
                Some(sent.at),
            ];
            for (leg, pair) in legs_us.iter_mut().zip(way.windows(2)) {
                if let [Some(from), Some(to)] = pair {
                    let _ = leg.record((*to - *from).num_microseconds().unwrap_or(0).max(1) as u64);
                }
            }
        }
    }
    let mails = if args.mail_dir.as_os_str().is_empty() {
        None
    } else {
        Some(count_mails(&args.mail_dir, finished.iter().map(|(v, _)| v)))
    };

    let accepted = placed.len() as u64;
    let failed: u64 = failures.values().sum();
    let pct = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p / 100.0) as f64 / 1000.0;
    let mut text = format!(
        "done       orders={} accepted={accepted} failed={failed} paid={paid} rejected={} unfinished={}\n\
         accepted   {:.0} orders/s over {:.2}s{}; POST /orders p50 {:.2} ms  p99 {:.2} ms\n",
        args.orders,
        finished.len() as u64 - paid - wrong.len() as u64,
        pending.len(),
        accepted as f64 / placing.as_secs_f64().max(1e-9),
        placing.as_secs_f64(),
        if args.rate > 0 {
            format!(" (paced at {}/s)", args.rate)
        } else {
            String::new()
        },
        pct(&accept_us, 50.0),
        pct(&accept_us, 99.0),
    );
    if paid > 0 {
        text += &format!(
            "e-mail     order accepted → e-mail written p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
            pct(&mail_us, 50.0),
            pct(&mail_us, 95.0),
            pct(&mail_us, 99.0),
            mail_us.max() as f64 / 1000.0
        );
        let leg = |name: &str, h: &hdrhistogram::Histogram<u64>| {
            format!("{name} p50 {:.2} ms  p99 {:.2} ms", pct(h, 50.0), pct(h, 99.0))
        };
        text += &format!(
            "legs       {};  {};  {}\n",
            leg("placed → paid", &legs_us[0]),
            leg("paid → confirmed", &legs_us[1]),
            leg("confirmed → e-mail", &legs_us[2]),
        );
    }
    for (e, n) in &failures {
        text += &format!("{n} order(s) refused: {e}\n");
    }
    for w in wrong.iter().take(10) {
        text += &format!("wrong      {w}\n");
    }
    let mut ok = failed == 0 && pending.is_empty() && wrong.is_empty();
    match mails {
        Some(Ok((files, missing))) => {
            if files == paid && missing == 0 {
                text += &format!(
                    "check      every order ended once; {paid} paid orders, {files} e-mails in {}\n",
                    args.mail_dir.display()
                );
            } else {
                ok = false;
                text += &format!(
                    "check      FAILED: {paid} paid orders but {files} e-mails of theirs in {} ({missing} missing)\n",
                    args.mail_dir.display()
                );
            }
        }
        Some(Err(e)) => {
            ok = false;
            text += &format!("check      cannot count the e-mails: {e:#}\n");
        }
        None if ok => text += "check      every order ended once (e-mails not counted: no --mail-dir)\n",
        None => {}
    }
    if !pending.is_empty() {
        text += &format!(
            "{} order(s) did not finish within {} s: are restaurant-payments and restaurant-mailer running?\n",
            pending.len(),
            args.timeout
        );
    }
    Ok(LoadReport { text, ok })
}

fn collect(
    (r, took, declined): (Result<String, String>, Duration, bool),
    accept_us: &mut hdrhistogram::Histogram<u64>,
    failures: &mut HashMap<String, u64>,
    placed: &mut Vec<(String, bool)>,
    bar: &kafkube_load::ProgressBar,
) {
    let _ = accept_us.record(took.as_micros().max(1) as u64);
    bar.inc(1);
    match r {
        Ok(id) => placed.push((id, declined)),
        Err(e) => *failures.entry(e).or_insert(0) += 1,
    }
}

/// `.eml` files of these orders' paid ones, and how many paid orders have none.
fn count_mails<'a>(dir: &std::path::Path, orders: impl Iterator<Item = &'a OrderView>) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a directory (run the load from `kafkube up`'s directory, or give --mail-dir)",
        dir.display()
    );
    let (mut files, mut missing) = (0, 0);
    for v in orders.filter(|v| v.status == Status::EmailSent) {
        if dir.join(format!("{}.eml", v.order_id)).is_file() {
            files += 1;
        } else {
            missing += 1;
        }
    }
    std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok((files, missing))
}
