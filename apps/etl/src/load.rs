//! `kafkube load etl`: row changes into a MySQL/MariaDB source table that a running pipeline
//! (etl-cdc → etl-transform → etl-sink) carries to the sink table; then the commit → sink-row
//! latency, the throughput, and a check that the sink holds exactly the source's rows.
//!
//! Each run uses ids of its own (`load-<run>-<n>`) in `<database>.orders` on the source, so runs
//! never collide and the check compares this run's rows only. Changes are single-row
//! transactions (autocommit), paced at `--rate`, over `--connections` connections; one id's
//! changes always go through the same connection, so they commit in order. The latency of a row
//! is the sink's `updated_at` (the time of the statement that wrote it, on the sink database's
//! clock) minus the moment its last change was sent to the source (this process's clock; the
//! binlog can carry a commit before its OK arrives here, so this is an upper bound by one round
//! trip): the two must share a clock, as on one machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use kafkube_core::Shutdown;
use rust_decimal::Decimal;
use sqlx::mysql::MySqlPoolOptions;

use crate::config::{SinkDbArgs, SinkUrl};
use crate::sink::db::{SinkDb, SinkRow};

#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// The pipeline's source server (`mysql://USER:PASSWORD@HOST:PORT`), the one etl-cdc reads.
    /// The user needs CREATE, INSERT, UPDATE, DELETE on `--database`.
    #[arg(long = "source-url", env = "CDC_MYSQL_URL", value_name = "URL")]
    pub source_url: SinkUrl,

    /// Database on the source for the load's table `orders` (created when missing). etl-cdc's
    /// filter must include it.
    #[arg(long, default_value = "kafkube_load")]
    pub database: String,

    /// Row changes to make: inserts, updates and deletes (see `--updates`, `--deletes`).
    #[arg(long, default_value_t = 10_000)]
    pub changes: u64,

    /// Changes per second; 0 is as fast as the connections go.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,

    /// Source connections making changes at once.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,

    /// Percent of the changes that update an existing row of the run.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub updates: u8,

    /// Percent of the changes that delete an existing row of the run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub deletes: u8,

    /// How long the sink may make no progress before the run gives up.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,

    /// Seed of the change mix (random when not given).
    #[arg(long)]
    pub seed: Option<u64>,

    /// The sink database and table the pipeline writes (the same options as etl-sink).
    #[command(flatten)]
    pub sink: SinkDbArgs,
}

pub use kafkube_load::LoadReport;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

/// One planned change: the row's number, and for an insert or update its quantity and price.
#[derive(Clone, Copy, Debug)]
struct Change {
    kind: Kind,
    row: u64,
    quantity: i64,
    cents: i64,
}

/// A mix of changes where updates and deletes hit rows inserted (and not deleted) earlier.
fn plan(args: &LoadArgs) -> Vec<Change> {
    let mut rng = args.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    let mut live: Vec<u64> = Vec::new();
    let mut next = 0;
    (0..args.changes)
        .map(|_| {
            let roll = rng.u8(..100);
            let kind = if live.is_empty() || roll >= args.updates.saturating_add(args.deletes) {
                Kind::Insert
            } else if roll < args.updates {
                Kind::Update
            } else {
                Kind::Delete
            };
            let row = match kind {
                Kind::Insert => {
                    next += 1;
                    live.push(next);
                    next
                }
                Kind::Update => live[rng.usize(..live.len())],
                Kind::Delete => live.swap_remove(rng.usize(..live.len())),
            };
            Change {
                kind,
                row,
                quantity: rng.i64(1..20),
                cents: rng.i64(1..100_000),
            }
        })
        .collect()
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if args.changes == 0 {
        anyhow::bail!("--changes must be at least 1");
    }
    if args.updates as u16 + args.deletes as u16 > 100 {
        anyhow::bail!("--updates and --deletes add up to more than 100 %");
    }
    let db = &args.database;
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("--database must be letters, digits and _");
    }
    let source_url = args.source_url.expose().replacen("mariadb://", "mysql://", 1);
    let source = MySqlPoolOptions::new()
        .max_connections(args.connections.max(1) as u32 + 1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&source_url)
        .await
        .with_context(|| format!("cannot connect to the source {}", args.source_url))?;
    sqlx::query(&format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
        .execute(&source)
        .await
        .with_context(|| format!("cannot create database {db} on the source"))?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS `{db}`.orders (id VARCHAR(64) NOT NULL PRIMARY KEY, \
         order_id VARCHAR(64) NOT NULL, quantity INT NOT NULL, unit_price DECIMAL(12,2) NOT NULL) \
         DEFAULT CHARSET=utf8mb4"
    ))
    .execute(&source)
    .await
    .with_context(|| format!("cannot create table {db}.orders on the source"))?;
    let sink_url = args.sink.url();
    let table = args.sink.table.clone();
    let sink = SinkDb::connect(&sink_url, &Default::default(), &Shutdown::new())
        .await
        .with_context(|| format!("cannot connect to the sink {sink_url}"))?;

    let run_id = format!("{:08x}", fastrand::u32(..));
    let prefix = format!("load-{run_id}-");
    let changes = plan(args);
    let counts = |k: Kind| changes.iter().filter(|c| c.kind == k).count();
    let (inserts, updates, deletes) = (counts(Kind::Insert), counts(Kind::Update), counts(Kind::Delete));

    // One lane per connection; a row's changes all go to the lane of its number.
    let lanes = args.connections.max(1);
    let mut per_lane: Vec<Vec<(u64, Change)>> = vec![Vec::new(); lanes];
    for (i, c) in changes.iter().enumerate() {
        per_lane[(c.row % lanes as u64) as usize].push((i as u64, *c));
    }
    let bar = kafkube_load::progress_bar(args.changes, "changing");
    let started = Instant::now();
    let first_commit = SystemTime::now();
    let rate = args.rate;
    let tasks: Vec<_> = per_lane
        .into_iter()
        .map(|lane| {
            let (source, bar, prefix, db) = (source.clone(), bar.clone(), prefix.clone(), db.clone());
            tokio::spawn(async move {
                let insert =
                    format!("INSERT INTO `{db}`.orders (id, order_id, quantity, unit_price) VALUES (?, ?, ?, ?)");
                let update = format!("UPDATE `{db}`.orders SET quantity = ?, unit_price = ? WHERE id = ?");
                let delete = format!("DELETE FROM `{db}`.orders WHERE id = ?");
                // The moment each row's last change committed.
                let mut committed: BTreeMap<u64, SystemTime> = BTreeMap::new();
                for (i, c) in lane {
                    if rate > 0 {
                        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let id = format!("{prefix}{}", c.row);
                    let price = Decimal::new(c.cents, 2).to_string();
                    let q = match c.kind {
                        Kind::Insert => sqlx::query(&insert)
                            .bind(&id)
                            .bind(format!("ORD-{id}"))
                            .bind(c.quantity)
                            .bind(&price),
                        Kind::Update => sqlx::query(&update).bind(c.quantity).bind(&price).bind(&id),
                        Kind::Delete => sqlx::query(&delete).bind(&id),
                    };
                    // The moment the statement leaves: the binlog (and so the sink) can see the
                    // commit before its OK reaches this process, so the latency is measured from
                    // before the statement (an upper bound by one round trip).
                    let sent = SystemTime::now();
                    q.execute(&source)
                        .await
                        .with_context(|| format!("{:?} of {id} at the source failed", c.kind))?;
                    committed.insert(c.row, sent);
                    bar.inc(1);
                }
                anyhow::Ok(committed)
            })
        })
        .collect();
    let mut committed: BTreeMap<u64, SystemTime> = BTreeMap::new();
    for t in tasks {
        committed.extend(t.await.context("a source connection's task failed")??);
    }
    let produce_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // The source's rows of this run, as the sink should hold them.
    let expected: Vec<SinkRow> = {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(&format!(
            "SELECT id, order_id, CAST(quantity AS SIGNED), CAST(unit_price AS CHAR) FROM `{db}`.orders \
             WHERE id LIKE ? ORDER BY id"
        ))
        .bind(format!("{prefix}%"))
        .fetch_all(&source)
        .await
        .context("cannot read the source table back")?;
        let mut rows: Vec<SinkRow> = rows
            .into_iter()
            .map(|(id, order_id, quantity, price)| {
                let price: Decimal = price.parse().unwrap_or_default();
                SinkRow {
                    id,
                    order_id: Some(order_id),
                    quantity: Some(quantity),
                    unit_price: Some(price.normalize().to_string()),
                    total_value: Some((price * Decimal::from(quantity)).normalize().to_string()),
                }
            })
            .collect();
        rows.sort();
        rows
    };

    // Wait until the sink equals the source for this run (no progress for --settle-secs: give up).
    let bar = kafkube_load::progress_bar(expected.len() as u64, "sink rows matching");
    let mut last = (usize::MAX, Instant::now());
    let got = loop {
        let got = sink.rows_with_prefix(&table, &prefix).await?;
        let matching = got.iter().filter(|r| expected.binary_search(r).is_ok()).count();
        bar.set_position(matching as u64);
        if got == expected {
            break got;
        }
        if matching != last.0 {
            last = (matching, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(args.settle_secs) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish_and_clear();
    let ok = got == expected;

    let written = sink.updated_at_with_prefix(&table, &prefix).await?;
    let mut latency_us = kafkube_load::latency_histogram();
    let mut last_written = 0f64;
    let mut early = 0u64;
    for (id, at) in &written {
        last_written = last_written.max(*at);
        let Some(row) = id.strip_prefix(&prefix).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(c) = committed.get(&row) {
            let us = (at - epoch_secs(*c)) * 1e6;
            // SQLite keeps milliseconds, so a row can read up to 1 ms early; more than 5 ms early
            // means the sink database's clock is behind this process's.
            if us < -5_000.0 {
                early += 1;
            }
            let _ = latency_us.record(us.max(1.0) as u64);
        }
    }
    let ms = |p: f64| latency_us.value_at_quantile(p / 100.0) as f64 / 1000.0;
    let through = (last_written - epoch_secs(first_commit)).max(produce_secs);
    let mut text = format!(
        "done       {} changes ({inserts} inserts, {updates} updates, {deletes} deletes) into {db}.orders in {produce_secs:.2}s ({:.0}/s{})\n",
        args.changes,
        args.changes as f64 / produce_secs.max(1e-9),
        if rate > 0 {
            format!(", asked {rate}/s")
        } else {
            String::new()
        },
    );
    text += &format!(
        "latency    source change → sink row ({} rows, the last change of each): p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms\n",
        latency_us.len(),
        ms(50.0),
        ms(95.0),
        ms(99.0),
        latency_us.max() as f64 / 1000.0,
    );
    if early > 0 {
        text += &format!(
            "           {early} rows were written before their change committed by this machine's clock: the sink database's clock differs, so the latency is not trustworthy\n"
        );
    }
    text += &format!(
        "throughput {:.0} changes/s from the first source commit to the last sink write ({through:.2}s)\n",
        args.changes as f64 / through.max(1e-9)
    );
    if ok {
        text += &format!(
            "check      {sink_url} table {table} equals the source: {} rows of this run\n",
            expected.len()
        );
    } else {
        let missing = expected.iter().filter(|r| got.binary_search(r).is_err()).count();
        let extra = got.iter().filter(|r| expected.binary_search(r).is_err()).count();
        text += &format!(
            "MISMATCH   after {}s without progress the sink differs from the source: {missing} rows missing or different, {extra} unexpected (is etl-cdc reading {} with a filter that includes {db}, and etl-sink writing {sink_url}?)\n",
            args.settle_secs, args.source_url
        );
    }
    sink.close().await;
    source.close().await;
    Ok(LoadReport { text, ok })
}
