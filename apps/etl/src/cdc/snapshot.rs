//! The optional initial snapshot (`CDC_SNAPSHOT=true`, Maxwell's bootstrap): on a first start,
//! before the binlog, every existing row of the tables the filter takes goes out as a Maxwell
//! `bootstrap-insert` record, so the sink starts from the source's contents rather than from its
//! changes only.
//!
//! The rows are read in one consistent snapshot (`START TRANSACTION WITH CONSISTENT SNAPSHOT`).
//! The stream then starts at the binlog position that snapshot is consistent with: MariaDB tells
//! it (`binlog_snapshot_file/position`); elsewhere the position read just before the snapshot is
//! used, and the few changes between the two are read again (the sink keeps the newest). Every
//! snapshot record carries that position, so any later change of a row outranks it at the sink.
//! The position is stored only after Kafka acknowledged the whole snapshot: a crash in the middle
//! makes the next start take the snapshot again (at-least-once, absorbed by the sink). The first
//! try's position is stored beforehand (as `CLIENT#snapshot`), and after a retaken snapshot the
//! binlog is read from there: a row the first try sent and that was deleted before the second
//! would otherwise stay in the sink, since neither the second snapshot nor the binlog after it
//! mentions it.

use std::collections::HashMap;

use anyhow::Context as _;
use base64::Engine;
use kafkube_bus::Outgoing;
use kafkube_core::Shutdown;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, Row, Value};
use serde_json::value::RawValue;

use super::convert::Object;
use super::{Change, Position, Reader};

/// The binary character set's number: such columns hold bytes, not text.
const BINARY: u16 = 63;

impl Reader {
    /// Publishes the snapshot; returns the position it is consistent with, or `None` when
    /// stopped before it was complete. `first`: no earlier try is on record, so this one's
    /// position is stored (see the module's documentation) before its first record goes out.
    pub(super) async fn snapshot(
        &self,
        stop: &Shutdown,
        known_topics: &mut std::collections::HashSet<String>,
        first: bool,
    ) -> anyhow::Result<Option<Position>> {
        let mut conn = Conn::new(self.opts.clone())
            .await
            .context("cannot connect to the CDC source for the snapshot")?;
        let before = self.check_server(&mut conn).await?;
        // TIMESTAMP values in UTC, as the binlog reader writes them.
        conn.query_drop("SET SESSION time_zone = '+00:00'").await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await?;
        let status: Vec<(String, String)> = conn
            .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
            .await
            .unwrap_or_default();
        let status: HashMap<String, String> = status.into_iter().collect();
        let position = match (
            status.get("Binlog_snapshot_file").filter(|f| !f.is_empty()),
            status.get("Binlog_snapshot_position").and_then(|p| p.parse().ok()),
        ) {
            (Some(file), Some(offset)) => Position {
                file: file.clone(),
                offset,
                gtid: None,
            },
            _ => before,
        };
        let tables: Vec<(String, String)> = conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' \
                 AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME",
            )
            .await?;
        let tables: Vec<(String, String)> = tables
            .into_iter()
            .filter(|(db, t)| self.filter.includes(db, t))
            .collect();
        if first {
            super::save_position(&self.state, &super::snapshot_marker(&self.args.client_id), &position).await?;
        }
        tracing::info!(tables = tables.len(), position = %position, "taking the initial snapshot");
        let ts = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let mut rows_total = 0u64;
        for (db, table) in &tables {
            let pk: Vec<String> = conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? \
                     AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                    (db, table),
                )
                .await?;
            let sql = format!(
                "SELECT * FROM `{}`.`{}`",
                db.replace('`', "``"),
                table.replace('`', "``")
            );
            let mut rows: Vec<Row> = Vec::new();
            let mut result = conn.query_iter(sql).await?;
            let mut txn: Vec<Change> = Vec::new();
            let mut out: Vec<Outgoing> = Vec::new();
            loop {
                let row = result.next().await?;
                let done = row.is_none();
                rows.extend(row);
                if rows.len() >= self.args.batch || (done && !rows.is_empty()) {
                    for row in rows.drain(..) {
                        txn.push(Change {
                            database: db.clone(),
                            table: table.clone(),
                            kind: "bootstrap-insert",
                            ts,
                            position: position.clone(),
                            data: row_object(&row),
                            old: None,
                            pk: pk.clone(),
                        });
                    }
                    rows_total += txn.len() as u64;
                    self.finish(&mut txn, None, &mut out)?;
                    self.flush(&mut out, None, known_topics).await?;
                    if stop.is_triggered() {
                        return Ok(None);
                    }
                }
                if done {
                    break;
                }
            }
        }
        conn.query_drop("COMMIT").await?;
        let _ = conn.disconnect().await;
        tracing::info!(rows = rows_total, tables = tables.len(), position = %position, "initial snapshot published");
        Ok(Some(position))
    }
}

/// A row read by a text-protocol query, as Maxwell's `data`.
fn row_object(row: &Row) -> Object {
    let columns = row.columns_ref();
    Object(
        columns
            .iter()
            .enumerate()
            .map(|(i, col)| {
                let json = row.as_ref(i).map_or_else(|| "null".to_owned(), |v| value_json(v, col));
                // Every value above is JSON text; a failure would be a bug, and reads as null.
                let raw = RawValue::from_string(json).unwrap_or_default();
                (col.name_str().into_owned(), raw)
            })
            .collect(),
    )
}

/// A text-protocol value as the binlog reader writes the same column (see `convert`).
fn value_json(v: &Value, col: &Column) -> String {
    use ColumnType::*;
    let Value::Bytes(b) = v else {
        return "null".to_owned();
    };
    let text = String::from_utf8_lossy(b);
    let string = |s: &str| serde_json::Value::from(s).to_string();
    match col.column_type() {
        MYSQL_TYPE_TINY
        | MYSQL_TYPE_SHORT
        | MYSQL_TYPE_LONG
        | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_YEAR => text.into_owned(),
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| "null".to_owned(), |n| n.to_string()),
        MYSQL_TYPE_BIT => b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)).to_string(),
        MYSQL_TYPE_JSON => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(j) => j.to_string(),
            Err(_) => string(&text),
        },
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_TIME
        | MYSQL_TYPE_TIME2 => string(&text),
        _ if col.flags().contains(ColumnFlags::SET_FLAG) => {
            let labels: Vec<&str> = if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').collect()
            };
            serde_json::Value::from(labels).to_string()
        }
        _ if col.flags().contains(ColumnFlags::ENUM_FLAG) => string(&text),
        _ if col.character_set() == BINARY => string(&base64::engine::general_purpose::STANDARD.encode(b)),
        _ => match std::str::from_utf8(b) {
            Ok(s) => string(s),
            Err(_) => string(&base64::engine::general_purpose::STANDARD.encode(b)),
        },
    }
}
