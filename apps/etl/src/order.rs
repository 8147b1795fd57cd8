//! Orders as the pipeline sees them: parsing a raw order or a Maxwell change record, the schema
//! guard, the enrichment (exact decimal arithmetic, never through a float), and the enriched
//! record the sink reads.
//!
//! Numbers stay as the JSON text they arrived in ([`RawValue`]) until they are parsed into a
//! [`Decimal`], so `19.99 × 3` is `59.97`, not `59.970000000000006`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON object whose values are kept as their original text.
pub type RawObject = BTreeMap<String, Box<RawValue>>;

/// Header the CDC service puts on every change record: the binlog position of its row event,
/// `FILE:OFFSET`. The transform turns it into the record's [`version`](Enriched::version).
pub const POSITION_HEADER: &str = "kafkube-binlog-position";

/// What a change does to the sink's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    #[default]
    Upsert,
    Delete,
}

/// Where the input came from, for the id and version of an order that has none of its own.
#[derive(Clone, Debug)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
    /// The [`POSITION_HEADER`] of a CDC record.
    pub position: Option<&'a str>,
}

/// The enriched order: the input's fields, plus what the transform adds. It is what goes to
/// `enriched_orders` and what the sink stores.
#[derive(Debug, PartialEq)]
pub struct Enriched {
    pub id: String,
    pub order_id: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<Decimal>,
    pub total_value: Option<Decimal>,
    pub processed_at: Option<i64>,
    pub op: Op,
    /// Orders changes of one row: the sink never lets a smaller version overwrite a larger one.
    pub version: i64,
}

/// Namespace of the ids given to orders that arrive without one (UUID v5 of their origin, so a
/// redelivered order gets the same id).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_666b_7562_652d_6574_6c2d_6f72_6472);

/// The transform: a raw order or a Maxwell change record in, the enriched JSON out, with its
/// key (the order's id). `Err` is the reason the record goes to the dead-letter topic.
pub fn transform(payload: &[u8], origin: &Origin<'_>, sync_at: i64) -> Result<(String, Vec<u8>), String> {
    let input: RawObject = serde_json::from_slice(payload).map_err(|e| format!("not a JSON object: {e}"))?;
    let (mut fields, op, version) = match Maxwell::detect(&input)? {
        Some(change) => {
            let version = match origin.position.or(change.position.as_deref()) {
                Some(p) => position_version(p).ok_or_else(|| format!("bad binlog position `{p}`"))?,
                None => change
                    .ts
                    .saturating_mul(1_000_000)
                    .saturating_add(change.xoffset.unwrap_or(0)),
            };
            let mut data = change.data;
            if let Some(source) = raw(&format!("{}.{}", change.database, change.table)) {
                data.insert("source".into(), source);
            }
            (data, change.op, version)
        }
        None => {
            let version = match input.get("version") {
                Some(v) => integer(v).ok_or("`version` must be an integer")?,
                None => origin.timestamp_ms.unwrap_or(0).saturating_mul(1000),
            };
            (input, Op::Upsert, version)
        }
    };

    let id = match fields.get("id") {
        Some(v) => text(v).ok_or("`id` must be a string or an integer")?,
        None => {
            let name = format!("{}/{}/{}", origin.topic, origin.partition, origin.offset);
            uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
        }
    };
    if op == Op::Upsert {
        let order_id = fields.get("order_id").ok_or("`order_id` is missing")?;
        text(order_id).ok_or("`order_id` must be a string or an integer")?;
        let quantity = fields.get("quantity").ok_or("`quantity` is missing")?;
        let quantity = integer(quantity)
            .filter(|q| *q >= 0)
            .ok_or("`quantity` must be a whole number ≥ 0")?;
        let price = fields.get("unit_price").ok_or("`unit_price` is missing")?;
        let price = decimal(price)
            .filter(|p| !p.is_sign_negative())
            .ok_or("`unit_price` must be a decimal number ≥ 0")?;
        let total = Decimal::from(quantity)
            .checked_mul(price)
            .ok_or("`quantity` × `unit_price` overflows")?;
        put(&mut fields, "total_value", &total.to_string());
    }
    put(&mut fields, "id", &serde_json::Value::from(id.clone()).to_string());
    put(&mut fields, "flag", "\"transform\"");
    put(&mut fields, "sync_at", &sync_at.to_string());
    if !fields.contains_key("processed_at") {
        put(&mut fields, "processed_at", &sync_at.to_string());
    }
    put(
        &mut fields,
        "op",
        if op == Op::Delete { "\"delete\"" } else { "\"upsert\"" },
    );
    put(&mut fields, "version", &version.to_string());
    let out = serde_json::to_vec(&fields).map_err(|e| e.to_string())?;
    Ok((id, out))
}

/// What the sink reads: an enriched order (or a record written to `enriched_orders` by hand, as
/// the seed's quickstart does: then `op` is upsert and `version` the record's timestamp).
pub fn parse_enriched(payload: &[u8], timestamp_ms: Option<i64>) -> Result<Enriched, String> {
    let f: RawObject = serde_json::from_slice(payload).map_err(|e| format!("not a JSON object: {e}"))?;
    let get = |k: &str| f.get(k).filter(|v| v.get() != "null");
    let id = get("id").ok_or("`id` is missing")?;
    let id = text(id).ok_or("`id` must be a string or an integer")?;
    if id.is_empty() || id.len() > 64 {
        return Err("`id` must be 1 to 64 characters".into());
    }
    let op = match get("op").map(|v| v.get()) {
        None | Some("\"upsert\"") => Op::Upsert,
        Some("\"delete\"") => Op::Delete,
        Some(other) => return Err(format!("`op` must be \"upsert\" or \"delete\", not {other}")),
    };
    let field = |k: &str, parse: fn(&RawValue) -> Option<Decimal>| -> Result<Option<Decimal>, String> {
        get(k)
            .map(|v| parse(v).ok_or(format!("`{k}` must be a decimal number")))
            .transpose()
    };
    let order = Enriched {
        order_id: get("order_id")
            .map(|v| text(v).ok_or("`order_id` must be a string or an integer"))
            .transpose()?,
        quantity: get("quantity")
            .map(|v| integer(v).ok_or("`quantity` must be a whole number"))
            .transpose()?,
        unit_price: field("unit_price", decimal)?,
        total_value: field("total_value", decimal)?,
        processed_at: get("processed_at")
            .map(|v| integer(v).ok_or("`processed_at` must be epoch seconds"))
            .transpose()?,
        version: match get("version") {
            Some(v) => integer(v).ok_or("`version` must be an integer")?,
            None => timestamp_ms.unwrap_or(0).saturating_mul(1000),
        },
        id,
        op,
    };
    if op == Op::Upsert && order.order_id.is_none() {
        return Err("`order_id` is missing".into());
    }
    Ok(order)
}

/// A Maxwell change record (`{database, table, type, ts, xid, commit, data, old, position}`).
struct Maxwell {
    database: String,
    table: String,
    op: Op,
    ts: i64,
    xoffset: Option<i64>,
    position: Option<String>,
    data: RawObject,
}

impl Maxwell {
    /// `Some` when `o` is a Maxwell record (it has `database`, `table` and `type`).
    fn detect(o: &RawObject) -> Result<Option<Self>, String> {
        let (Some(db), Some(table), Some(kind)) = (o.get("database"), o.get("table"), o.get("type")) else {
            return Ok(None);
        };
        let s = |v: &RawValue, what: &str| {
            serde_json::from_str::<String>(v.get()).map_err(|_| format!("Maxwell `{what}` must be a string"))
        };
        let op = match s(kind, "type")?.as_str() {
            "insert" | "update" | "bootstrap-insert" => Op::Upsert,
            "delete" => Op::Delete,
            other => return Err(format!("Maxwell record of type `{other}` carries no row")),
        };
        let data = o.get("data").ok_or("Maxwell record without `data`")?;
        let data: RawObject =
            serde_json::from_str(data.get()).map_err(|_| "Maxwell `data` must be an object".to_owned())?;
        Ok(Some(Self {
            database: s(db, "database")?,
            table: s(table, "table")?,
            op,
            ts: o.get("ts").and_then(|v| integer(v)).unwrap_or(0),
            xoffset: o.get("xoffset").and_then(|v| integer(v)),
            position: o.get("position").and_then(|v| serde_json::from_str(v.get()).ok()),
            data,
        }))
    }
}

/// `binlog.000042:1234` → a number that grows along the binlog: file sequence × 2³² + offset
/// (a binlog file is at most 1 GiB, so offsets fit in 32 bits).
pub fn position_version(position: &str) -> Option<i64> {
    let (file, offset) = position.rsplit_once(':')?;
    let seq: i64 = file.rsplit_once('.')?.1.parse().ok()?;
    let offset: i64 = offset.parse().ok()?;
    (0..1 << 31).contains(&seq).then_some(())?;
    (0..1 << 32).contains(&offset).then_some((seq << 32) | offset)
}

fn raw(json_string: &str) -> Option<Box<RawValue>> {
    RawValue::from_string(serde_json::Value::from(json_string).to_string()).ok()
}

fn put(o: &mut RawObject, key: &str, json: &str) {
    if let Ok(v) = RawValue::from_string(json.to_owned()) {
        o.insert(key.to_owned(), v);
    }
}

/// A JSON string, or an integer written as text.
fn text(v: &RawValue) -> Option<String> {
    let s = v.get();
    if s.starts_with('"') {
        serde_json::from_str(s).ok()
    } else {
        s.parse::<i128>().ok().map(|n| n.to_string())
    }
}

/// An integer, as a JSON number or a string of digits (`"5"`, as PHP and MySQL clients send).
fn integer(v: &RawValue) -> Option<i64> {
    let s = v.get();
    let s = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    s.parse().ok()
}

/// A decimal, from a JSON number's text or a numeric string, exactly.
fn decimal(v: &RawValue) -> Option<Decimal> {
    let s = v.get();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .trim();
    if s.contains(['e', 'E']) {
        Decimal::from_scientific(s).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    fn origin() -> Origin<'static> {
        Origin {
            topic: "raw_orders",
            partition: 1,
            offset: 7,
            timestamp_ms: Some(1_700_000_000_000),
            position: None,
        }
    }

    fn run(v: &str) -> Result<Value, String> {
        transform(v.as_bytes(), &origin(), 1_700_000_001).map(|(_, out)| serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn enriches_a_plain_order_exactly() {
        let out = run(r#"{"order_id":"ORD-1","quantity":3,"unit_price":19.99,"note":"x"}"#).unwrap();
        assert_eq!(out["total_value"].to_string(), "59.97");
        assert_eq!(out["flag"], "transform");
        assert_eq!(out["sync_at"], 1_700_000_001);
        assert_eq!(out["processed_at"], 1_700_000_001);
        assert_eq!(out["note"], "x");
        assert_eq!(out["op"], "upsert");
        assert_eq!(out["version"], 1_700_000_000_000_000_i64);
        // The same record again gets the same id.
        let again = run(r#"{"order_id":"ORD-1","quantity":3,"unit_price":19.99,"note":"x"}"#).unwrap();
        assert_eq!(out["id"], again["id"]);
        assert_eq!(out["id"].as_str().unwrap().len(), 36);
        let big = run(r#"{"order_id":7,"quantity":"3","unit_price":"12345678901234.01","id":5}"#).unwrap();
        assert_eq!(big["total_value"].to_string(), "37037036703702.03");
        assert_eq!(big["id"], "5");
    }

    #[test]
    fn takes_a_maxwell_change_record() {
        let change = json!({"database": "app_producer", "table": "orders", "type": "update", "ts": 1_700_000_000,
            "xid": 9, "commit": true, "position": "binlog.000003:1234",
            "data": {"id": 42, "order_id": "A-1", "quantity": 2, "unit_price": 0.10},
            "old": {"quantity": 1}});
        let out = run(&change.to_string()).unwrap();
        assert_eq!((out["id"].as_str(), out["op"].as_str()), (Some("42"), Some("upsert")));
        assert_eq!(out["total_value"].to_string(), "0.2"); // json! wrote 0.10 as 0.1
        assert_eq!(out["source"], "app_producer.orders");
        assert_eq!(out["version"], (3_i64 << 32) | 1234);
        let delete = json!({"database": "d", "table": "t", "type": "delete", "ts": 1, "data": {"id": 42}});
        assert_eq!(run(&delete.to_string()).unwrap()["op"], "delete");
    }

    #[test]
    fn the_schema_guard_names_the_field() {
        for (input, needle) in [
            ("[1,2]", "not a JSON object"),
            ("not json", "not a JSON object"),
            (r#"{"quantity":1,"unit_price":1}"#, "order_id"),
            (r#"{"order_id":"a","unit_price":1}"#, "quantity"),
            (r#"{"order_id":"a","quantity":1.5,"unit_price":1}"#, "quantity"),
            (r#"{"order_id":"a","quantity":-1,"unit_price":1}"#, "quantity"),
            (r#"{"order_id":"a","quantity":1,"unit_price":"cheap"}"#, "unit_price"),
            (r#"{"order_id":{"x":1},"quantity":1,"unit_price":1}"#, "order_id"),
            (
                r#"{"database":"d","table":"t","type":"table-create","data":{}}"#,
                "table-create",
            ),
        ] {
            let err = run(input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn positions_order_along_the_binlog() {
        let a = position_version("binlog.000001:4294967295").unwrap();
        let b = position_version("binlog.000002:4").unwrap();
        assert!(a < b);
        assert_eq!(position_version("nonsense"), None);
    }

    #[test]
    fn the_sink_reads_enriched_and_hand_written_records() {
        let o = parse_enriched(
            br#"{"id":"u1","order_id":"TEST-002","quantity":3,"unit_price":25.50,"total_value":76.50,"processed_at":1699267200}"#,
            Some(5),
        )
        .unwrap();
        assert_eq!(o.total_value.unwrap().to_string(), "76.50");
        assert_eq!((o.op, o.version), (Op::Upsert, 5000));
        assert!(parse_enriched(br#"{"id":"u1","op":"delete","version":9}"#, None).is_ok());
        assert!(parse_enriched(br#"{"order_id":"x"}"#, None).unwrap_err().contains("id"));
        assert!(parse_enriched(br#"{"id":"u","order_id":"x","op":"merge"}"#, None).is_err());
    }
}
