//! What the process tests share: the `kafkube` binary with a clean environment, signals, and
//! a guard that kills a child the test leaves behind.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;

use kafkube_store::{Db, on_db};

pub fn kafkube() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafkube"));
    // The children log at warn, or as KAFKUBE_TEST_SERVICE_LOG says (a RUST_LOG filter).
    c.env(
        "RUST_LOG",
        std::env::var("KAFKUBE_TEST_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .env_remove("KAFKA_BROKERS")
    .env_remove("KAFKA_SECURITY_PROTOCOL")
    .env_remove("KAFKA_SASL_MECHANISM")
    .env_remove("KAFKA_SASL_USERNAME")
    .env_remove("KAFKA_SASL_PASSWORD")
    .env_remove("KAFKA_SSL_CA_LOCATION")
    .env_remove("DATABASE_URL")
    .env_remove("LOG_DATABASE_URL");
    c
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Kills the child on drop so a failing test leaves no process behind.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn scalar(db: &Db, sql: &str) -> i64 {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as(sql).fetch_one(p).await).unwrap();
    n
}

/// A TCP port that was free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `cmd` with its stdout and stderr read line by line into the returned channel.
pub fn spawn_reading(cmd: &mut Command) -> (Guard, Receiver<String>) {
    let mut child = Guard(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for out in [
        Box::new(child.0.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.0.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}
