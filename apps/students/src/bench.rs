//! `kafkube bench event-logger`: how many events per second one logger instance writes.
//!
//! Produces `--events` synthetic `mahasiswa_events` records to a fresh topic, then starts one
//! logger instance on it and times it from its first logged row to its last — group join and
//! producing are not counted.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use kafkube_bus::{ConsumerRunner, ConsumerSettings, KafkaConfig, Outgoing, Producer, TopicSpec, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_store::{Db, DbArgs};
use serde_json::json;

use crate::logger::{EventLogHandler, count};

#[derive(Args, Clone, Debug)]
pub struct LoggerBenchArgs {
    /// Events to log.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,

    /// Largest batch the logger writes in one transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,

    /// Partitions of the benchmark topic. The embedded broker keeps at most 5 MiB or 100,000
    /// records per partition and drops the oldest beyond that, so all events must fit before
    /// the logger starts: about 20,000 events per partition.
    #[arg(long, default_value_t = 16)]
    pub partitions: i32,

    /// Database the benchmark logs into (a fresh `sqlite:` file is a fair default; a PostgreSQL
    /// URL measures that backend). Deliberately not LOG_DATABASE_URL: a benchmark writes into a
    /// service's database only when told to.
    #[arg(long = "database-url", default_value = "sqlite:data/bench-event-logs.db")]
    pub database_url: kafkube_store::DatabaseUrl,
}

#[derive(Debug)]
pub struct BenchResult {
    pub events: u64,
    pub seconds: f64,
}

impl BenchResult {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

pub async fn run(args: &LoggerBenchArgs, kafka: &KafkaConfig) -> anyhow::Result<BenchResult> {
    let db = Db::connect(args.database_url.expose(), &DbArgs::default()).await?;
    db.migrate(&crate::log_migrations()).await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let topic = format!("bench_mahasiswa_events_{run}");
    ensure_topics(kafka, &TopicSpec::with_dlq(topic.clone(), args.partitions)).await?;

    let producer = Producer::new(kafka)?;
    let bar = crate::progress_bar(args.events, "producing");
    let now = kafkube_core::time::now_epoch_ms();
    let mut sent = 0;
    while sent < args.events {
        let n = (args.events - sent).min(5000);
        let msgs: Vec<Outgoing> = (sent..sent + n)
            .map(|i| {
                let event = json!({
                    "eventId": format!("bench-{run}-{i}"),
                    "eventType": "MAHASISWA_CREATED",
                    "timestamp_api_sent": now,
                    "data": {"id": i, "nim": format!("{i}"), "nama": "Bench", "jurusan": "Informatika"},
                });
                Outgoing::new(&topic, Some(i.to_string()), event.to_string())
            })
            .collect();
        for r in producer.send_all(&msgs).await {
            r?;
        }
        sent += n;
        bar.set_position(sent);
    }
    bar.finish();

    let before = count(&db).await?;
    let settings = ConsumerSettings::new(format!("bench-logger-{run}"), &[&topic]).max_batch(args.batch);
    let handler = EventLogHandler::new(db.clone(), settings.instance.clone());
    let runner = ConsumerRunner::new(kafka, producer, settings, handler)?;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown.clone()));

    let target = before + args.events as i64;
    let bar = crate::progress_bar(args.events, "logging");
    let mut first: Option<(Instant, i64)> = None;
    let mut progress = (Instant::now(), before);
    let finished = loop {
        let n = count(&db).await?;
        bar.set_position((n - before) as u64);
        if n > before && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= target {
            break Instant::now();
        }
        if n > progress.1 {
            progress = (Instant::now(), n);
        } else if progress.0.elapsed() > Duration::from_secs(20) {
            shutdown.trigger();
            task.await??;
            bail!(
                "the logger stalled at {} of {} events. On the embedded broker a partition keeps at most \
                 5 MiB / 100,000 records, so events beyond that were dropped before the logger read them: \
                 use more --partitions or fewer --events",
                n - before,
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    bar.finish();
    shutdown.trigger();
    task.await??;
    let Some((t0, n0)) = first else {
        bail!("no event was logged")
    };
    Ok(BenchResult {
        events: (target - n0) as u64,
        seconds: (finished - t0).as_secs_f64(),
    })
}
