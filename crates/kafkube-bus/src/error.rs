//! Errors of the bus.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub type Result<T, E = BusError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    #[error("Kafka client error: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the broker did not confirm delivery to {topic}: {source}")]
    Delivery { topic: String, source: KafkaError },
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("shutting down")]
    Shutdown,
    /// No broker connection could be made; the text says where and why, when known
    /// (`" at 127.0.0.1:9092: Connection refused"`).
    #[error("cannot reach Kafka{0}")]
    Unreachable(String),
}

impl BusError {
    /// True when the error means "the broker cannot be reached right now", as opposed to a
    /// message or configuration problem. Callers use it to answer 503 rather than 500.
    pub fn is_unreachable(&self) -> bool {
        let code = match self {
            Self::Kafka(e) | Self::Delivery { source: e, .. } => e.rdkafka_error_code(),
            Self::Unreachable(_) => return true,
            _ => None,
        };
        matches!(
            code,
            Some(
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::QueueFull
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
            )
        )
    }
}
