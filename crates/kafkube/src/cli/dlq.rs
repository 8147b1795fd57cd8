//! `kafkube dlq list|show|replay <topic>`: the dead letters of a topic, with their error and
//! origin, and their replay to the topic they came from, once each ([`kafkube_bus::dlq`]).

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kafkube_bus::dlq::{self, DeadLetter, Position, READ_TIMEOUT, Selection};
use kafkube_bus::{Cluster, KafkaArgs, Producer};

use super::instance;

#[derive(Args, Debug)]
pub struct DlqCmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// List a topic's dead letters: position, origin, whether replayed, key and error.
    List {
        #[command(flatten)]
        target: Target,
        /// One JSON object per line instead of a table (payloads included).
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter whole: its headers, error, origin and payload.
    Show {
        #[command(flatten)]
        target: Target,
        /// Its position, PARTITION:OFFSET, as `list` shows it.
        position: Position,
    },
    /// Send dead letters back to the topic they came from, once the cause is fixed. Each letter
    /// is sent once: a letter replayed before is skipped (unless --again); a record that fails
    /// again comes back as a new letter.
    #[command(group = clap::ArgGroup::new("which").required(true).args(["positions", "all"]))]
    Replay {
        #[command(flatten)]
        target: Target,
        /// The letters to replay, PARTITION:OFFSET as `list` shows them.
        positions: Vec<Position>,
        /// Replay every letter of the topic not replayed yet.
        #[arg(long)]
        all: bool,
        /// Send letters that were replayed before once more.
        #[arg(long)]
        again: bool,
    },
}

#[derive(Args, Debug)]
struct Target {
    /// The topic (`orders`) or its dead-letter topic (`orders.dlq`).
    topic: String,
    /// The cluster: KAFKA_BROKERS and its security options; without them, the Kafka of the
    /// `kafkube up` running in this directory.
    #[command(flatten)]
    kafka: KafkaArgs,
}

impl Target {
    fn dlq(&self) -> String {
        dlq::dlq_topic(&self.topic)
    }

    fn cluster(&self) -> anyhow::Result<Cluster> {
        let mut kafka = self.kafka.clone();
        if kafka.brokers.is_none() {
            kafka.brokers = Some(instance::running_kafka()?);
        }
        Ok(Cluster::resolve(&kafka, false)?)
    }
}

pub async fn run(cmd: DlqCmd) -> anyhow::Result<ExitCode> {
    match cmd.action {
        Action::List { target, json } => {
            let cluster = target.cluster()?;
            let dlq = target.dlq();
            let letters = dlq::read(&cluster.config, &dlq, READ_TIMEOUT).await?;
            let replayed = dlq::replayed(&cluster.config, &dlq, READ_TIMEOUT).await?;
            if json {
                for l in &letters {
                    println!("{}", as_json(l, &dlq, &replayed));
                }
            } else {
                print!("{}", table(&letters, &dlq, &replayed));
            }
        }
        Action::Show { target, position } => {
            let cluster = target.cluster()?;
            let dlq = target.dlq();
            let letters = dlq::read(&cluster.config, &dlq, READ_TIMEOUT).await?;
            let letter = letters
                .iter()
                .find(|l| l.position == position)
                .with_context(|| format!("{dlq} has no letter at {position}: `kafkube dlq list {dlq}` lists them"))?;
            let replayed = dlq::replayed(&cluster.config, &dlq, READ_TIMEOUT).await?;
            print!("{}", show(letter, &dlq, &replayed));
        }
        Action::Replay {
            target,
            positions,
            all,
            again,
        } => {
            let cluster = target.cluster()?;
            let dlq = target.dlq();
            let producer = Producer::new(&cluster.config)?;
            let selection = if all {
                Selection::All
            } else {
                Selection::Only(positions)
            };
            let report = dlq::replay(&cluster.config, &producer, &dlq, &selection, again, READ_TIMEOUT).await?;
            for (p, topic) in &report.replayed {
                println!("replayed {dlq} {p} to {topic}");
            }
            if !report.already.is_empty() {
                println!(
                    "not sent again, replayed before (--again sends them once more): {}",
                    joined(&report.already)
                );
            }
            println!(
                "{} replayed, {} replayed before.",
                report.replayed.len(),
                report.already.len()
            );
            if !report.missing.is_empty() {
                eprintln!(
                    "error: {dlq} has no letter at {} (`kafkube dlq list {dlq}` lists them)",
                    joined(&report.missing)
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn joined(positions: &[Position]) -> String {
    positions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line, at most `max` characters (an ellipsis marks a cut).
fn clip(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= max {
        s
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

fn table(letters: &[DeadLetter], dlq: &str, replayed: &BTreeSet<Position>) -> String {
    let done = letters.iter().filter(|l| replayed.contains(&l.position)).count();
    let mut out = format!(
        "{dlq}: {} dead letter{}, {done} replayed\n",
        letters.len(),
        if letters.len() == 1 { "" } else { "s" }
    );
    if letters.is_empty() {
        return out;
    }
    let rows: Vec<[String; 5]> = letters
        .iter()
        .map(|l| {
            [
                l.position.to_string(),
                l.origin(dlq).to_string(),
                if replayed.contains(&l.position) { "yes" } else { "no" }.to_owned(),
                clip(&l.key.as_deref().map(text).unwrap_or_default(), 24),
                clip(l.error(), 80),
            ]
        })
        .collect();
    let head = ["POSITION", "ORIGIN", "REPLAYED", "KEY", "ERROR"];
    let width: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        format!("{}\n", s.trim_end())
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

pub(super) fn as_json(l: &DeadLetter, dlq: &str, replayed: &BTreeSet<Position>) -> serde_json::Value {
    let origin = l.origin(dlq);
    serde_json::json!({
        "position": l.position.to_string(),
        "origin": {"topic": origin.topic, "partition": origin.partition, "offset": origin.offset},
        "replayed": replayed.contains(&l.position),
        "key": l.key.as_deref().map(text),
        "error": l.error(),
        "timestamp_ms": l.timestamp_ms,
        "headers": l.headers.iter().map(|(k, v)| (k.to_owned(), serde_json::Value::from(text(v)))).collect::<serde_json::Map<_, _>>(),
        "payload": text(&l.payload),
    })
}

fn show(l: &DeadLetter, dlq: &str, replayed: &BTreeSet<Position>) -> String {
    let when = l
        .timestamp_ms
        .and_then(kafkube_core::time::from_epoch_ms)
        .map_or_else(|| "unknown".to_owned(), |t| t.to_rfc3339());
    let mut out = format!(
        "Letter:    {dlq} {}\nOrigin:    {}\nError:     {}\nWhen:      {when}\nReplayed:  {}\nKey:       {}\nHeaders:\n",
        l.position,
        l.origin(dlq),
        l.error(),
        if replayed.contains(&l.position) { "yes" } else { "no" },
        l.key.as_deref().map_or_else(|| "(none)".to_owned(), text),
    );
    for (k, v) in l.headers.iter() {
        out.push_str(&format!("  {k}: {}\n", text(v)));
    }
    let payload = serde_json::from_slice::<serde_json::Value>(&l.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text(&l.payload));
    out.push_str(&format!("Payload ({} bytes):\n{payload}\n", l.payload.len()));
    out
}

#[cfg(test)]
mod tests {
    use kafkube_bus::{Header, HeaderMap};

    use super::*;

    fn letter(offset: i64, error: &str) -> DeadLetter {
        DeadLetter {
            position: Position { partition: 0, offset },
            key: Some(b"42".to_vec()),
            payload: br#"{"id":42}"#.to_vec(),
            headers: HeaderMap::new()
                .with(Header::ERROR, error)
                .with(Header::SOURCE_TOPIC, "orders")
                .with(Header::SOURCE_PARTITION, "1")
                .with(Header::SOURCE_OFFSET, "17"),
            timestamp_ms: Some(0),
        }
    }

    #[test]
    fn the_table_says_what_each_letter_is() {
        let letters = [letter(0, "bad\nprice"), letter(1, &"x".repeat(200))];
        let t = table(&letters, "orders.dlq", &[letters[0].position].into());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "orders.dlq: 2 dead letters, 1 replayed");
        assert!(lines[1].starts_with("POSITION  ORIGIN"), "{t}");
        assert!(
            lines[2].starts_with("0:0       orders 1:17  yes       42   bad price"),
            "{t}"
        );
        assert!(lines[3].ends_with('…') && lines[3].chars().count() < 140, "{t}");
        assert_eq!(
            table(&[], "x.dlq", &BTreeSet::new()),
            "x.dlq: 0 dead letters, 0 replayed\n"
        );
    }

    #[test]
    fn show_prints_the_payload_readably() {
        let s = show(&letter(3, "bad price"), "orders.dlq", &BTreeSet::new());
        assert!(s.contains("Letter:    orders.dlq 0:3"), "{s}");
        assert!(s.contains("Origin:    orders 1:17"), "{s}");
        assert!(s.contains("Replayed:  no"), "{s}");
        assert!(s.contains("\"id\": 42"), "{s}");
    }
}
