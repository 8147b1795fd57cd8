//! `kafkube load aggregator`: the seed's publisher simulator.
//!
//! Sends exactly `--count` events in batches of `--batch-size` over `--concurrency` connections.
//! `count × dup-rate` of them repeat an id sent before — some inside the same batch, some in an
//! earlier batch, some in a batch that is in flight at the same time — so the expected result is
//! known exactly: `inserted = count − duplicates`. Then it checks the server's answers and its
//! `/stats` deltas against that, and fails on any mismatch.
//!
//! With `--via kafka` the same events go to the aggregator's ingest topic as Kafka records
//! instead (one event per record), and the run lasts until `/stats` has counted every one of
//! them: events/s through the Kafka ingest, from the first record sent to the last one stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Base URL of the aggregator.
    #[arg(long, env = "AGGREGATOR_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Events to send, repeats included.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,

    /// Share of the events that repeat an id already sent (0 to 0.9).
    #[arg(long, default_value_t = 0.3, value_parser = kafkube_core::args::share_up_to(0.9))]
    pub dup_rate: f64,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 50, value_parser = kafkube_core::args::at_least_one())]
    pub concurrency: usize,

    /// Events per request.
    #[arg(long, default_value_t = 100, value_parser = kafkube_core::args::at_least_one())]
    pub batch_size: usize,

    /// Topics the events are spread over (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "auth,payment,orders")]
    pub topics: Vec<String>,

    /// Seed of the generator, to repeat a run exactly.
    #[arg(long)]
    pub seed: Option<u64>,

    /// How the events reach the aggregator: `http` (`POST /publish`) or `kafka` (records on
    /// `--kafka-topic`, read by its Kafka ingest; the broker from `KAFKA_BROKERS`).
    #[arg(long, value_enum, default_value = "http")]
    pub via: Via,

    /// The ingest topic, with `--via kafka`.
    #[arg(long, default_value = "logs", value_name = "TOPIC")]
    pub kafka_topic: String,

    #[command(flatten)]
    pub kafka: kafkube_bus::KafkaArgs,

    /// After the run, measure the ceiling on this PostgreSQL database (the aggregator's): a plain
    /// `COPY` of the same unique rows into a temporary copy of `agg_events` with its unique index.
    #[arg(long, value_name = "POSTGRES_URL")]
    pub copy_ceiling: Option<String>,
}

/// How `kafkube load aggregator` delivers the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Http,
    Kafka,
}

/// The events to send, in order, and how many of them are repeats.
pub fn generate(args: &LoadArgs, run: &str) -> (Vec<Value>, u64) {
    let mut rng = args.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    let dups = ((args.count as f64) * args.dup_rate.clamp(0.0, 0.9)).round() as u64;
    let uniques = args.count - dups;
    let topics: Vec<&str> = if args.topics.is_empty() {
        vec!["logs"]
    } else {
        args.topics.iter().map(String::as_str).collect()
    };
    // Each event gets a sort key: originals their index, repeats a key after their original's
    // (within a few batches), so repeats fall in the same batch, a later one, or a concurrent one.
    let window = (args.batch_size as f64) * (args.concurrency as f64).max(2.0);
    let mut keyed: Vec<(f64, u64)> = (0..uniques).map(|i| (i as f64, i)).collect();
    for _ in 0..dups {
        let original = rng.u64(0..uniques.max(1));
        keyed.push((original as f64 + rng.f64() * window + 0.5, original));
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let events = keyed
        .into_iter()
        .map(|(_, i)| {
            let topic = topics[(i % topics.len() as u64) as usize];
            json!({
                "topic": topic,
                "event_id": format!("{run}-{i}"),
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "source": "kafkube-load",
                "payload": {"n": i, "level": "info", "message": format!("event {i} of run {run}")},
            })
        })
        .collect();
    (events, dups)
}

pub use kafkube_load::LoadReport;

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if args.count == 0 || args.batch_size == 0 {
        anyhow::bail!("--count and --batch-size must be at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = args.url.trim_end_matches('/').to_owned();
    let before = stats(&client, &base)
        .await
        .with_context(|| format!("cannot read {base}/stats: is the aggregator running?"))?;
    let run = format!("load-{:08x}", fastrand::u32(..));
    let (events, dups) = generate(args, &run);
    // Bodies are serialised before the clock starts: the run measures the aggregator, not the
    // generator's JSON encoder (which shares the machine's cores with it).
    let batches: Arc<Vec<(u64, bytes::Bytes)>> = Arc::new(
        events
            .chunks(args.batch_size)
            .map(|c| serde_json::to_vec(c).map(|b| (c.len() as u64, bytes::Bytes::from(b))))
            .collect::<Result<_, _>>()?,
    );
    if args.via == Via::Kafka {
        return run_kafka(args, &client, &base, &before, &events, dups).await;
    }
    let (inserted, duplicates) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    // Batches answered 503 and sent again, as a client should: a retry is safe, the aggregator
    // deduplicates by (topic, event_id) whether or not the first attempt was stored.
    let (retried, retried_events) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let url = format!("{base}/publish");
    let summary = kafkube_load::run(batches.len() as u64, args.concurrency, args.count, "publishing", |i| {
        let (client, url, batches) = (client.clone(), url.clone(), batches.clone());
        let (inserted, duplicates) = (inserted.clone(), duplicates.clone());
        let (retried, retried_events) = (retried.clone(), retried_events.clone());
        async move {
            let (n, body) = &batches[i as usize];
            let mut backoff = Duration::from_millis(100);
            let mut attempts = 0;
            let res = loop {
                let res = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                attempts += 1;
                if res.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempts == MAX_ATTEMPTS {
                    break res;
                }
                retried.fetch_add(1, Ordering::Relaxed);
                retried_events.fetch_add(*n as i64, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            };
            if !res.status().is_success() {
                return Err(format!("HTTP {}", res.status()));
            }
            let body: Value = res.json().await.map_err(|e| e.to_string())?;
            inserted.fetch_add(body["inserted"].as_i64().unwrap_or(0), Ordering::Relaxed);
            duplicates.fetch_add(body["duplicates"].as_i64().unwrap_or(0), Ordering::Relaxed);
            Ok(*n)
        }
    })
    .await;
    let after = stats(&client, &base).await?;
    let delta = |k: &str| after[k].as_i64().unwrap_or(0) - before[k].as_i64().unwrap_or(0);
    let (inserted, duplicates) = (inserted.load(Ordering::Relaxed), duplicates.load(Ordering::Relaxed));
    let expected_inserted = (args.count - dups) as i64;
    let mut text = format!(
        "done received={} inserted={inserted} duplicates={duplicates} dup_rate={:.1}%\n",
        summary.units,
        100.0 * duplicates as f64 / (summary.units as f64).max(1.0),
    );
    text += &summary.report("events");
    let mut ok = summary.failed() == 0;
    let checks = [
        ("inserted (responses)", inserted, expected_inserted),
        ("duplicates (responses)", duplicates, dups as i64),
        ("/stats received", delta("received"), args.count as i64),
        ("/stats unique_processed", delta("unique_processed"), expected_inserted),
        ("/stats duplicate_dropped", delta("duplicate_dropped"), dups as i64),
    ];
    let (retried, retried_events) = (retried.load(Ordering::Relaxed), retried_events.load(Ordering::Relaxed));
    if retried > 0 {
        text += &format!("retried    {retried} batch(es) ({retried_events} events) answered 503 and sent again\n");
    }
    for (what, got, want) in checks {
        // A 503'd batch may have been stored before its answer was lost: its retry then counts
        // as received again and answers duplicates. What was stored must still be exact.
        let within_retries = retried_events > 0
            && match what {
                "inserted (responses)" => (want - retried_events..=want).contains(&got),
                "duplicates (responses)" | "/stats duplicate_dropped" => (want..=want + retried_events).contains(&got),
                "/stats received" => (want..=want + retried_events).contains(&got),
                _ => false,
            };
        if got != want && !within_retries {
            ok = false;
            text += &format!("MISMATCH {what}: expected {want}, got {got}\n");
        }
    }
    if ok {
        text += "check      responses and /stats deltas match what was sent\n";
    }
    if let Some(url) = &args.copy_ceiling {
        let (rows, secs) = copy_ceiling(url, &events).await.context("measuring the COPY ceiling")?;
        text += &format!(
            "ceiling    COPY of the same {rows} unique rows: {:.0} rows/s ({secs:.2}s); ingest reached {:.0}% of it\n",
            rows as f64 / secs,
            100.0 * summary.units_per_second() / (rows as f64 / secs) * (expected_inserted as f64 / args.count as f64),
        );
    }
    Ok(LoadReport { text, ok })
}

/// Attempts per batch answered 503 (database unavailable), about 30 s with the backoff.
const MAX_ATTEMPTS: u32 = 18;

/// `--via kafka`: every event a record on the ingest topic; done when `/stats` counted them all.
async fn run_kafka(
    args: &LoadArgs,
    client: &reqwest::Client,
    base: &str,
    before: &Value,
    events: &[Value],
    dups: u64,
) -> anyhow::Result<LoadReport> {
    use kafkube_bus::{Cluster, Outgoing, Producer};
    let cluster = Cluster::resolve(&args.kafka, false)?;
    let producer = Producer::new(&cluster.config)?;
    let records: Arc<Vec<Vec<Outgoing>>> = Arc::new(
        events
            .chunks(args.batch_size)
            .map(|c| {
                c.iter()
                    .map(|e| {
                        let key = e["event_id"].as_str().unwrap_or_default().to_owned();
                        Outgoing::new(&args.kafka_topic, Some(key), e.to_string())
                    })
                    .collect()
            })
            .collect(),
    );
    let received_before = before["received"].as_i64().unwrap_or(0);
    let started = std::time::Instant::now();
    let sent = kafkube_load::run(records.len() as u64, args.concurrency, args.count, "producing", |i| {
        let (producer, records) = (producer.clone(), records.clone());
        async move {
            let batch = &records[i as usize];
            for r in producer.send_all(batch).await {
                r.map_err(|e| e.to_string())?;
            }
            Ok(batch.len() as u64)
        }
    })
    .await;
    // The aggregator may still be storing: wait until it has counted every event and stored
    // every distinct one (at most 2 minutes of no progress), with a progress bar of its own.
    let expected_inserted = (args.count - dups) as i64;
    let unique_before = before["unique_processed"].as_i64().unwrap_or(0);
    let bar = kafkube_load::progress_bar(args.count, "stored");
    let mut last = ((received_before, unique_before), std::time::Instant::now());
    let after = loop {
        let now = stats(client, base).await?;
        let received = now["received"].as_i64().unwrap_or(0) - received_before;
        let unique = now["unique_processed"].as_i64().unwrap_or(0) - unique_before;
        bar.set_position(u64::try_from(received).unwrap_or(0));
        if received >= args.count as i64 && unique >= expected_inserted {
            break now;
        }
        if (received, unique) != last.0 {
            last = ((received, unique), std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(120) {
            bar.finish_and_clear();
            anyhow::bail!(
                "the aggregator counted {received} of {} events ({unique} of {expected_inserted} distinct ones stored) and has made no progress for 2 minutes: is it reading {}?",
                args.count,
                args.kafka_topic
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let delta = |k: &str| after[k].as_i64().unwrap_or(0) - before[k].as_i64().unwrap_or(0);
    let mut text = format!(
        "done       {} events through Kafka topic {} in {:.2}s: {:.0} events/s (first record sent to last one stored)\n",
        args.count,
        args.kafka_topic,
        elapsed.as_secs_f64(),
        args.count as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    text += &format!(
        "produce    {:.0} records/s acknowledged by the broker (p99 of a batch of {}: {:.1} ms)\n",
        sent.units_per_second(),
        args.batch_size,
        sent.latency_ms(99.0),
    );
    let mut ok = sent.failed() == 0;
    for (e, n) in &sent.errors {
        text += &format!("{n} batch(es) failed: {e}\n");
    }
    for (what, got, want) in [
        ("/stats received", delta("received"), args.count as i64),
        ("/stats unique_processed", delta("unique_processed"), expected_inserted),
        ("/stats duplicate_dropped", delta("duplicate_dropped"), dups as i64),
    ] {
        if got != want {
            ok = false;
            text += &format!("MISMATCH {what}: expected {want}, got {got}\n");
        }
    }
    if delta("received") > args.count as i64 {
        text += &format!(
            "           {} records were delivered twice by Kafka (a rebalance or a restart before their offsets were committed); each event is still stored once\n",
            delta("received") - args.count as i64
        );
    }
    if ok {
        text += "check      /stats deltas match what was sent\n";
    }
    Ok(LoadReport { text, ok })
}

/// Times a `COPY` of the run's unique events into a temporary table shaped like `agg_events`
/// (same columns, same unique index): the fastest PostgreSQL can store these rows.
async fn copy_ceiling(url: &str, events: &[Value]) -> anyhow::Result<(usize, f64)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CREATE TEMP TABLE agg_copy (LIKE agg_events INCLUDING DEFAULTS INCLUDING INDEXES)")
        .execute(&mut conn)
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut csv = String::new();
    let now = chrono::Utc::now().to_rfc3339();
    for e in events {
        let key = (e["topic"].to_string(), e["event_id"].to_string());
        if !seen.insert(key) {
            continue;
        }
        let field = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let quote = |s: String| format!("\"{}\"", s.replace('"', "\"\""));
        csv += &[
            quote(field(&e["topic"])),
            quote(field(&e["event_id"])),
            quote(field(&e["timestamp"])),
            quote(field(&e["source"])),
            quote(field(&e["payload"])),
            quote(now.clone()),
        ]
        .join(",");
        csv.push('\n');
    }
    let started = std::time::Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY agg_copy (topic, event_id, timestamp, source, payload, received_at) FROM STDIN (FORMAT csv)")
        .await?;
    copy.send(csv.as_bytes()).await?;
    copy.finish().await?;
    Ok((seen.len(), started.elapsed().as_secs_f64()))
}

async fn stats(client: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{base}/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Options that would hang or panic the run are refused when parsed, with the reason.
    #[test]
    fn refuses_a_run_that_could_not_work() {
        use clap::{Args as _, FromArgMatches as _};
        let parse = |extra: &[&str]| {
            let cmd = LoadArgs::augment_args(clap::Command::new("load"));
            cmd.try_get_matches_from(std::iter::once("load").chain(extra.iter().copied()))
                .map_err(|e| e.to_string())
                .and_then(|m| LoadArgs::from_arg_matches(&m).map_err(|e| e.to_string()))
        };
        assert!(parse(&[]).is_ok());
        for bad in [["--batch-size", "0"], ["--concurrency", "0"], ["--dup-rate", "1.5"]] {
            let err = parse(&bad).expect_err(bad[0]);
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn generates_exactly_the_requested_repeats() {
        let args = LoadArgs {
            url: String::new(),
            count: 1000,
            dup_rate: 0.3,
            concurrency: 4,
            batch_size: 10,
            topics: vec!["a".into(), "b".into()],
            seed: Some(7),
            via: Via::Http,
            kafka_topic: "logs".into(),
            kafka: kafkube_bus::KafkaArgs::default(),
            copy_ceiling: None,
        };
        let (events, dups) = generate(&args, "r");
        assert_eq!((events.len(), dups), (1000, 300));
        let distinct: HashSet<_> = events
            .iter()
            .map(|e| (e["topic"].to_string(), e["event_id"].to_string()))
            .collect();
        assert_eq!(distinct.len(), 700);
        // Some repeats share a batch with their original.
        let in_batch = events
            .chunks(10)
            .filter(|c| c.iter().map(|e| &e["event_id"]).collect::<HashSet<_>>().len() < c.len())
            .count();
        assert!(in_batch > 0);
        // And some repeat an id first sent in another batch.
        let mut first_batch = std::collections::HashMap::new();
        let mut cross_batch = 0;
        for (b, chunk) in events.chunks(10).enumerate() {
            for e in chunk {
                let first = *first_batch.entry(e["event_id"].to_string()).or_insert(b);
                cross_batch += usize::from(first != b);
            }
        }
        assert!(cross_batch > 0);
    }
}
