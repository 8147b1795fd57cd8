//! `kafkube up`: everything in one process, on one laptop.
//!
//! Starts the embedded broker when no `KAFKA_BROKERS` is given, creates the topics, runs every
//! service, and on Ctrl-C drains in order: stop HTTP intake, publish what the outboxes still
//! hold, let the consumers catch up, then stop the broker. A second Ctrl-C stops at once.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kafkube_bus::{EmbeddedBroker, KafkaArgs, KafkaConfig, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_store::DbArgs;
use kafkube_students::{ApiService, EventLogger, StudentsArgs};

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub students: StudentsArgs,

    /// How long Ctrl-C waits for consumers to catch up before stopping anyway.
    #[arg(long, env = "KAFKUBE_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,
}

pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let embedded = match &args.kafka.brokers {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(1).context("cannot start the embedded broker")?),
    };
    let brokers = match (&args.kafka.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(e)) => e.bootstrap_servers().to_owned(),
        (None, None) => unreachable!("an embedded broker is started when no brokers are given"),
    };
    let kafka = KafkaConfig::from_args(&args.kafka, brokers.clone())?;
    ensure_topics(&kafka, &kafkube_students::topics(&args.students)).await?;

    let intake = Shutdown::new();
    intake.trigger_on_signals();
    let hard = Shutdown::new();
    let drain = Shutdown::new();

    let api = ApiService::build(&args.students, &args.db, &kafka, &intake)
        .await
        .with_context(|| {
            format!(
                "students API (port {}; change it with --students-port / STUDENTS_PORT)",
                args.students.port
            )
        })?;
    let logger = EventLogger::build(&args.students, &args.db, &kafka, &intake).await?;

    match &embedded {
        Some(_) => println!(
            "kafkube is up. Embedded Kafka broker on {brokers} (in memory: drained on Ctrl-C, nothing is kept after exit)."
        ),
        None => println!("kafkube is up. Kafka: {brokers}."),
    }
    println!("  students API   {}/api/mahasiswa", base_url(api.local_addr()));
    println!(
        "  event logger   group {} on {} → {}",
        args.students.logger_group, args.students.topic, args.students.db.log_database_url
    );
    println!("Press Ctrl-C to drain and stop.");

    let mut api_task = tokio::spawn(api.run(intake.clone()));
    let mut logger_task = tokio::spawn(logger.run(hard.clone(), Some(drain.clone())));
    let mut ok = true;

    // Run until Ctrl-C, or until a service stops on its own (an error): then stop the rest.
    let mut api_done = None;
    let mut logger_done = None;
    tokio::select! {
        () = intake.cancelled() => {}
        r = &mut api_task => api_done = Some(r),
        r = &mut logger_task => logger_done = Some(r),
    }
    if !intake.is_triggered() {
        eprintln!("a service stopped unexpectedly; shutting down");
        ok = false;
        intake.trigger();
    }
    // A second Ctrl-C skips the drain.
    let force = hard.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("second Ctrl-C: stopping without draining");
            force.trigger();
        }
    });
    let api_result = match api_done {
        Some(r) => r,
        None => api_task.await,
    };
    ok &= report("students API", api_result);
    drain.trigger();
    let timeout = Duration::from_secs(args.drain_timeout_secs);
    let logger_result = match logger_done {
        Some(r) => Some(r),
        None => tokio::time::timeout(timeout, &mut logger_task).await.ok(),
    };
    match logger_result {
        Some(r) => ok &= report("event logger", r),
        None => {
            eprintln!("event logger did not catch up within {}s; stopping", timeout.as_secs());
            hard.trigger();
            ok &= report("event logger", logger_task.await);
        }
    }
    drop(embedded);
    println!("kafkube stopped.");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints a service's failure; true when it ended cleanly.
fn report(name: &str, r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> bool {
    match r {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            eprintln!("{name}: {e:#}");
            false
        }
        Err(e) => {
            eprintln!("{name} crashed: {e}");
            false
        }
    }
}

/// `http://localhost:PORT` for a wildcard bind, the address itself otherwise.
fn base_url(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}
