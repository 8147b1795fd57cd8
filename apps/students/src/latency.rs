//! `kafkube latency`: the seed's latency test as a command.
//!
//! Sends students to the API at a fixed rate, follows each write's event (the `x-event-id`
//! response header) into `event_logs`, and reports, from the timestamps stored there,
//! L_end_to_end = processed − api_sent, L_kafka_queue = kafka_received − api_sent and
//! L_consumer_processing = processed − kafka_received (avg/min/max/P50/P95/P99), plus the HTTP
//! round trip the client saw. `--csv` writes the raw rows for plotting.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use kafkube_store::{Db, DbArgs, on_db};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::api::EVENT_ID_HEADER;

#[derive(Args, Clone, Debug)]
pub struct LatencyArgs {
    /// Base URL of the students API.
    #[arg(long, env = "STUDENTS_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// The log database the event logger writes to (read here).
    #[command(flatten)]
    pub log: crate::config::LogDatabaseArgs,

    /// Number of students to create (ignored with --duration).
    #[arg(long, default_value_t = 50)]
    pub count: u64,

    /// Requests per second; 0 sends as fast as --concurrency allows.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// Run for this long at --rate instead of sending --count (e.g. `30s`, `2m`).
    #[arg(long, value_parser = kafkube_core::time::parse_duration)]
    pub duration: Option<Duration>,

    /// Requests in flight at most.
    #[arg(long, default_value_t = 32, value_parser = kafkube_core::args::at_least_one())]
    pub concurrency: usize,

    /// How long to wait for the last events to reach `event_logs`.
    #[arg(long, value_parser = kafkube_core::time::parse_duration, default_value = "30s")]
    pub wait: Duration,

    /// Write one row per event (timestamps and the three latencies) to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One event's journey.
#[derive(Clone, Debug)]
pub struct Sample {
    pub event_id: String,
    pub api_sent: DateTime<Utc>,
    pub kafka_received: DateTime<Utc>,
    pub processed: DateTime<Utc>,
}

impl Sample {
    fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
        (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
    }
    pub fn end_to_end_ms(&self) -> f64 {
        Self::ms(self.api_sent, self.processed)
    }
    pub fn kafka_queue_ms(&self) -> f64 {
        Self::ms(self.api_sent, self.kafka_received)
    }
    pub fn consumer_processing_ms(&self) -> f64 {
        Self::ms(self.kafka_received, self.processed)
    }
}

/// avg / min / max / percentiles of a series, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Summary {
    /// Nearest-rank percentiles over the exact values.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            avg: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            max: v[v.len() - 1],
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
        }
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub sent: usize,
    pub failed: usize,
    pub samples: Vec<Sample>,
    pub missing: usize,
    pub http_ms: Vec<f64>,
    pub send_seconds: f64,
}

impl Report {
    pub fn table(&self) -> String {
        let rows = [
            (
                "L_end_to_end",
                self.samples.iter().map(Sample::end_to_end_ms).collect::<Vec<_>>(),
            ),
            (
                "L_kafka_queue",
                self.samples.iter().map(Sample::kafka_queue_ms).collect(),
            ),
            (
                "L_consumer_processing",
                self.samples.iter().map(Sample::consumer_processing_ms).collect(),
            ),
            ("HTTP POST round trip", self.http_ms.clone()),
        ];
        let mut s = format!(
            "{:<24}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
            "latency (ms)", "avg", "min", "max", "P50", "P95", "P99"
        );
        for (name, values) in rows {
            let m = Summary::of(&values);
            s += &format!(
                "{name:<24}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}\n",
                m.avg, m.min, m.max, m.p50, m.p95, m.p99
            );
        }
        s += &format!(
            "\n{} sent ({:.1}/s), {} failed, {} logged, {} missing. timestamp_api_sent has millisecond \
             resolution, so L_end_to_end and L_kafka_queue may read up to 1 ms high.\n",
            self.sent,
            self.sent as f64 / self.send_seconds.max(1e-9),
            self.failed,
            self.samples.len(),
            self.missing
        );
        s
    }

    pub fn write_csv(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?);
        writeln!(
            f,
            "event_id,timestamp_api_sent,timestamp_kafka_received,timestamp_processed,l_end_to_end_ms,l_kafka_queue_ms,l_consumer_processing_ms"
        )?;
        for s in &self.samples {
            writeln!(
                f,
                "{},{},{},{},{:.3},{:.3},{:.3}",
                s.event_id,
                s.api_sent.to_rfc3339(),
                s.kafka_received.to_rfc3339(),
                s.processed.to_rfc3339(),
                s.end_to_end_ms(),
                s.kafka_queue_ms(),
                s.consumer_processing_ms()
            )?;
        }
        f.flush()?;
        Ok(())
    }
}

/// Runs the test and returns the report (the command prints it and fails on losses).
pub async fn run(args: &LatencyArgs) -> anyhow::Result<Report> {
    let url = args.log.url.expose();
    // Checked before a single student is sent: run elsewhere than `up`'s directory, the default
    // sqlite:data/event-logs.db is not the event logger's (and opening it would create it).
    let hint = "run `kafkube latency` in the directory `kafkube up` runs in, or give the event \
                logger's database with --log-database-url / LOG_DATABASE_URL";
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            bail!("the log database {path} does not exist: {hint}");
        }
    }
    let db = Db::connect(url, &DbArgs::default())
        .await
        .with_context(|| "cannot open the log database (--log-database-url / LOG_DATABASE_URL)")?;
    on_db!(&db, p => sqlx::query("SELECT 1 FROM event_logs LIMIT 1").fetch_optional(p).await.map(drop)).map_err(
        |e| {
            anyhow::anyhow!(
                "the log database {} has no readable event_logs table ({e}): {hint}",
                args.log.url
            )
        },
    )?;
    let total = match args.duration {
        Some(d) => (d.as_secs_f64() * args.rate).round() as u64,
        None => args.count,
    };
    if total == 0 {
        bail!("nothing to send: --count is 0, or --duration × --rate is");
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let url = format!("{}/api/mahasiswa", args.url.trim_end_matches('/'));
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let started_at = Utc::now();

    let bar = crate::progress_bar(total, "sending");
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut interval = (args.rate > 0.0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    let send_started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        if let Some(iv) = interval.as_mut() {
            iv.tick().await;
        }
        let permit = limit.clone().acquire_owned().await?;
        let (client, url, bar) = (client.clone(), url.clone(), bar.clone());
        let body =
            json!({"nim": format!("lat-{run_id}-{i}"), "nama": format!("Latency {i}"), "jurusan": "Informatika"});
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = client.post(&url).json(&body).send().await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            drop(permit);
            bar.inc(1);
            match res {
                Ok(r) if r.status() == reqwest::StatusCode::CREATED => r
                    .headers()
                    .get(EVENT_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(|id| (id.to_owned(), ms))
                    .ok_or_else(|| format!("201 without an {EVENT_ID_HEADER} header")),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    let mut ids = HashSet::new();
    let mut http_ms = Vec::new();
    let mut failures: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        match t.await? {
            Ok((id, ms)) => {
                ids.insert(id);
                http_ms.push(ms);
            }
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    let send_seconds = send_started.elapsed().as_secs_f64();
    bar.finish_with_message("sent");
    for (e, n) in &failures {
        eprintln!("{n} request(s) failed: {e}");
    }

    let wait = crate::progress_bar(ids.len() as u64, "waiting for event_logs");
    let deadline = Instant::now() + args.wait;
    let samples = loop {
        let found = fetch(&db, started_at, &ids).await?;
        wait.set_position(found.len() as u64);
        if found.len() >= ids.len() || Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait.finish_and_clear();
    let report = Report {
        sent: total as usize,
        failed: failures.values().sum(),
        missing: ids.len() - samples.len(),
        samples,
        http_ms,
        send_seconds,
    };
    if let Some(path) = &args.csv {
        report.write_csv(path)?;
    }
    Ok(report)
}

type LogTimes = (String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);

/// The `event_logs` rows of this run's events.
async fn fetch(db: &Db, since: DateTime<Utc>, ids: &HashSet<String>) -> anyhow::Result<Vec<Sample>> {
    // Rows since the run started, filtered here: portable, and cheap thanks to the index.
    let sql = "SELECT event_id, timestamp_api_sent, timestamp_kafka_received, timestamp_processed \
               FROM event_logs WHERE timestamp_processed >= $1";
    let since = since - chrono::Duration::seconds(1);
    let rows: Vec<LogTimes> = on_db!(db, p => sqlx::query_as(sql).bind(since).fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .filter(|r| ids.contains(&r.0))
        .map(|(event_id, api_sent, kafka_received, processed)| Sample {
            event_id,
            api_sent,
            kafka_received,
            processed,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!((s.min, s.max, s.p50, s.p95, s.p99), (1.0, 100.0, 50.0, 95.0, 99.0));
        assert!((s.avg - 50.5).abs() < 1e-9);
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(Summary::of(&[7.0]).p99, 7.0);
    }
}
