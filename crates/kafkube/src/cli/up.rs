//! `kafkube up`: everything in one process, on one laptop.
//!
//! Starts the embedded broker when no `KAFKA_BROKERS` is given, creates the topics, runs every
//! service, and on Ctrl-C drains in order: stop HTTP intake, publish what the outboxes still
//! hold, let the consumers catch up, then stop the broker. A second Ctrl-C stops at once.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kafkube_aggregator::{AggregatorArgs, AggregatorService};
use kafkube_bus::{EmbeddedBroker, KafkaArgs, KafkaConfig, ensure_topics};
use kafkube_core::Shutdown;
use kafkube_hash::{GatewayService, HashArgs, HashProcessor};
use kafkube_store::DbArgs;
use kafkube_students::{ApiService, EventLogger, StudentsArgs};
use tokio::task::JoinHandle;

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub students: StudentsArgs,

    #[command(flatten)]
    pub aggregator: AggregatorArgs,

    #[command(flatten)]
    pub hash: HashArgs,

    /// How long Ctrl-C waits for consumers to catch up before stopping anyway.
    #[arg(long, env = "KAFKUBE_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,
}

/// The stop signals of `up`, in the order they trip.
struct Stops {
    /// Ctrl-C: HTTP servers stop taking requests.
    intake: Shutdown,
    /// After intake has stopped and the outboxes are flushed: consumers stop once caught up.
    drain: Shutdown,
    /// Drain timeout or a second Ctrl-C: everything stops now.
    hard: Shutdown,
    failed: Arc<AtomicBool>,
}

impl Stops {
    /// Runs a service; if it ends before Ctrl-C (an error), everything is stopped.
    fn spawn<F>(&self, name: &'static str, service: F) -> (&'static str, JoinHandle<anyhow::Result<()>>)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (intake, failed) = (self.intake.clone(), self.failed.clone());
        let task = tokio::spawn(async move {
            let r = service.await;
            if !intake.is_triggered() {
                eprintln!("{name} stopped unexpectedly; shutting down");
                failed.store(true, Ordering::SeqCst);
                intake.trigger();
            }
            r
        });
        (name, task)
    }
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
    let mut topics = kafkube_students::topics(&args.students);
    topics.extend(kafkube_aggregator::topics(&args.aggregator));
    topics.extend(kafkube_hash::topics(&args.hash));
    ensure_topics(&kafka, &topics).await?;

    let stops = Stops {
        intake: Shutdown::new(),
        drain: Shutdown::new(),
        hard: Shutdown::new(),
        failed: Arc::default(),
    };
    stops.intake.trigger_on_signals();

    let students = ApiService::build(&args.students, &args.db, &kafka, &stops.intake)
        .await
        .with_context(|| {
            format!(
                "students API (port {}; change it with --students-port / STUDENTS_PORT)",
                args.students.port
            )
        })?;
    let logger = EventLogger::build(&args.students, &args.db, &kafka, &stops.intake).await?;
    let aggregator = AggregatorService::build(&args.aggregator, &args.db, &kafka, &stops.intake)
        .await
        .with_context(|| {
            format!(
                "log aggregator (port {}; change it with --aggregator-port / AGGREGATOR_PORT)",
                args.aggregator.port
            )
        })?;
    let hash_gateway = GatewayService::build(&args.hash, &kafka).await.with_context(|| {
        format!(
            "hash gateway (port {}; change it with --hash-port / SERVICE_1_PORT)",
            args.hash.port
        )
    })?;
    let hash_processor = HashProcessor::build(&args.hash, &kafka)?;

    match &embedded {
        Some(_) => println!(
            "kafkube is up. Embedded Kafka broker on {brokers} (in memory: drained on Ctrl-C, nothing is kept after exit)."
        ),
        None => println!("kafkube is up. Kafka: {brokers}."),
    }
    println!("  students API   {}/api/mahasiswa", base_url(students.local_addr()));
    println!(
        "  event logger   group {} on {} → {}",
        args.students.logger_group, args.students.topic, args.students.db.log_database_url
    );
    println!(
        "  log aggregator {}/publish (and Kafka topics {})",
        base_url(aggregator.local_addr()),
        args.aggregator.kafka_topics.join(",")
    );
    println!(
        "  hash gateway   {}/hash (over {} → group {} → {})",
        base_url(hash_gateway.local_addr()),
        args.hash.request_topic,
        args.hash.processor_group,
        args.hash.response_topic
    );
    println!("Press Ctrl-C to drain and stop.");

    // Intake services stop on Ctrl-C (their outboxes flush as they stop); consumers then drain.
    let intake_tasks = [
        stops.spawn("students API", students.run(stops.intake.clone())),
        stops.spawn("hash gateway", hash_gateway.run(stops.intake.clone())),
    ];
    let drain_tasks = [
        stops.spawn(
            "event logger",
            logger.run(stops.hard.clone(), Some(stops.drain.clone())),
        ),
        stops.spawn(
            "log aggregator",
            aggregator.run(stops.intake.clone(), stops.hard.clone(), Some(stops.drain.clone())),
        ),
        stops.spawn(
            "hash processor",
            hash_processor.run(stops.hard.clone(), Some(stops.drain.clone())),
        ),
    ];

    stops.intake.cancelled().await;
    // A second Ctrl-C skips the drain.
    let force = stops.hard.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("second Ctrl-C: stopping without draining");
            force.trigger();
        }
    });
    let mut ok = !stops.failed.load(Ordering::SeqCst);
    for (name, task) in intake_tasks {
        ok &= report(name, task.await);
    }
    stops.drain.trigger();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    for (name, mut task) in drain_tasks {
        let result = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("{name} did not catch up within {}s; stopping", args.drain_timeout_secs);
                stops.hard.trigger();
                task.await
            }
        };
        ok &= report(name, result);
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
