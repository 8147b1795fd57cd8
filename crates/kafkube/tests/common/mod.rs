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

/// Starts `kafkube up` on free ports in `dir` and returns it with the banner's lines, read up to
/// "Press Ctrl-C" (the banner is printed once every service is ready), and the lines after it.
pub fn up_in(dir: &std::path::Path) -> (Guard, Vec<String>, Receiver<String>) {
    up_in_with(dir, &[])
}

/// [`up_in`] with more environment variables. The lines, banner included, are stdout's and
/// stderr's as they come.
pub fn up_in_with(dir: &std::path::Path, envs: &[(&str, &str)]) -> (Guard, Vec<String>, Receiver<String>) {
    let (guard, rx) = spawn_reading(
        kafkube()
            .envs(envs.iter().copied())
            .args([
                "up",
                "--students-port",
                "0",
                "--aggregator-port",
                "0",
                "--hash-port",
                "0",
                "--restaurants-port",
                "0",
            ])
            .current_dir(dir),
    );
    let mut banner = Vec::new();
    // Until both pipes close, that is until `up` exits.
    while let Ok(line) = rx.recv() {
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            return (guard, banner, rx);
        }
    }
    panic!("`up` exited before it was up: {banner:#?}");
}

/// The URL a banner line gives for `service`, on 127.0.0.1.
pub fn banner_url(banner: &[String], service: &str) -> String {
    let line = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(service))
        .unwrap_or_else(|| panic!("no {service} in {banner:?}"));
    line.split_whitespace()
        .next()
        .unwrap()
        .replace("localhost", "127.0.0.1")
}

/// Starts `kafkube broker` (the embedded broker alone) with `envs` in `dir`, and returns it with
/// its bootstrap address, once it has written it to its `--bootstrap-file`.
pub async fn broker_in(dir: &std::path::Path, envs: &[(&str, &str)]) -> (Guard, String) {
    let file = dir.join("bootstrap");
    let broker = Guard(
        kafkube()
            .current_dir(dir)
            .envs(envs.iter().copied())
            .args(["broker", "--bootstrap-file", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let bootstrap = kafkube_testkit::eventually(std::time::Duration::from_secs(30), || async {
        let s = std::fs::read_to_string(&file).ok()?;
        s.ends_with('\n').then(|| s.trim().to_owned())
    })
    .await
    .expect("the broker writes its bootstrap address");
    (broker, bootstrap)
}
