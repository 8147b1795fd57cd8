//! Kafka ingest: records on the configured topics carry the same bodies as `POST /publish`, and
//! go through the same [`store::ingest`](crate::store::ingest), so an event that arrives both
//! ways is stored once.

use kafkube_bus::{BatchOutput, Handler, HandlerError, Record};
use kafkube_store::Db;

use crate::model::{Event, parse_body_bytes};
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
            let parsed = match &r.payload {
                Some(body) => parse_body_bytes(body, self.max_events).map_err(|e| e.to_string()),
                None => Err("record has no payload".to_owned()),
            };
            match parsed {
                Ok(evs) => events.extend(evs),
                Err(why) => out.reject(i, why),
            }
        }
        store::ingest(&self.db, &events).await?;
        Ok(out)
    }
}
