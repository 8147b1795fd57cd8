//! Kafka ingest: records on the configured topics carry the same bodies as `POST /publish`, and
//! go through the same [`store::ingest`](crate::store::ingest), so an event that arrives both
//! ways is stored once.

use kafkube_bus::{BatchOutput, Handler, HandlerError, Record};
use kafkube_store::Db;

use crate::model::{Event, parse_body};
use crate::store;

pub struct IngestHandler {
    db: Db,
    max_events: usize,
}

impl IngestHandler {
    pub fn new(db: Db, max_events: usize) -> Self {
        Self { db, max_events }
    }
}

impl Handler for IngestHandler {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut out = BatchOutput::default();
        let mut events: Vec<Event> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match r.json().and_then(|body| parse_body(body, self.max_events)) {
                Ok(evs) => events.extend(evs),
                Err(why) => out.reject(i, why),
            }
        }
        store::ingest(&self.db, &events).await.map_err(|e| {
            if e.is_data_error() {
                HandlerError::permanent(e.to_string())
            } else {
                HandlerError::transient(e)
            }
        })?;
        Ok(out)
    }
}
