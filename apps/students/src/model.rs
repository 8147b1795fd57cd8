//! The student record, its input, and the event published for each change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stored student.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Mahasiswa {
    pub id: i64,
    pub nim: String,
    pub nama: String,
    pub jurusan: Option<String>,
    pub email: Option<String>,
    pub angkatan: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `POST` and `PUT`. As in seed 000, whose clients Kafkube serves unchanged, unknown
/// fields are ignored and `nim` may be sent as a number (it is stored as its decimal digits).
///
/// For `POST`, `nim` and `nama` are required; for `PUT`, at least one field. Text is trimmed and
/// must not be blank.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct MahasiswaInput {
    /// The student number: text, or a whole number (stored as its digits). Unique.
    #[serde(default, deserialize_with = "nim")]
    #[schema(max_length = 32)]
    pub nim: Option<String>,
    #[schema(max_length = 200)]
    pub nama: Option<String>,
    #[schema(max_length = 200)]
    pub jurusan: Option<String>,
    /// Contains an `@`.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    #[schema(minimum = 1900, maximum = 2200)]
    pub angkatan: Option<i32>,
}

/// Validated fields. For a create, `nim` and `nama` are present; for an update, absent fields
/// are left as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    pub nim: Option<String>,
    pub nama: Option<String>,
    pub jurusan: Option<String>,
    pub email: Option<String>,
    pub angkatan: Option<i32>,
}

impl MahasiswaInput {
    pub fn for_create(self) -> Result<Fields, String> {
        let fields = self.validate()?;
        if fields.nim.is_none() {
            return Err("`nim` is required".into());
        }
        if fields.nama.is_none() {
            return Err("`nama` is required".into());
        }
        Ok(fields)
    }

    pub fn for_update(self) -> Result<Fields, String> {
        let fields = self.validate()?;
        if fields == Fields::default() {
            return Err("nothing to update: give at least one of nim, nama, jurusan, email, angkatan".into());
        }
        Ok(fields)
    }

    fn validate(self) -> Result<Fields, String> {
        let nim = text("nim", self.nim, 32)?;
        let nama = text("nama", self.nama, 200)?;
        let jurusan = text("jurusan", self.jurusan, 200)?;
        let email = text("email", self.email, 254)?;
        if let Some(e) = &email
            && !e.contains('@')
        {
            return Err("`email` must be an e-mail address".into());
        }
        if let Some(a) = self.angkatan
            && !(1900..=2200).contains(&a)
        {
            return Err("`angkatan` must be a year between 1900 and 2200".into());
        }
        Ok(Fields {
            nim,
            nama,
            jurusan,
            email,
            angkatan: self.angkatan,
        })
    }
}

/// `nim` as text, or a whole number as its decimal digits (`2201001` → `"2201001"`).
fn nim<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nim {
        Text(String),
        Whole(u64),
        Other(serde::de::IgnoredAny),
    }
    match Option::<Nim>::deserialize(d)? {
        None => Ok(None),
        Some(Nim::Text(s)) => Ok(Some(s)),
        Some(Nim::Whole(n)) => Ok(Some(n.to_string())),
        Some(Nim::Other(_)) => Err(serde::de::Error::custom("`nim` must be a string or a whole number")),
    }
}

/// Trims; refuses blank and over-long values.
fn text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, String> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if v.chars().count() > max {
        return Err(format!("`{field}` is longer than {max} characters"));
    }
    kafkube_store::storable::text(v).map_err(|why| format!("`{field}` {why}"))?;
    Ok(Some(v.to_owned()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "MAHASISWA_CREATED")]
    Created,
    #[serde(rename = "MAHASISWA_UPDATED")]
    Updated,
    #[serde(rename = "MAHASISWA_DELETED")]
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "MAHASISWA_CREATED",
            Self::Updated => "MAHASISWA_UPDATED",
            Self::Deleted => "MAHASISWA_DELETED",
        }
    }
}

/// The value on `mahasiswa_events` (the seed's field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MahasiswaEvent {
    #[serde(rename = "eventId")]
    pub event_id: Uuid,
    #[serde(rename = "eventType")]
    pub event_type: EventType,
    /// When the API published the change, epoch milliseconds.
    pub timestamp_api_sent: i64,
    pub data: Mahasiswa,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(nim: Option<&str>, nama: Option<&str>) -> MahasiswaInput {
        MahasiswaInput {
            nim: nim.map(Into::into),
            nama: nama.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn create_needs_nim_and_nama() {
        assert_eq!(input(None, Some("A")).for_create().unwrap_err(), "`nim` is required");
        assert_eq!(input(Some("1"), None).for_create().unwrap_err(), "`nama` is required");
        assert_eq!(
            input(Some(" "), Some("A")).for_create().unwrap_err(),
            "`nim` must not be empty"
        );
        let ok = input(Some(" 123 "), Some("Ani")).for_create().unwrap();
        assert_eq!(ok.nim.as_deref(), Some("123"));
    }

    /// What seed 000's clients send: a numeric `nim`, fields Kafkube does not store.
    #[test]
    fn accepts_a_numeric_nim_and_ignores_unknown_fields() {
        let parse = |v: serde_json::Value| serde_json::from_value::<MahasiswaInput>(v);
        let i = parse(serde_json::json!({"nim": 2201001, "nama": "Ani", "kelas": "A", "extra": {"x": 1}})).unwrap();
        assert_eq!(i.for_create().unwrap().nim.as_deref(), Some("2201001"));
        let i = parse(serde_json::json!({"nim": "007", "nama": "Bo"})).unwrap();
        assert_eq!(i.nim.as_deref(), Some("007"));
        for bad in [
            serde_json::json!(1.5),
            serde_json::json!(-3),
            serde_json::json!(true),
            serde_json::json!([1]),
        ] {
            let err = parse(serde_json::json!({"nim": bad, "nama": "C"}))
                .unwrap_err()
                .to_string();
            assert!(err.contains("`nim` must be a string or a whole number"), "{err}");
        }
        assert!(
            parse(serde_json::json!({"nama": 5})).is_err(),
            "other fields keep their types"
        );
    }

    #[test]
    fn update_needs_a_field_and_checks_values() {
        assert!(input(None, None).for_update().is_err());
        let bad_email = MahasiswaInput {
            email: Some("nope".into()),
            ..Default::default()
        };
        assert!(bad_email.for_update().unwrap_err().contains("email"));
        let bad_year = MahasiswaInput {
            angkatan: Some(3),
            ..Default::default()
        };
        assert!(bad_year.for_update().unwrap_err().contains("angkatan"));
    }

    #[test]
    fn event_uses_the_seed_field_names() {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let e = MahasiswaEvent {
            event_id: Uuid::nil(),
            event_type: EventType::Created,
            timestamp_api_sent: 5,
            data: Mahasiswa {
                id: 1,
                nim: "1".into(),
                nama: "A".into(),
                jurusan: None,
                email: None,
                angkatan: None,
                created_at: t,
                updated_at: t,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["eventType"], "MAHASISWA_CREATED");
        assert_eq!(v["timestamp_api_sent"], 5);
        assert!(v["eventId"].is_string() && v["data"]["nim"] == "1");
    }
}
