//! The CDC service, `etl-cdc`: reads a MySQL/MariaDB binary log as a replica (mysql_async's
//! binlog stream) and publishes every row change as Maxwell's JSON, keyed by primary key.
//!
//! Changes are published a transaction at a time (Maxwell's `xid`, `xoffset` and `commit` need
//! the transaction's end). The position after the last transaction whose changes Kafka has
//! acknowledged is stored in the state database (`etl_cdc_positions`) only then, so a kill -9
//! resumes from there: a transaction may be published twice (at-least-once; the sink absorbs it),
//! none is skipped. A lost connection to the server or to Kafka restarts the stream from the
//! stored position with backoff.

pub mod convert;
pub mod filter;
pub mod gtid;
mod snapshot;

use anyhow::Context as _;
use futures::{FutureExt, StreamExt};
use kafkube_bus::{Outgoing, Producer, TopicSpec};
use kafkube_core::{Backoff, Shutdown};
use kafkube_runtime::{Context, Running, Service, ServiceInfo};
use kafkube_store::{Db, Migrations, on_db};
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};

use self::convert::{Labels, Object, row_to_json};
use self::filter::Filter;
use self::gtid::{Gtid, GtidPos, MARIADB_GTID_EVENT};
use crate::EtlArgs;
use crate::config::CdcResolved;
use crate::order::POSITION_HEADER;

/// Migrations of the CDC state database.
pub fn migrations() -> Migrations {
    Migrations {
        name: "etl-cdc",
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}

/// How long the binlog stream may stay silent (the server sends a heartbeat every second).
const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A binlog position: file and offset, and MariaDB's GTID position there (see [`gtid`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub offset: u64,
    pub gtid: Option<String>,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

/// The stored position of `client`, if any.
pub async fn load_position(db: &Db, client: &str) -> anyhow::Result<Option<Position>> {
    let row: Option<(String, i64, Option<String>)> = on_db!(db, p => sqlx::query_as(
        "SELECT binlog_file, binlog_position, gtid FROM etl_cdc_positions WHERE client_id = $1")
        .bind(client).fetch_optional(p).await)?;
    Ok(row.map(|(file, offset, gtid)| Position {
        file,
        offset: offset.max(0) as u64,
        gtid,
    }))
}

async fn save_position(db: &Db, client: &str, p: &Position) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let sql = "INSERT INTO etl_cdc_positions (client_id, binlog_file, binlog_position, gtid, updated_at) \
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE SET binlog_file = excluded.binlog_file, \
               binlog_position = excluded.binlog_position, gtid = excluded.gtid, updated_at = excluded.updated_at";
    on_db!(db, pool => sqlx::query(sql)
        .bind(client).bind(&p.file).bind(p.offset as i64).bind(&p.gtid).bind(now).execute(pool).await.map(drop))?;
    Ok(())
}

/// The state row of `client`'s snapshot in progress: the position it began at, stored before its
/// first record goes out, so that a snapshot taken again knows the binlog must be read from there.
fn snapshot_marker(client: &str) -> String {
    format!("{client}#snapshot")
}

/// An error that retrying will not fix (the server's configuration or our privileges).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fatal(String);

/// One row change waiting for its transaction's end.
struct Change {
    database: String,
    table: String,
    kind: &'static str,
    ts: u32,
    position: Position,
    data: Object,
    old: Option<Object>,
    pk: Vec<String>,
}

/// The reader, with everything resolved from the options.
struct Reader {
    opts: Opts,
    args: CdcResolved,
    filter: Filter,
    producer: Producer,
    kafka: kafkube_bus::KafkaConfig,
    state: Db,
    partitions: i32,
}

impl Reader {
    /// Runs until `stop`, restarting the stream with backoff after a failure that may pass.
    async fn run(self, stop: Shutdown) -> anyhow::Result<()> {
        let mut backoff = Backoff::outage();
        let mut known_topics: HashSet<String> = HashSet::new();
        loop {
            match self.stream(&stop, &mut known_topics, &mut backoff).await {
                Ok(()) => return Ok(()),
                Err(e) if e.downcast_ref::<Fatal>().is_some() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "binlog stream interrupted; resuming from the stored position");
                    metrics::counter!("etl_cdc_restarts_total").increment(1);
                    if !backoff.wait(&stop).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn check_server(&self, conn: &mut Conn) -> anyhow::Result<Position> {
        let format: Option<String> = conn.query_first("SELECT @@GLOBAL.binlog_format").await?;
        if format.as_deref() != Some("ROW") {
            return Err(Fatal(format!(
                "the server's binlog_format is {}, not ROW: start it with --binlog-format=ROW (and \
                 --log-bin, --binlog-row-image=FULL, --binlog-row-metadata=FULL) so that a binlog reader sees rows",
                format.as_deref().unwrap_or("unknown")
            ))
            .into());
        }
        let metadata: Option<String> = conn
            .query_first("SELECT @@GLOBAL.binlog_row_metadata")
            .await
            .unwrap_or(None);
        if metadata.as_deref().is_some_and(|m| m != "FULL") {
            tracing::warn!(
                binlog_row_metadata = metadata.as_deref().unwrap_or(""),
                "binlog_row_metadata is not FULL: column names, ENUM and SET labels are missing from the binlog; \
                 set binlog_row_metadata=FULL"
            );
        }
        let status = match conn.query_first::<mysql_async::Row, _>("SHOW MASTER STATUS").await {
            Ok(r) => r,
            Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
        };
        let Some(row) = status else {
            return Err(Fatal(
                "the server has no binary log: start it with --log-bin (and --binlog-format=ROW)".into(),
            )
            .into());
        };
        let file: String = row.get(0).unwrap_or_default();
        let offset: u64 = row.get(1).unwrap_or(4);
        Ok(Position {
            file,
            offset,
            gtid: None,
        })
    }

    async fn stream(
        &self,
        stop: &Shutdown,
        known_topics: &mut HashSet<String>,
        backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
        let mut conn = tokio::select! {
            c = Conn::new(self.opts.clone()) => c.context("cannot connect to the CDC source")?,
            () = stop.cancelled() => return Ok(()),
        };
        let now = self.check_server(&mut conn).await?;
        let client = &self.args.client_id;
        let start = match load_position(&self.state, client).await? {
            Some(p) => p,
            None if self.args.snapshot => {
                // A snapshot an earlier start left unfinished: its records are out, and the rows
                // it sent that have been deleted since are not in this one. Reading the binlog
                // from where that one began brings their deletes (the newer snapshot's records
                // outrank every change it already holds).
                let marker = snapshot_marker(client);
                let unfinished = load_position(&self.state, &marker).await?;
                let Some(taken) = self.snapshot(stop, known_topics, unfinished.is_none()).await? else {
                    return Ok(());
                };
                let start = match unfinished {
                    Some(earlier) => {
                        tracing::info!(from = %earlier, snapshot = %taken, "an unfinished snapshot was retaken: reading the binlog from where it began");
                        earlier
                    }
                    None => taken,
                };
                save_position(&self.state, client, &start).await?;
                // Done: a snapshot asked for again later (its position deleted) starts afresh.
                let sql = "DELETE FROM etl_cdc_positions WHERE client_id = $1";
                on_db!(&self.state, p => sqlx::query(sql).bind(&marker).execute(p).await.map(drop))?;
                start
            }
            None => {
                tracing::info!(position = %now, "no stored binlog position: starting from the server's current one");
                save_position(&self.state, client, &now).await?;
                now
            }
        };
        // The server sends a heartbeat every second when it has nothing else; a stream silent for
        // longer than HEARTBEAT_TIMEOUT is dead (a dropped network path) and is reopened.
        conn.query_drop("SET @master_heartbeat_period = 1000000000").await?;
        // MariaDB sends its GTID events only to a replica that says it understands them (4:
        // MARIA_SLAVE_CAPABILITY_GTID); to others it sends `BEGIN` in their place. A user
        // variable is harmless on MySQL.
        conn.query_drop("SET @mariadb_slave_capability = 4").await?;
        let checksum: Option<String> = conn
            .query_first("SELECT @@GLOBAL.binlog_checksum")
            .await
            .unwrap_or(None);
        let checksum = checksum.is_none_or(|c| !c.eq_ignore_ascii_case("NONE"));
        let mut start = start;
        if start.gtid.is_none() {
            // MariaDB tells the GTID position at a file and offset; elsewhere this fails, and
            // the GTID stays unknown.
            start.gtid = conn
                .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&start.file, start.offset))
                .await
                .ok()
                .flatten()
                .flatten();
        }
        let mut gtid = start.gtid.as_deref().and_then(GtidPos::parse);
        // The GTID of the transaction being read, until its end moves `gtid`.
        let mut txn_gtid: Option<Gtid> = None;
        let request = BinlogStreamRequest::new(self.args.server_id)
            .with_filename(start.file.as_bytes())
            .with_pos(start.offset);
        let mut stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| privilege_hint(e.into(), &start))?;
        tracing::info!(position = %start, "reading the binlog");

        let mut file = start.file.clone();
        let mut committed = start.clone();
        let mut txn: Vec<Change> = Vec::new();
        let mut out: Vec<Outgoing> = Vec::new();
        let mut labels: HashMap<u64, Labels> = HashMap::new();
        let mut first = true;
        // Until the format description arrives, events are decoded as if they had no checksum.
        let mut described = false;
        loop {
            // Take what is ready; flush before waiting for more.
            let next = match stream.next().now_or_never() {
                Some(ev) => ev,
                None => {
                    self.flush(&mut out, Some(&committed), known_topics).await?;
                    tokio::select! {
                        ev = tokio::time::timeout(HEARTBEAT_TIMEOUT, stream.next()) => ev.map_err(|_| {
                            anyhow::anyhow!("no event or heartbeat from the server for {HEARTBEAT_TIMEOUT:?}")
                        })?,
                        () = stop.cancelled() => {
                            self.flush(&mut out, Some(&committed), known_topics).await?;
                            return Ok(());
                        }
                    }
                }
            };
            let Some(ev) = next else {
                return Err(anyhow::anyhow!("the server closed the binlog stream"));
            };
            let ev = ev.map_err(|e| privilege_hint(e.into(), &start))?;
            if first {
                backoff.reset();
                first = false;
            }
            let header = ev.header();
            let log_pos = u64::from(header.log_pos());
            if header.event_type_raw() == MARIADB_GTID_EVENT {
                txn_gtid = Gtid::of_event(header.server_id(), ev.data());
            }
            let here = |file: &str| Position {
                file: file.to_owned(),
                offset: log_pos,
                gtid: None,
            };
            // A transaction's end: the position after it, with the GTID position moved past it.
            let mut ended = |file: &str| {
                if let (Some(pos), Some(g)) = (gtid.as_mut(), txn_gtid.take()) {
                    pos.advance(g);
                }
                Position {
                    gtid: gtid.as_ref().map(ToString::to_string),
                    ..here(file)
                }
            };
            match ev.read_data().context("cannot decode a binlog event")? {
                Some(EventData::RotateEvent(r)) => {
                    file = rotate_file_name(r.name_raw(), checksum && !described);
                    if !r.is_fake() && txn.is_empty() {
                        committed = Position {
                            file: file.clone(),
                            offset: r.position(),
                            gtid: committed.gtid.take(),
                        };
                    }
                }
                Some(EventData::FormatDescriptionEvent(_)) => described = true,
                Some(EventData::TableMapEvent(tme)) => {
                    labels.insert(tme.table_id(), Labels::of(&tme));
                }
                Some(EventData::RowsEvent(rows)) => {
                    let Some(tme) = stream.get_tme(rows.table_id()) else {
                        return Err(anyhow::anyhow!("rows event without its table map at {}", here(&file)));
                    };
                    let (database, table) = (tme.database_name().into_owned(), tme.table_name().into_owned());
                    if !self.filter.includes(&database, &table) {
                        continue;
                    }
                    let kind = match &rows {
                        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => "insert",
                        RowsEventData::UpdateRowsEvent(_)
                        | RowsEventData::UpdateRowsEventV1(_)
                        | RowsEventData::PartialUpdateRowsEvent(_) => "update",
                        _ => "delete",
                    };
                    let empty = Labels::default();
                    let l = labels.get(&rows.table_id()).unwrap_or(&empty);
                    for row in rows.rows(tme) {
                        let (before, after) = row.context("cannot decode a row")?;
                        let (data, pk, old) = match (before, after) {
                            (before, Some(after)) if kind != "delete" => {
                                let (data, pk) = row_to_json(&after, tme, l);
                                let old = before.map(|b| changed(&row_to_json(&b, tme, l).0, &data));
                                (data, pk, old)
                            }
                            (Some(before), _) => {
                                let (data, pk) = row_to_json(&before, tme, l);
                                (data, pk, None)
                            }
                            _ => continue,
                        };
                        txn.push(Change {
                            database: database.clone(),
                            table: table.clone(),
                            kind,
                            ts: header.timestamp(),
                            position: here(&file),
                            data,
                            old,
                            pk,
                        });
                    }
                }
                Some(EventData::XidEvent(x)) => {
                    self.finish(&mut txn, Some(x.xid), &mut out)?;
                    committed = ended(&file);
                }
                Some(EventData::QueryEvent(q)) => {
                    let sql = q.query();
                    let sql = sql.trim();
                    if sql.eq_ignore_ascii_case("BEGIN") || sql.starts_with('#') {
                        // A transaction starts; MariaDB's dummy events start with `#`.
                    } else if sql.eq_ignore_ascii_case("COMMIT") {
                        // A transaction on a non-transactional engine ends.
                        self.finish(&mut txn, None, &mut out)?;
                        committed = ended(&file);
                    } else {
                        // DDL: its own transaction.
                        if let Some(topic) = &self.args.ddl_kafka_topic {
                            out.push(ddl_record(topic, &q.schema(), sql, header.timestamp(), &here(&file)));
                        }
                        let end = ended(&file);
                        if txn.is_empty() && log_pos > 0 {
                            committed = end;
                        }
                    }
                }
                _ => {}
            }
            if out.len() >= self.args.batch {
                self.flush(&mut out, Some(&committed), known_topics).await?;
            }
        }
    }

    /// The transaction ended: its changes become Maxwell records.
    fn finish(&self, txn: &mut Vec<Change>, xid: Option<u64>, out: &mut Vec<Outgoing>) -> anyhow::Result<()> {
        let n = txn.len();
        for (i, c) in txn.drain(..).enumerate() {
            let topic = self
                .args
                .kafka_topic
                .replace("%{database}", &c.database)
                .replace("%{table}", &c.table);
            let mut key = format!(
                "{{\"database\":{},\"table\":{}",
                json_str(&c.database),
                json_str(&c.table)
            );
            for col in &c.pk {
                if let Some(v) = c.data.get(col) {
                    key.push_str(&format!(",{}:{}", json_str(&format!("pk.{col}")), v.get()));
                }
            }
            key.push('}');
            let mut rec = Object(Vec::with_capacity(10));
            let mut put = |k: &str, v: String| {
                if let Ok(raw) = RawValue::from_string(v) {
                    rec.0.push((k.to_owned(), raw));
                }
            };
            put("database", json_str(&c.database));
            put("table", json_str(&c.table));
            put("type", json_str(c.kind));
            put("ts", c.ts.to_string());
            if let Some(xid) = xid {
                put("xid", xid.to_string());
            }
            if i + 1 == n {
                put("commit", "true".into());
            } else {
                put("xoffset", i.to_string());
            }
            if self.args.output_binlog_position {
                put("position", json_str(&c.position.to_string()));
            }
            let data = serde_json::to_string(&c.data)?;
            put("data", data);
            if let Some(old) = &c.old {
                put("old", serde_json::to_string(old)?);
            }
            let payload = serde_json::to_vec(&rec)?;
            out.push(Outgoing::new(topic, Some(key), payload).header(POSITION_HEADER, c.position.to_string()));
        }
        metrics::counter!("etl_cdc_changes_total").increment(n as u64);
        Ok(())
    }

    /// Publishes `out` and waits for every acknowledgement; then stores `committed`, if given.
    async fn flush(
        &self,
        out: &mut Vec<Outgoing>,
        committed: Option<&Position>,
        known_topics: &mut HashSet<String>,
    ) -> anyhow::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let new: Vec<TopicSpec> = out
            .iter()
            .filter(|o| !known_topics.contains(&o.topic))
            .map(|o| o.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|t| TopicSpec::new(t, self.partitions))
            .collect();
        if !new.is_empty() {
            kafkube_bus::ensure_topics(&self.kafka, &new).await?;
            known_topics.extend(new.into_iter().map(|t| t.name));
        }
        for r in self.producer.send_all(out).await {
            r.context("Kafka did not acknowledge a change")?;
        }
        out.clear();
        if let Some(committed) = committed {
            save_position(&self.state, &self.args.client_id, committed).await?;
        }
        Ok(())
    }
}

/// Maxwell's `old`: the values before an update of the columns it changed.
fn changed(before: &Object, after: &Object) -> Object {
    Object(
        before
            .0
            .iter()
            .filter(|(k, v)| after.get(k).is_none_or(|a| a.get() != v.get()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn ddl_record(topic: &str, database: &str, sql: &str, ts: u32, position: &Position) -> Outgoing {
    let body = serde_json::json!({"type": "ddl", "database": database, "sql": sql, "ts": ts,
        "position": position.to_string()});
    Outgoing::new(topic, Some(database.to_owned()), body.to_string())
}

/// A rotate event's file name. The stream's first event, a fake rotate naming the file, comes
/// before the format description that says events end in a 4-byte checksum, so it is decoded
/// with the checksum still on its name (`checksum_attached`). The checksum is cut off by its
/// length: a guess by the characters fails when its first byte happens to be a digit, and the
/// stream then resumes from a file that does not exist.
fn rotate_file_name(raw: &[u8], checksum_attached: bool) -> String {
    let name = match raw.len().checked_sub(4) {
        Some(end) if checksum_attached => &raw[..end],
        _ => raw,
    };
    String::from_utf8_lossy(name).into_owned()
}

/// A refused binlog request says what to do: grant a privilege, or move past a purged binlog.
fn privilege_hint(e: anyhow::Error, start: &Position) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("Could not find first log file") || text.contains("binary log is not open") {
        return Fatal(format!(
            "{text}: the binlog position {start} is gone from the server (binlog purged or reset). Changes \
             since then cannot be read; start over from the current position by deleting this client's row \
             from etl_cdc_positions (CDC_STATE_URL), after re-syncing the sink"
        ))
        .into();
    }
    if text.contains("REPLICATION SLAVE") || text.contains("REPLICATION REPLICA") || text.contains("ERROR 1227 ") {
        Fatal(format!(
            "{text}: the CDC user needs replication privileges: GRANT REPLICATION SLAVE, REPLICATION CLIENT, \
             SELECT ON *.* TO 'user'@'%'"
        ))
        .into()
    } else {
        e
    }
}

/// The CDC as a service.
pub struct CdcService;

#[kafkube_runtime::async_trait]
impl Service<EtlArgs> for CdcService {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::consumer(
            "etl-cdc",
            "ETL CDC: reads a MySQL/MariaDB binlog (CDC_MYSQL_URL) and publishes \
             Maxwell JSON per row change. One per source server.",
        )
        .reads(&[
            "cdc-mysql-url",
            "maxwell-config",
            "cdc-filter",
            "cdc-kafka-topic",
            "cdc-ddl-kafka-topic",
            "cdc-producer-partition-by",
            "cdc-output-binlog-position",
            "cdc-server-id",
            "cdc-client-id",
            "cdc-state-url",
            "cdc-batch",
            "cdc-snapshot",
            "etl-partitions",
        ])
    }

    async fn start(&self, args: &EtlArgs, ctx: &Context) -> anyhow::Result<Running> {
        let cdc = args.cdc.resolved()?;
        let Some(url) = cdc.mysql_url.clone() else {
            tracing::info!("etl-cdc is off: set CDC_MYSQL_URL (mysql://USER:PASSWORD@HOST:PORT) to read a binlog");
            return Ok(Running::new(ctx.readiness()).summary("off (set CDC_MYSQL_URL to read a MySQL/MariaDB binlog)"));
        };
        let filter =
            Filter::parse(cdc.filter.as_deref().unwrap_or("")).map_err(|e| anyhow::anyhow!("CDC_FILTER: {e}"))?;
        let opts = Opts::from_url(&url.expose().replacen("mariadb://", "mysql://", 1))
            .map_err(|e| anyhow::anyhow!("CDC_MYSQL_URL {url}: {e}"))?;
        let state = ctx.open_db(&cdc.state_url, &[migrations()]).await?;
        let reader = Reader {
            opts,
            filter,
            producer: ctx.producer.clone(),
            kafka: ctx.kafka.clone(),
            state: state.clone(),
            partitions: args.partitions,
            args: cdc.clone(),
        };
        let stop = ctx.stops.intake.clone();
        Ok(Running::new(ctx.readiness().database("state", state))
            .summary(format!("{url} binlog → {} (Maxwell JSON)", cdc.kafka_topic))
            .intake(reader.run(stop)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_checksum_off_the_first_rotate_events_file_name() {
        assert_eq!(rotate_file_name(b"binlog.000002\x1aZ\xff%", true), "binlog.000002");
        // A checksum starting with digits, or holding a dot, is cut off too: a guess by the
        // characters made these `binlog.0000023` and `binlog.000002.` (1 stream in 25).
        assert_eq!(rotate_file_name(b"binlog.00000237\xff%", true), "binlog.000002");
        assert_eq!(rotate_file_name(b"binlog.000002\x01.\xff%", true), "binlog.000002");
        assert_eq!(rotate_file_name(b"mysql-bin.000010", false), "mysql-bin.000010");
    }
}
