//! The status follower: status changes (`order_status`) and confirmations (`order_confirm`) →
//! the orders' status history, each `(order, status)` once. Runs inside the `restaurants`
//! service (group `restaurants-status`) and wakes the live streams of the orders it touched.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kafkube_bus::{BatchOutput, Handler, HandlerError, Record};
use kafkube_store::Db;
use tokio::sync::broadcast;

use crate::model::{Confirmation, Status, StatusChange};

/// Tells the live streams of this process which orders changed.
pub type Updates = broadcast::Sender<Arc<str>>;

pub struct StatusFollower {
    pub db: Db,
    pub confirm_topic: String,
    pub updates: Updates,
}

impl StatusFollower {
    fn parse(&self, r: &Record) -> Result<StatusChange, String> {
        if r.topic == self.confirm_topic {
            let c: Confirmation = r.json()?;
            let at = r
                .timestamp_ms
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or(r.received_at);
            return Ok(StatusChange {
                order_id: c.order_id,
                status: Status::Confirmed,
                at,
                reason: None,
            });
        }
        let c: StatusChange = r.json()?;
        if c.order_id.is_empty() {
            return Err("order_id is empty".into());
        }
        Ok(c)
    }
}

impl Handler for StatusFollower {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut changes = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match self.parse(r) {
                Ok(c) => changes.push(c),
                Err(why) => out.reject(i, why),
            }
        }
        if changes.is_empty() {
            return Ok(out);
        }
        let touched = crate::store::apply(&self.db, &changes).await?;
        metrics::counter!("restaurants_status_changes_total").increment(touched.len() as u64);
        for id in touched {
            // No live stream listening is fine.
            let _ = self.updates.send(id.into());
        }
        Ok(out)
    }
}
