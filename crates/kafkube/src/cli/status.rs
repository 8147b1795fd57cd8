//! `kafkube status`: every service's readiness, each consumer group's lag per partition (from the
//! services' own `/metrics`), and each topic's partitions, records and dead letters (from Kafka),
//! as one table; `--watch` redraws it, `--json` prints it for scripts. Beside a running
//! `kafkube up` it needs no option.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kafkube_bus::{KafkaArgs, TopicOffsets, TopicReader};
use serde::Serialize;

use super::activity::{Activity, samples};
use super::instance;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Base URLs of the services' ops endpoints (`/ready`, `/metrics`), comma-separated: an HTTP
    /// app's port, or a consumer's OPS_PORT. Default: the `kafkube up` running in this
    /// directory (one URL covers all its services).
    #[arg(long = "url", env = "KAFKUBE_STATUS_URLS", value_delimiter = ',', value_name = "URL")]
    urls: Vec<String>,

    /// Redraw every SECS seconds until Ctrl-C.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,

    /// Print one JSON document instead of the table.
    #[arg(long, conflicts_with = "watch")]
    json: bool,

    /// The cluster: KAFKA_BROKERS and its security options; default: the `kafkube up` running
    /// in this directory.
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// What `status` found.
#[derive(Debug, Default, Serialize)]
pub(super) struct Status {
    kafka: String,
    /// Every service check: `(url, check, error)`; `error` is `None` when it passes.
    checks: Vec<Check>,
    groups: Vec<GroupLag>,
    topics: Vec<TopicRow>,
    /// Throughput, latency and outbox backlog, from the services' metrics.
    activity: Activity,
}

#[derive(Debug, Serialize)]
struct Check {
    url: String,
    name: String,
    error: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
struct GroupLag {
    group: String,
    topic: String,
    partition: i32,
    committed: Option<i64>,
    end: i64,
    lag: i64,
}

#[derive(Debug, Serialize)]
struct TopicRow {
    name: String,
    partitions: usize,
    records: i64,
    /// Records in `<name>.dlq`, and how many of them were replayed (`kafkube dlq`).
    dead_letters: Option<i64>,
    replayed: Option<i64>,
}

impl Status {
    fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.error.is_none())
    }

    /// Sets the records/s and requests/s since `earlier`, gathered `secs` seconds before.
    pub(super) fn rates_since(&mut self, earlier: &Status, secs: f64) {
        self.activity.rates_since(&earlier.activity, secs);
    }
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (cluster, urls) = instance::watched(&args.kafka, &args.urls)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let topics = TopicReader::new(&cluster.config)?;
    let mut earlier: Option<(std::time::Instant, Status)> = None;
    loop {
        let mut status = gather(&topics, &urls, &http).await?;
        if let Some((at, before)) = &earlier {
            status.rates_since(before, at.elapsed().as_secs_f64());
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            if args.watch.is_some() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                // Clear the screen and go home, then draw.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&status, urls.is_empty()));
        }
        let Some(secs) = args.watch else {
            return Ok(if status.ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        };
        earlier = Some((std::time::Instant::now(), status));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(secs.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Asks every URL for its readiness and lag, and Kafka for its topics.
pub(super) async fn gather(topics: &TopicReader, urls: &[String], http: &reqwest::Client) -> anyhow::Result<Status> {
    let mut status = Status {
        kafka: topics.brokers().to_owned(),
        ..Status::default()
    };
    for url in urls {
        // /metrics first: its kafkube_ready lines are the checks of /ready, and when they all
        // pass there is no need to run them a second time (only /ready says why one fails).
        let metrics = match http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            Ok(r) => Some(r.text().await.unwrap_or_default()),
            Err(_) => None,
        };
        let passing = metrics.as_deref().map(passing_checks).unwrap_or_default();
        if !passing.is_empty() {
            status.checks.extend(passing.into_iter().map(|name| Check {
                url: url.clone(),
                name,
                error: None,
            }));
        } else {
            status.checks.extend(ready_checks(http, url).await);
        }
        if let Some(text) = metrics {
            status.groups.extend(lags(&text));
            status.activity.add(url, &text);
        }
    }
    status.activity.finish();
    one_row_per_partition(&mut status.groups);
    status.topics = topic_rows(&topics.describe(Duration::from_secs(10)).await?);
    Ok(status)
}

/// Sorts the rows and keeps one per group, topic and partition. A partition two replicas report
/// (its owner before a rebalance, with lag 0 since, and its owner now): the newer report, whose
/// end offset is the higher.
fn one_row_per_partition(rows: &mut Vec<GroupLag>) {
    rows.sort_by(|a, b| {
        (&a.group, &a.topic, a.partition, b.end, b.committed).cmp(&(
            &b.group,
            &b.topic,
            b.partition,
            a.end,
            a.committed,
        ))
    });
    rows.dedup_by(|a, b| (&a.group, &a.topic, a.partition) == (&b.group, &b.topic, b.partition));
}

/// The checks `kafkube_ready{check}` reports, when there are some and all pass; else none.
fn passing_checks(metrics: &str) -> Vec<String> {
    let mut names = Vec::new();
    for s in samples(metrics).filter(|s| s.name == "kafkube_ready") {
        match s.label("check") {
            Some(name) if s.value == 1.0 => names.push(name.to_owned()),
            _ => return Vec::new(),
        }
    }
    names
}

/// The checks of `url`'s `/ready`, each with its error.
async fn ready_checks(http: &reqwest::Client, url: &str) -> Vec<Check> {
    match http.get(format!("{url}/ready")).send().await {
        Ok(r) => match r.json::<serde_json::Value>().await {
            Ok(v) => v["checks"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, c)| Check {
                    url: url.to_owned(),
                    name: name.clone(),
                    error: (c["ok"] != true).then(|| c["error"].as_str().unwrap_or("failing").to_owned()),
                })
                .collect(),
            Err(e) => vec![unreachable_service(url, format!("/ready is not JSON: {e}"))],
        },
        Err(e) => vec![unreachable_service(url, format!("cannot reach it: {e}"))],
    }
}

fn unreachable_service(url: &str, why: String) -> Check {
    Check {
        url: url.to_owned(),
        name: "(service)".to_owned(),
        error: Some(why),
    }
}

/// The lag gauges of a Prometheus text exposition (`kafkube_consumer_{lag,end_offset,
/// committed_offset}{group,topic,partition}`), one row per partition.
fn lags(metrics: &str) -> Vec<GroupLag> {
    let mut rows: BTreeMap<(String, String, i32), GroupLag> = BTreeMap::new();
    for s in samples(metrics) {
        let field = match s.name {
            "kafkube_consumer_lag" => 0,
            "kafkube_consumer_end_offset" => 1,
            "kafkube_consumer_committed_offset" => 2,
            _ => continue,
        };
        let (Some(group), Some(topic), Some(partition)) = (
            s.label("group"),
            s.label("topic"),
            s.label("partition").and_then(|p| p.parse().ok()),
        ) else {
            continue;
        };
        let row = rows
            .entry((group.to_owned(), topic.to_owned(), partition))
            .or_insert(GroupLag {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
                ..GroupLag::default()
            });
        match field {
            0 => row.lag = s.value as i64,
            1 => row.end = s.value as i64,
            _ => row.committed = Some(s.value as i64),
        }
    }
    rows.into_values().collect()
}

/// One row per topic that is not itself a dead-letter topic or ledger, with its dead letters.
fn topic_rows(topics: &[TopicOffsets]) -> Vec<TopicRow> {
    let find = |name: String| topics.iter().find(|t| t.name == name);
    topics
        .iter()
        .filter(|t| !t.name.ends_with(".dlq") && !t.name.ends_with(".dlq.replayed"))
        .map(|t| TopicRow {
            name: t.name.clone(),
            partitions: t.partitions.len(),
            records: t.records(),
            dead_letters: find(format!("{}.dlq", t.name)).map(TopicOffsets::records),
            replayed: find(format!("{}.dlq.replayed", t.name)).map(TopicOffsets::records),
        })
        .collect()
}

/// The table.
fn render(s: &Status, no_urls: bool) -> String {
    let mut out = format!(
        "Kafka {} — {}\n\n",
        s.kafka,
        kafkube_core::time::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    out.push_str(if s.ready() {
        "SERVICES: all ready\n"
    } else {
        "SERVICES: NOT READY\n"
    });
    if no_urls {
        out.push_str("  (no service URL: give --url, or run this beside `kafkube up`)\n");
    }
    // One row per service (by URL and name): its checks, and the failing ones with their errors.
    type Checks<'a> = (Vec<&'a str>, Vec<String>);
    let mut services: BTreeMap<(String, String), Checks<'_>> = BTreeMap::new();
    for c in &s.checks {
        let (service, check) = c.name.split_once('/').unwrap_or(("", c.name.as_str()));
        let row = services.entry((c.url.clone(), service.to_owned())).or_default();
        row.0.push(check);
        if let Some(e) = &c.error {
            row.1.push(format!("{check}: {e}"));
        }
    }
    let mut rows: Vec<Vec<String>> = vec![["SERVICE", "STATE", "CHECKS", "AT"].map(String::from).to_vec()];
    for ((url, service), (checks, failing)) in &services {
        rows.push(vec![
            if service.is_empty() {
                "-".to_owned()
            } else {
                service.clone()
            },
            if failing.is_empty() {
                "ready".to_owned()
            } else {
                format!("FAILING {}", failing.join("; "))
            },
            checks.join(","),
            url.clone(),
        ]);
    }
    if rows.len() > 1 {
        out.push_str(&columns(&rows));
    }
    // One row per group and topic, with the lag of each partition.
    out.push_str("\nCONSUMER GROUPS\n");
    let mut groups: BTreeMap<(&str, &str), Vec<&GroupLag>> = BTreeMap::new();
    for g in &s.groups {
        groups.entry((g.group.as_str(), g.topic.as_str())).or_default().push(g);
    }
    let mut rows: Vec<Vec<String>> = vec![
        ["GROUP", "TOPIC", "PARTITIONS", "END", "LAG", "LAG BY PARTITION"]
            .map(String::from)
            .to_vec(),
    ];
    for ((group, topic), parts) in &groups {
        let by_partition: Vec<String> = parts.iter().map(|p| p.lag.to_string()).collect();
        rows.push(vec![
            (*group).to_owned(),
            (*topic).to_owned(),
            parts.len().to_string(),
            parts.iter().map(|p| p.end).sum::<i64>().to_string(),
            parts.iter().map(|p| p.lag).sum::<i64>().to_string(),
            by_partition.join(" "),
        ]);
    }
    if rows.len() > 1 {
        out.push_str(&columns(&rows));
        let total: i64 = s.groups.iter().map(|g| g.lag).sum();
        out.push_str(&format!("  total lag: {total}\n"));
    } else {
        out.push_str("  (none reported yet: each consumer reads its lag every second)\n");
    }
    out.push_str(&render_activity(&s.activity));
    out.push_str("\nTOPICS\n");
    let mut rows: Vec<Vec<String>> = vec![
        ["TOPIC", "PARTITIONS", "RECORDS", "DEAD LETTERS"]
            .map(String::from)
            .to_vec(),
    ];
    for t in &s.topics {
        let dead = match (t.dead_letters, t.replayed) {
            (None, _) => "-".to_owned(),
            (Some(d), None | Some(0)) => d.to_string(),
            (Some(d), Some(r)) => format!("{d} ({r} replayed)"),
        };
        rows.push(vec![
            t.name.clone(),
            t.partitions.to_string(),
            t.records.to_string(),
            dead,
        ]);
    }
    out.push_str(&columns(&rows));
    out
}

/// Throughput and latency per group and route, and the outboxes' backlog.
fn render_activity(a: &Activity) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let rate = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let mut out = String::new();
    if !a.groups.is_empty() {
        out.push_str("\nTHROUGHPUT (batch handling time in ms since start; /s since the last reading)\n");
        let mut rows = vec![
            ["GROUP", "HANDLED", "DEAD-LETTERED", "RECORDS/S", "P50 MS", "P99 MS"]
                .map(String::from)
                .to_vec(),
        ];
        for g in &a.groups {
            rows.push(vec![
                g.group.clone(),
                g.processed.to_string(),
                g.dead_lettered.to_string(),
                rate(g.per_second),
                ms(g.p50_ms),
                ms(g.p99_ms),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    if !a.routes.is_empty() {
        out.push_str("\nHTTP\n");
        let mut rows = vec![
            ["ROUTE", "REQUESTS", "5XX", "REQUESTS/S", "P50 MS", "P99 MS"]
                .map(String::from)
                .to_vec(),
        ];
        for r in &a.routes {
            rows.push(vec![
                r.route.clone(),
                r.requests.to_string(),
                r.errors_5xx.to_string(),
                rate(r.per_second),
                ms(r.p50_ms),
                ms(r.p99_ms),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    if !a.outboxes.is_empty() {
        let waiting: Vec<String> = a
            .outboxes
            .iter()
            .map(|o| format!("{} at {}", o.pending, o.url))
            .collect();
        out.push_str(&format!(
            "\nOUTBOX: {} event(s) waiting ({})\n",
            a.outboxes.iter().map(|o| o.pending).sum::<i64>(),
            waiting.join(", ")
        ));
    }
    out
}

/// Rows as left-aligned columns, indented by two spaces.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, c) in r.iter().enumerate() {
            line.push_str(&format!("{c:<w$}  ", w = width[i]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_checks_come_from_metrics_only_when_all_pass() {
        let ok = "kafkube_ready{check=\"students-api/database\"} 1\nkafkube_ready{check=\"x \\\"y\\\"\"} 1\n";
        assert_eq!(passing_checks(ok), ["students-api/database", "x \"y\""]);
        let one_failing = "kafkube_ready{check=\"a\"} 1\nkafkube_ready{check=\"b\"} 0\n";
        assert!(passing_checks(one_failing).is_empty());
        assert!(passing_checks("http_requests_total 3\n").is_empty());
    }

    #[test]
    fn a_partition_reported_by_two_replicas_shows_its_newer_report() {
        let row = |end, lag| GroupLag {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            committed: Some(end - lag),
            end,
            lag,
        };
        for mut rows in [vec![row(10, 0), row(25, 3)], vec![row(25, 3), row(10, 0)]] {
            one_row_per_partition(&mut rows);
            assert_eq!(rows, [row(25, 3)]);
        }
    }

    #[test]
    fn lag_rows_come_from_the_consumers_gauges() {
        let text = "# TYPE kafkube_consumer_lag gauge\n\
            kafkube_consumer_lag{group=\"event-logger\",topic=\"mahasiswa_events\",partition=\"1\"} 3\n\
            kafkube_consumer_end_offset{group=\"event-logger\",topic=\"mahasiswa_events\",partition=\"1\"} 10\n\
            kafkube_consumer_committed_offset{group=\"event-logger\",topic=\"mahasiswa_events\",partition=\"1\"} 7\n\
            kafkube_consumer_lag{group=\"event-logger\",topic=\"mahasiswa_events\",partition=\"0\"} 0\n\
            kafkube_consumer_records_total{group=\"event-logger\",outcome=\"processed\"} 10\n\
            kafkube_consumer_lag{group=\"broken\"} 1\n";
        let rows = lags(text);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            rows[1],
            GroupLag {
                group: "event-logger".into(),
                topic: "mahasiswa_events".into(),
                partition: 1,
                committed: Some(7),
                end: 10,
                lag: 3,
            }
        );
        assert_eq!((rows[0].partition, rows[0].committed), (0, None));
    }

    #[test]
    fn topics_carry_their_dead_letters_and_replays() {
        let t = |name: &str, ends: &[i64]| TopicOffsets {
            name: name.into(),
            partitions: ends.iter().enumerate().map(|(i, e)| (i as i32, 0, *e)).collect(),
        };
        let rows = topic_rows(&[
            t("orders", &[5, 6]),
            t("orders.dlq", &[2]),
            t("orders.dlq.replayed", &[1]),
            t("plain", &[0]),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].records, rows[0].dead_letters, rows[0].replayed),
            (11, Some(2), Some(1))
        );
        assert_eq!((rows[1].dead_letters, rows[1].replayed), (None, None));
        let status = Status {
            kafka: "k:9092".into(),
            checks: vec![
                Check {
                    url: "http://x".into(),
                    name: "event-logger/database".into(),
                    error: Some("connection refused".into()),
                },
                Check {
                    url: "http://x".into(),
                    name: "event-logger/kafka".into(),
                    error: None,
                },
            ],
            groups: Vec::new(),
            topics: rows,
            activity: Activity::default(),
        };
        let table = render(&status, false);
        assert!(table.contains("(none reported yet"), "{table}");
        assert!(!table.contains("THROUGHPUT") && !table.contains("OUTBOX"), "{table}");
        let mut status = status;
        status.activity.add(
            "http://x",
            "kafkube_consumer_records_total{group=\"event-logger\",outcome=\"processed\"} 12\n\
             http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 4\n\
             kafkube_outbox_pending 5\n",
        );
        status.activity.finish();
        let table = render(&status, false);
        assert!(table.contains("event-logger  12       0"), "{table}");
        assert!(table.contains("GET /health  4"), "{table}");
        assert!(table.contains("OUTBOX: 5 event(s) waiting (5 at http://x)"), "{table}");
        let status = Status {
            groups: lags(
                "kafkube_consumer_lag{group=\"g\",topic=\"orders\",partition=\"0\"} 2\n\
                 kafkube_consumer_lag{group=\"g\",topic=\"orders\",partition=\"1\"} 5\n\
                 kafkube_consumer_end_offset{group=\"g\",topic=\"orders\",partition=\"1\"} 9\n",
            ),
            ..status
        };
        let table = render(&status, false);
        assert!(table.contains("  g      orders  2           9    7    2 5"), "{table}");
        assert!(table.contains("total lag: 7"), "{table}");
        assert!(table.contains("SERVICES: NOT READY"), "{table}");
        assert!(
            table.contains("event-logger  FAILING database: connection refused  database,kafka  http://x"),
            "{table}"
        );
        assert!(table.contains("orders  2           11       2 (1 replayed)"), "{table}");
    }
}
