//! The `kafkube up` running in this directory. While it runs it keeps `data/kafkube-up.json`
//! (its Kafka bootstrap servers, its pid and the URL of its readiness), so that commands run
//! beside it, such as `kafkube dlq`, find it without options. The file is removed when `up` ends.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Where `up` describes itself, relative to its working directory.
pub const FILE: &str = "data/kafkube-up.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct Instance {
    /// Bootstrap servers of its Kafka (the embedded broker's address, or KAFKA_BROKERS).
    pub kafka: String,
    pub pid: u32,
    /// Every service's readiness, `http://…/ready`.
    pub ready: Option<String>,
}

/// The file, removed on drop.
#[derive(Debug)]
pub struct Written(PathBuf);

impl Drop for Written {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes [`FILE`] for `instance`; it is removed when the returned value is dropped.
pub fn write(instance: &Instance) -> anyhow::Result<Written> {
    let path = Path::new(FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(instance)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Written(path.to_owned()))
}

/// The Kafka of the `kafkube up` running in this directory, or an error that says what to do.
pub fn running_kafka() -> anyhow::Result<String> {
    Ok(running()?.kafka)
}

/// The `kafkube up` running in this directory, or an error that says what to do.
pub fn running() -> anyhow::Result<Instance> {
    let text = match std::fs::read(FILE) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no Kafka given: set KAFKA_BROKERS (or --kafka-brokers), or run this in the directory of \
             a running `kafkube up` ({FILE} is not there)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {FILE}")),
    };
    let instance: Instance = serde_json::from_slice(&text).with_context(|| format!("{FILE} is not readable"))?;
    if cfg!(target_os = "linux") && !Path::new(&format!("/proc/{}", instance.pid)).exists() {
        anyhow::bail!(
            "{FILE} names a `kafkube up` (pid {}) that is no longer running: start it again, or set \
             KAFKA_BROKERS",
            instance.pid
        );
    }
    Ok(instance)
}

/// The cluster and the services' ops URLs a command run beside `up` watches: those given, and
/// for those not given, the `kafkube up` running in this directory's (an error says what to do
/// when there is no Kafka either way).
pub fn watched(kafka: &kafkube_bus::KafkaArgs, urls: &[String]) -> anyhow::Result<(kafkube_bus::Cluster, Vec<String>)> {
    let up = if kafka.brokers.is_none() {
        Some(running()?) // no Kafka either way: its error says what to do
    } else if urls.is_empty() {
        running().ok()
    } else {
        None
    };
    let mut kafka = kafka.clone();
    if let (None, Some(up)) = (&kafka.brokers, &up) {
        kafka.brokers = Some(up.kafka.clone());
    }
    let urls = if urls.is_empty() {
        up.and_then(|u| u.ready)
            .map(|r| vec![r.trim_end_matches("/ready").to_owned()])
            .unwrap_or_default()
    } else {
        urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect()
    };
    Ok((kafkube_bus::Cluster::resolve(&kafka, false)?, urls))
}
