//! Handler layers, watermill-style: each wraps a [`Handler`] and is a [`Handler`] itself, so the
//! behaviour every consumer shares is composed around an app's plain handler instead of being
//! written into it or into the loop. The runner stacks them, outermost first:
//!
//! [`DeadLetter`] → [`Retry`] → [`Traced`] → the app's handler.
//!
//! - [`Traced`]: runs the handler in a span naming the first record (topic, partition, offset,
//!   key, correlation id) and the batch size, so every log line of a handler names its record.
//! - [`Retry`]: retries a transient failure with backoff for as long as it takes (nothing is
//!   committed meanwhile), a permanent one up to `max_attempts` times; gives up only on shutdown.
//! - [`DeadLetter`]: a batch that failed permanently is split, each record tried alone, so one
//!   poison record cannot block or take down its neighbours; what still fails becomes a rejected
//!   record of the output, which the runner sends to `<topic>.dlq`.

use std::sync::Arc;

use kafkube_core::{Backoff, Shutdown};
use tracing::Instrument;

use crate::{BatchOutput, Handler, HandlerError, Record};

/// A handler shared with the caller (tests read an app handler's state through the `Arc`).
impl<H: Handler> Handler for Arc<H> {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        (**self).handle(batch).await
    }
}

/// Runs the inner handler in a span naming the records.
pub struct Traced<H> {
    inner: H,
    group: Arc<str>,
}

impl<H> Traced<H> {
    pub fn new(inner: H, group: impl Into<Arc<str>>) -> Self {
        Self {
            inner,
            group: group.into(),
        }
    }
}

impl<H: Handler> Handler for Traced<H> {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let Some(first) = batch.first() else {
            return self.inner.handle(batch).await;
        };
        let span = tracing::info_span!(
            "handle",
            group = %self.group,
            topic = %first.topic,
            partition = first.partition,
            offset = first.offset,
            key = first.key_str().unwrap_or_default(),
            correlation_id = first.headers.get_str(crate::Header::CORRELATION_ID).unwrap_or_default(),
            records = batch.len(),
        );
        self.inner.handle(batch).instrument(span).await
    }
}

/// Retries the inner handler: transient failures until they pass, permanent ones up to
/// `max_attempts` times. Returns [`HandlerError::Stopped`] when `stop` trips while it waits.
pub struct Retry<H> {
    inner: H,
    max_attempts: u32,
    stop: Shutdown,
    group: Arc<str>,
}

impl<H> Retry<H> {
    pub fn new(inner: H, max_attempts: u32, stop: Shutdown, group: impl Into<Arc<str>>) -> Self {
        Self {
            inner,
            max_attempts: max_attempts.max(1),
            stop,
            group: group.into(),
        }
    }
}

impl<H: Handler> Handler for Retry<H> {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let mut backoff = Backoff::outage();
        let mut permanent = 0;
        loop {
            match self.inner.handle(batch).await {
                Ok(mut out) => {
                    out.rejected.retain(|(i, _)| *i < batch.len());
                    return Ok(out);
                }
                Err(HandlerError::Stopped) => return Err(HandlerError::Stopped),
                Err(HandlerError::Transient(e)) => {
                    tracing::warn!(group = %self.group, error = %e, retry = backoff.attempts() + 1, "batch failed (transient); retrying");
                    metrics::counter!("kafkube_consumer_retries_total", "group" => self.group.to_string(), "kind" => "transient").increment(1);
                }
                Err(HandlerError::Permanent(why)) => {
                    permanent += 1;
                    metrics::counter!("kafkube_consumer_retries_total", "group" => self.group.to_string(), "kind" => "permanent").increment(1);
                    if permanent >= self.max_attempts {
                        tracing::warn!(group = %self.group, error = %why, records = batch.len(), "batch failed permanently");
                        return Err(HandlerError::Permanent(why));
                    }
                }
            }
            if !backoff.wait(&self.stop).await {
                return Err(HandlerError::Stopped);
            }
        }
    }
}

/// Turns a permanent failure into rejected records: the batch is split and each record tried
/// alone, so the good ones still go through.
pub struct DeadLetter<H> {
    inner: H,
}

impl<H> DeadLetter<H> {
    pub fn new(inner: H) -> Self {
        Self { inner }
    }
}

impl<H: Handler> Handler for DeadLetter<H> {
    async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
        let why = match self.inner.handle(batch).await {
            Err(HandlerError::Permanent(why)) => why.to_string(),
            other => return other,
        };
        let mut out = BatchOutput::default();
        if batch.len() == 1 {
            out.reject(0, why);
            return Ok(out);
        }
        for (i, r) in batch.iter().enumerate() {
            match self.inner.handle(std::slice::from_ref(r)).await {
                Ok(alone) => {
                    out.produce.extend(alone.produce);
                    out.rejected.extend(alone.rejected.into_iter().map(|(_, why)| (i, why)));
                }
                Err(HandlerError::Permanent(why)) => out.reject(i, why.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::Outgoing;

    fn records(payloads: &[&str]) -> Vec<Record> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                topic: "t".into(),
                partition: 0,
                offset: i as i64,
                key: None,
                payload: Some(p.as_bytes().to_vec()),
                headers: crate::HeaderMap::default(),
                timestamp_ms: None,
                received_at: chrono::Utc::now(),
            })
            .collect()
    }

    /// Fails transiently `transient` times, permanently on a batch holding "poison", rejects
    /// "bad", forwards the rest; counts its calls.
    #[derive(Default)]
    struct Fake {
        transient: AtomicU32,
        calls: AtomicU32,
        seen: Mutex<Vec<String>>,
    }

    impl Handler for Fake {
        async fn handle(&self, batch: &[Record]) -> Result<BatchOutput, HandlerError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.transient.load(Ordering::SeqCst) > 0 {
                self.transient.fetch_sub(1, Ordering::SeqCst);
                return Err(HandlerError::transient("database down"));
            }
            let texts: Vec<String> = batch
                .iter()
                .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
                .collect();
            if texts.iter().any(|t| t == "poison") {
                return Err(HandlerError::permanent("poison in batch"));
            }
            let mut out = BatchOutput::default();
            for (i, t) in texts.iter().enumerate() {
                if t == "bad" {
                    out.reject(i, "bad record");
                } else {
                    self.seen.lock().map(|mut s| s.push(t.clone())).ok();
                    out.produce.push(Outgoing::new("out", None::<Vec<u8>>, t.clone()));
                }
            }
            Ok(out)
        }
    }

    fn stack(fake: &Arc<Fake>, stop: &Shutdown) -> DeadLetter<Retry<Traced<Arc<Fake>>>> {
        DeadLetter::new(Retry::new(Traced::new(fake.clone(), "g"), 3, stop.clone(), "g"))
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_they_pass() {
        let fake = Arc::new(Fake::default());
        fake.transient.store(4, Ordering::SeqCst);
        let out = stack(&fake, &Shutdown::new())
            .handle(&records(&["a", "b"]))
            .await
            .unwrap();
        assert_eq!(out.produce.len(), 2);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poison_record_is_isolated_and_the_rest_go_through() {
        let fake = Arc::new(Fake::default());
        let out = stack(&fake, &Shutdown::new())
            .handle(&records(&["a", "poison", "bad", "c"]))
            .await
            .unwrap();
        let mut rejected = out.rejected.clone();
        rejected.sort();
        assert_eq!(
            rejected,
            vec![(1, "poison in batch".to_owned()), (2, "bad record".to_owned())]
        );
        assert_eq!(*fake.seen.lock().unwrap(), ["a", "c"]);
        // Three attempts of the whole batch, then each record alone: the poison three times,
        // the other three once.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_while_retrying_gives_up_without_output() {
        let fake = Arc::new(Fake::default());
        fake.transient.store(u32::MAX, Ordering::SeqCst);
        let stop = Shutdown::new();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            stopper.trigger();
        });
        let r = stack(&fake, &stop).handle(&records(&["a"])).await;
        assert!(matches!(r, Err(HandlerError::Stopped)), "{r:?}");
    }
}
