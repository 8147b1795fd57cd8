//! Options of the hash app; the seed's environment variables work unchanged.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use kafkube_core::time::parse_duration;

#[derive(Args, Clone, Debug)]
pub struct HashArgs {
    /// Topic the gateway sends hash requests to.
    #[arg(
        id = "hash-request-topic",
        long = "hash-request-topic",
        value_name = "TOPIC",
        env = "KAFKA_REQUEST_TOPIC",
        default_value = "hash_requests"
    )]
    pub request_topic: String,

    /// Topic the processor sends replies to; each gateway replica reads its own partitions of it.
    #[arg(
        id = "hash-response-topic",
        long = "hash-response-topic",
        value_name = "TOPIC",
        env = "KAFKA_RESPONSE_TOPIC",
        default_value = "hash_responses"
    )]
    pub response_topic: String,

    /// How long the gateway waits for a reply before answering 504 (`10`, `10s`, `500ms`).
    #[arg(
        id = "hash-request-timeout",
        long = "hash-request-timeout",
        value_name = "DURATION",
        env = "REQUEST_TIMEOUT",
        default_value = "10",
        value_parser = parse_duration
    )]
    pub request_timeout: Duration,

    /// Address the gateway binds to.
    #[arg(
        id = "hash-host",
        long = "hash-host",
        value_name = "ADDR",
        env = "SERVICE_1_HOST",
        default_value = "0.0.0.0"
    )]
    pub host: IpAddr,

    /// Port of the gateway.
    #[arg(
        id = "hash-port",
        long = "hash-port",
        value_name = "PORT",
        env = "SERVICE_1_PORT",
        default_value_t = 3001
    )]
    pub port: u16,

    /// Consumer group of the gateways on the reply topic (it gives each replica its partitions).
    #[arg(
        id = "hash-gateway-group",
        long = "hash-gateway-group",
        value_name = "GROUP",
        env = "SERVICE_1_GROUP_ID",
        default_value = "service_1"
    )]
    pub gateway_group: String,

    /// Consumer group of the processors on the request topic.
    #[arg(
        id = "hash-processor-group",
        long = "hash-processor-group",
        value_name = "GROUP",
        env = "SERVICE_2_GROUP_ID",
        default_value = "service_2"
    )]
    pub processor_group: String,

    /// Partitions of both topics when Kafkube creates them. The reply topic's count is the most
    /// gateway replicas that can run; the request topic's, the most processors that get work.
    #[arg(
        id = "hash-partitions",
        long = "hash-partitions",
        value_name = "N",
        env = "HASH_PARTITIONS",
        default_value_t = 12
    )]
    pub partitions: i32,

    /// Largest request batch a processor handles at once.
    #[arg(
        id = "hash-batch",
        long = "hash-batch",
        value_name = "N",
        env = "HASH_BATCH",
        default_value_t = 500
    )]
    pub batch: usize,
}

impl HashArgs {
    /// Defaults, as if no flag were given (tests start from this).
    pub fn defaults() -> Self {
        kafkube_core::args::defaults()
    }
}
