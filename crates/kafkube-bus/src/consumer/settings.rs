//! [`ConsumerSettings`]: which group, which topics, how to batch.

/// Which group, which topics, and how to batch.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    /// Largest batch handed to the handler; batches are whatever is ready, up to this size.
    pub max_batch: usize,
    /// Attempts of a permanently failing batch before it is split / dead-lettered.
    pub max_attempts: u32,
    /// Instance name, for logs and metrics (defaults to host and pid).
    pub instance: String,
}

impl ConsumerSettings {
    pub fn new(group_id: impl Into<String>, topics: &[&str]) -> Self {
        Self {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            max_batch: 500,
            max_attempts: 3,
            instance: default_instance_name(),
        }
    }

    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }
}

/// `host-pid`, unique per process on a machine and per pod in Kubernetes.
pub fn default_instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "local".into());
    format!("{host}-{}", std::process::id())
}
