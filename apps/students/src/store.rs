//! The students' SQL. Every change writes its event to the outbox in the same transaction.

use chrono::Utc;
use kafkube_bus::{Header, Outgoing, headers::new_traceparent};
use kafkube_store::{Db, StoreError, on_db, on_tx};
use uuid::Uuid;

use crate::model::{EventType, Fields, Mahasiswa, MahasiswaEvent};

const COLUMNS: &str = "id, nim, nama, jurusan, email, angkatan, created_at, updated_at";

/// Tracing context of the request that made a change, carried into the event's headers.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

/// A change and the id of the event that announces it.
#[derive(Clone, Debug)]
pub struct Changed {
    pub row: Mahasiswa,
    pub event_id: Uuid,
}

pub async fn create(db: &Db, topic: &str, f: &Fields, trace: &Trace) -> Result<Changed, StoreError> {
    let now = Utc::now();
    let mut tx = db.begin().await?;
    let row: Mahasiswa = on_tx!(&mut tx, conn => {
        sqlx::query_as(&format!(
            "INSERT INTO mahasiswa (nim, nama, jurusan, email, angkatan, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMNS}"
        ))
        .bind(&f.nim)
        .bind(&f.nama)
        .bind(&f.jurusan)
        .bind(&f.email)
        .bind(f.angkatan)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
    });
    let event_id = publish(&mut tx, topic, EventType::Created, &row, trace).await?;
    tx.commit().await?;
    Ok(Changed { row, event_id })
}

/// Applies the fields given; `None` when there is no student `id`.
pub async fn update(db: &Db, topic: &str, id: i64, f: &Fields, trace: &Trace) -> Result<Option<Changed>, StoreError> {
    let mut tx = db.begin().await?;
    let row: Option<Mahasiswa> = on_tx!(&mut tx, conn => {
        sqlx::query_as(&format!(
            "UPDATE mahasiswa SET nim = COALESCE($2, nim), nama = COALESCE($3, nama), \
             jurusan = COALESCE($4, jurusan), email = COALESCE($5, email), \
             angkatan = COALESCE($6, angkatan), updated_at = $7 WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&f.nim)
        .bind(&f.nama)
        .bind(&f.jurusan)
        .bind(&f.email)
        .bind(f.angkatan)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?
    });
    let Some(row) = row else { return Ok(None) };
    let event_id = publish(&mut tx, topic, EventType::Updated, &row, trace).await?;
    tx.commit().await?;
    Ok(Some(Changed { row, event_id }))
}

pub async fn delete(db: &Db, topic: &str, id: i64, trace: &Trace) -> Result<Option<Changed>, StoreError> {
    let mut tx = db.begin().await?;
    let row: Option<Mahasiswa> = on_tx!(&mut tx, conn => {
        sqlx::query_as(&format!("DELETE FROM mahasiswa WHERE id = $1 RETURNING {COLUMNS}"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    });
    let Some(row) = row else { return Ok(None) };
    let event_id = publish(&mut tx, topic, EventType::Deleted, &row, trace).await?;
    tx.commit().await?;
    Ok(Some(Changed { row, event_id }))
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Mahasiswa>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM mahasiswa WHERE id = $1");
    Ok(on_db!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)?)
}

/// One page, newest first, and the total count.
pub async fn list(db: &Db, page: i64, per_page: i64) -> Result<(Vec<Mahasiswa>, i64), StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM mahasiswa ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2");
    let offset = (page - 1) * per_page;
    let rows = on_db!(db, p => sqlx::query_as(&sql).bind(per_page).bind(offset).fetch_all(p).await)?;
    let (total,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM mahasiswa").fetch_one(p).await)?;
    Ok((rows, total))
}

/// Writes the change event to the outbox, keyed by the student so its events stay in order.
async fn publish(
    tx: &mut kafkube_store::Tx,
    topic: &str,
    event_type: EventType,
    row: &Mahasiswa,
    trace: &Trace,
) -> Result<Uuid, StoreError> {
    let event = MahasiswaEvent {
        event_id: Uuid::now_v7(),
        event_type,
        timestamp_api_sent: kafkube_core::time::now_epoch_ms(),
        data: row.clone(),
    };
    let payload = serde_json::to_vec(&event).map_err(|e| StoreError::Sqlx(sqlx::Error::Encode(Box::new(e))))?;
    let correlation = trace
        .correlation_id
        .clone()
        .unwrap_or_else(|| event.event_id.to_string());
    let msg = Outgoing::new(topic, Some(row.id.to_string()), payload)
        .header(Header::EVENT_TYPE, event_type.as_str())
        .header(Header::CORRELATION_ID, correlation)
        .header(
            Header::TRACEPARENT,
            trace.traceparent.clone().unwrap_or_else(new_traceparent),
        );
    kafkube_outbox::enqueue(tx, &msg).await?;
    Ok(event.event_id)
}
