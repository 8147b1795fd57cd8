//! The student record, its input, and the event published for each change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A stored student.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
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

/// The body of `POST` and `PUT`. Unknown fields are refused, so a typo is an error rather than
/// silently dropped data.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MahasiswaInput {
    pub nim: Option<String>,
    pub nama: Option<String>,
    pub jurusan: Option<String>,
    pub email: Option<String>,
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
