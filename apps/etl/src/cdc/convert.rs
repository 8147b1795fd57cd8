//! Binlog row values → JSON, as Maxwell writes them: integers (signed and unsigned) and DECIMAL
//! as JSON numbers written from their exact text, FLOAT/DOUBLE as numbers, text in UTF-8,
//! binary strings and BLOBs in base64, DATE `YYYY-MM-DD`, DATETIME/TIMESTAMP
//! `YYYY-MM-DD HH:MM:SS[.ffffff]` (TIMESTAMP in UTC), TIME `HH:MM:SS[.ffffff]`, YEAR a number,
//! ENUM its label, SET an array of labels, BIT a number, JSON the document, NULL null.

use base64::Engine;
use mysql_async::Value;
use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// The binary character set's number: such columns hold bytes, not text.
const BINARY: u16 = 63;

/// A JSON object whose members keep the column order and whose values are JSON text.
#[derive(Debug, Default)]
pub struct Object(pub Vec<(String, Box<RawValue>)>);

impl Object {
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// ENUM and SET labels of a table, from the table map's full metadata (in column order of the
/// ENUM columns and of the SET columns).
#[derive(Debug, Default)]
pub struct Labels {
    enums: Vec<Vec<String>>,
    sets: Vec<Vec<String>>,
}

impl Labels {
    pub fn of(tme: &TableMapEvent<'_>) -> Self {
        let mut labels = Self::default();
        for field in tme.iter_optional_meta().flatten() {
            match field {
                OptionalMetadataField::EnumStrValue(v) => {
                    labels.enums = v
                        .iter_values()
                        .flatten()
                        .map(|e| e.values().iter().map(|x| x.value().into_owned()).collect())
                        .collect();
                }
                OptionalMetadataField::SetStrValue(v) => {
                    labels.sets = v
                        .iter_values()
                        .flatten()
                        .map(|e| e.values().iter().map(|x| x.value().into_owned()).collect())
                        .collect();
                }
                _ => {}
            }
        }
        labels
    }
}

/// The row as a JSON object, plus the primary key columns (for the record's key).
pub fn row_to_json(row: &BinlogRow, tme: &TableMapEvent<'_>, labels: &Labels) -> (Object, Vec<String>) {
    let mut obj = Object(Vec::with_capacity(row.len()));
    let mut pk = Vec::new();
    // ENUM/SET columns are numbered among their kind, in table order.
    let (mut enum_i, mut set_i) = (0, 0);
    for (i, col) in row.columns_ref().iter().enumerate() {
        let name = col.name_str().into_owned();
        if col.flags().contains(mysql_async::consts::ColumnFlags::PRI_KEY_FLAG) {
            pk.push(name.clone());
        }
        let ty = real_type(tme, i, col.column_type());
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let json = match row.as_ref(i) {
            None => "null".to_owned(),
            Some(v) => value_json(v, ty, meta, col.character_set(), labels, &mut enum_i, &mut set_i),
        };
        if let Ok(raw) = RawValue::from_string(json) {
            obj.0.push((name, raw));
        }
    }
    (obj, pk)
}

/// The column's type; a CHAR column stores ENUM and SET as STRING with the real type in its
/// metadata.
fn real_type(tme: &TableMapEvent<'_>, i: usize, ty: ColumnType) -> ColumnType {
    if ty == ColumnType::MYSQL_TYPE_STRING
        && let Some(&[real, _]) = tme.get_column_metadata(i)
        && let Ok(t) = ColumnType::try_from(real)
        && matches!(t, ColumnType::MYSQL_TYPE_ENUM | ColumnType::MYSQL_TYPE_SET)
    {
        return t;
    }
    ty
}

fn string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn value_json(
    v: &BinlogValue<'_>,
    ty: ColumnType,
    meta: &[u8],
    charset: u16,
    labels: &Labels,
    enum_i: &mut usize,
    set_i: &mut usize,
) -> String {
    use ColumnType::*;
    let value = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            return serde_json::Value::try_from(j.clone()).map_or_else(|_| "null".to_owned(), |v| v.to_string());
        }
        BinlogValue::JsonDiff(_) => return "null".to_owned(),
    };
    if matches!(ty, MYSQL_TYPE_ENUM) {
        let labels = labels.enums.get(*enum_i);
        *enum_i += 1;
        return match value {
            Value::Int(n) if *n > 0 => labels
                .and_then(|l| l.get(*n as usize - 1))
                .map_or_else(|| n.to_string(), |s| string(s)),
            Value::Int(_) => string(""),
            Value::NULL => "null".to_owned(),
            _ => "null".to_owned(),
        };
    }
    if matches!(ty, MYSQL_TYPE_SET) {
        let labels = labels.sets.get(*set_i);
        *set_i += 1;
        return match value {
            Value::Bytes(b) => {
                let bits = b.iter().rev().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                let names: Vec<String> = (0..64)
                    .filter(|i| bits & (1 << i) != 0)
                    .map(|i| labels.and_then(|l| l.get(i)).cloned().unwrap_or_else(|| i.to_string()))
                    .collect();
                serde_json::Value::from(names).to_string()
            }
            _ => "null".to_owned(),
        };
    }
    match value {
        Value::NULL => "null".to_owned(),
        Value::Int(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::Float(f) => serde_json::Value::from(f64::from(*f)).to_string(),
        Value::Double(f) => serde_json::Value::from(*f).to_string(),
        Value::Date(y, m, d, h, mi, s, us) => {
            if matches!(ty, MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE) {
                string(&format!("{y:04}-{m:02}-{d:02}"))
            } else {
                let frac = meta.first().copied().unwrap_or(0);
                string(&format!(
                    "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction(*us, frac)
                ))
            }
        }
        Value::Time(neg, days, h, m, s, us) => {
            let frac = meta.first().copied().unwrap_or(0);
            let hours = u32::from(*h) + days * 24;
            string(&format!(
                "{}{hours:02}:{m:02}:{s:02}{}",
                if *neg { "-" } else { "" },
                fraction(*us, frac)
            ))
        }
        Value::Bytes(b) => match ty {
            MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_YEAR => String::from_utf8_lossy(b).into_owned(),
            MYSQL_TYPE_TIMESTAMP2 => {
                let text = String::from_utf8_lossy(b);
                let (secs, micros) = text.split_once('.').unwrap_or((&text, ""));
                let frac = meta.first().copied().unwrap_or(0);
                let us: u32 = format!("{micros:0<6}").parse().unwrap_or(0);
                match secs
                    .parse::<i64>()
                    .ok()
                    .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                {
                    Some(t) => string(&format!("{}{}", t.format("%Y-%m-%d %H:%M:%S"), fraction(us, frac))),
                    None => string(&text),
                }
            }
            MYSQL_TYPE_BIT => b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)).to_string(),
            _ if charset == BINARY => string(&base64::engine::general_purpose::STANDARD.encode(b)),
            _ => match std::str::from_utf8(b) {
                Ok(s) => string(s),
                Err(_) => string(&base64::engine::general_purpose::STANDARD.encode(b)),
            },
        },
    }
}

/// `.ffffff` cut to the column's precision (`DATETIME(3)` → `.123`), nothing for precision 0.
fn fraction(us: u32, precision: u8) -> String {
    if precision == 0 {
        return String::new();
    }
    let digits = format!("{us:06}");
    format!(".{}", &digits[..usize::from(precision.min(6))])
}
