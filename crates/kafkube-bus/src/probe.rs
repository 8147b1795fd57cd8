//! The first contact with a cluster: read its metadata, and tell a login or TLS failure (which no
//! retry will fix) from a broker that is merely not there yet.
//!
//! librdkafka retries a failed SASL login or TLS handshake forever and reports each attempt
//! through its error callback; a metadata request meanwhile only says "transport failure". The
//! probe watches the callback, so a wrong password or an untrusted certificate is one clear
//! error within a second or two instead of a stream of warnings.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};

use crate::{BusError, KafkaConfig, Result};

/// What the probe learnt.
#[derive(Debug)]
pub enum Probe {
    /// The cluster answered: the names of its topics.
    Topics(HashSet<String>),
    /// No broker answered within the time given (`why` says what librdkafka saw).
    Unreachable(String),
}

#[derive(Default)]
struct ProbeContext {
    /// The most telling error seen: a login or TLS failure wins over a transport failure.
    seen: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ProbeContext {
    fn seen(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // Repeated connection failures are summed up by the probe's own error.
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.as_ref().is_some_and(|(c, _)| fatal(*c)) && !fatal(code) {
            return;
        }
        *seen = Some((code, reason.to_owned()));
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
}

fn fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL
    )
}

/// Reads the cluster's topic names, trying for up to `wait`. A failed SASL login or TLS
/// handshake is an error at once (`BusError::Config`, saying what to check); a broker that does
/// not answer is `Probe::Unreachable`.
pub async fn probe(config: &KafkaConfig, wait: Duration) -> Result<Probe> {
    let client: BaseProducer<ProbeContext> = config.admin_config().create_with_context(ProbeContext::default())?;
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + wait;
        loop {
            let attempt = client.client().fetch_metadata(None, Duration::from_millis(500));
            // Serves the error callback.
            client.poll(Duration::ZERO);
            if let Ok(md) = attempt {
                return Ok(Probe::Topics(md.topics().iter().map(|t| t.name().to_owned()).collect()));
            }
            if let Some((code, reason)) = client.context().seen()
                && fatal(code)
            {
                return Err(BusError::Config(explain(&config, code, &reason)));
            }
            if Instant::now() >= deadline {
                let why = match (client.context().seen(), attempt) {
                    (Some((_, reason)), _) => reason,
                    (None, Err(e)) => e.to_string(),
                    (None, Ok(_)) => String::new(),
                };
                return Ok(Probe::Unreachable(why));
            }
        }
    })
    .await
    .map_err(|e| BusError::Config(format!("the broker probe failed: {e}")))?
}

/// The error a user reads: what failed and which setting to check.
fn explain(config: &KafkaConfig, code: RDKafkaErrorCode, reason: &str) -> String {
    let brokers = &config.brokers;
    let reason = reason.trim();
    if code == RDKafkaErrorCode::SSL {
        let hint = if reason.contains("certificate verify failed") || reason.contains("unable to get local issuer") {
            "the broker's certificate is not signed by a CA this client trusts: set KAFKA_SSL_CA_LOCATION to the CA \
             certificate (PEM) that signed it"
        } else if reason.contains("wrong version number") || reason.contains("packet length") {
            "the listener does not speak TLS: check the port and KAFKA_SECURITY_PROTOCOL"
        } else {
            "check KAFKA_SSL_CA_LOCATION and, for mutual TLS, KAFKA_SSL_CERTIFICATE_LOCATION/KAFKA_SSL_KEY_LOCATION"
        };
        return format!("TLS with Kafka at {brokers} failed: {reason}; {hint}");
    }
    let user = config.options.get("sasl.username").map_or("?", String::as_str);
    let mechanism = config.options.get("sasl.mechanism").map_or("?", String::as_str);
    format!(
        "Kafka at {brokers} refused the SASL login of user `{user}` ({mechanism}): {reason}; check KAFKA_SASL_USERNAME, \
         KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
    )
}
