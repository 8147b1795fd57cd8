//! The embedded broker: librdkafka's mock cluster, in memory, inside the Kafkube process.
//!
//! It speaks the real Kafka protocol on 127.0.0.1 (random ports), with consumer groups,
//! failover and the idempotent producer, so every client — ours, kcat, a Python script — talks to
//! it as to Kafka. It keeps nothing on disk: `kafkube up` drains it before exit.
//!
//! The mock cluster handle is not `Send`, so it lives on a thread of its own and is driven
//! through a channel.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;

use crate::{BusError, Result};

enum Command {
    CreateTopic(String, i32, mpsc::Sender<Result<()>>),
    SetReachable(bool, mpsc::Sender<Result<()>>),
    Stop,
}

/// A handle to the mock cluster's thread. Cloning shares it; the cluster stops when
/// [`EmbeddedBroker::stop`] is called or the last handle of the owner is dropped.
#[derive(Clone)]
pub struct EmbeddedBroker {
    bootstrap: String,
    brokers: i32,
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

/// Owns the broker thread: dropping it stops the broker.
#[derive(Debug)]
pub struct EmbeddedBrokerGuard {
    handle: EmbeddedBroker,
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for EmbeddedBrokerGuard {
    type Target = EmbeddedBroker;
    fn deref(&self) -> &EmbeddedBroker {
        &self.handle
    }
}

impl Drop for EmbeddedBrokerGuard {
    fn drop(&mut self) {
        let _ = self.handle.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl EmbeddedBroker {
    /// Starts a mock cluster of `brokers` brokers and returns once it listens.
    pub fn start(brokers: i32) -> Result<EmbeddedBrokerGuard> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let thread = std::thread::Builder::new()
            .name("kafkube-embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BusError::Embedded(e.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Command::CreateTopic(name, partitions, reply) => {
                            let r = match cluster.create_topic(&name, partitions, 1) {
                                Ok(()) => Ok(()),
                                // As documented: creating an existing topic is not an error.
                                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAlreadyExists) => {
                                    Ok(())
                                }
                                Err(e) => Err(BusError::Embedded(format!("create topic {name}: {e}"))),
                            };
                            let _ = reply.send(r);
                        }
                        Command::SetReachable(up, reply) => {
                            let r = (1..=brokers).try_for_each(|id| {
                                if up {
                                    cluster.broker_up(id)
                                } else {
                                    cluster.broker_down(id)
                                }
                            });
                            let _ = reply.send(r.map_err(|e| BusError::Embedded(e.to_string())));
                        }
                        Command::Stop => break,
                    }
                }
            })
            .map_err(|e| BusError::Embedded(format!("cannot start broker thread: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| BusError::Embedded("broker thread exited during start".into()))??;
        let handle = EmbeddedBroker { bootstrap, brokers, tx };
        Ok(EmbeddedBrokerGuard {
            handle,
            thread: Some(thread),
        })
    }

    /// The `bootstrap.servers` string clients connect to.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn broker_count(&self) -> i32 {
        self.brokers
    }

    /// Creates a topic (replication factor 1). Creating an existing topic is not an error.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.call(|reply| Command::CreateTopic(name.to_owned(), partitions, reply))
    }

    /// Takes every broker down (connections refused/closed) or brings them back: how tests
    /// simulate an unreachable broker.
    pub fn set_reachable(&self, up: bool) -> Result<()> {
        self.call(|reply| Command::SetReachable(up, reply))
    }

    fn call(&self, make: impl FnOnce(mpsc::Sender<Result<()>>) -> Command) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| BusError::Embedded("broker stopped".into()))?;
        rx.recv().map_err(|_| BusError::Embedded("broker stopped".into()))?
    }
}
