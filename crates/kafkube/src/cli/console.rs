//! The console: one web page, its files built into the binary, that shows what `kafkube status`
//! shows and keeps it live (Server-Sent Events every second), with the dead letters of each topic
//! and buttons to replay them. One task gathers the status for every open page, and only while a
//! page is open, through one Kafka client kept for the process. `kafkube up` serves it at `/console` on its ops port; `kafkube console`
//! serves it on its own against any cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use futures::Stream;
use kafkube_bus::dlq::{self, Position, READ_TIMEOUT, Selection};
use kafkube_bus::{KafkaArgs, KafkaConfig, Producer, TopicReader};
use kafkube_http::error_response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::{instance, status};

const INDEX_HTML: &str = include_str!("../../assets/console/index.html");
const APP_JS: &str = include_str!("../../assets/console/console.js");
const STYLE_CSS: &str = include_str!("../../assets/console/console.css");

/// How often the open pages are sent a fresh status.
const EVERY: Duration = Duration::from_secs(1);

/// One status, as the pages are sent it: a `status` event's JSON, or a `failure` event's reason.
#[derive(Debug)]
enum Snapshot {
    Status(String),
    Failure(String),
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    kafka: KafkaConfig,
    topics: TopicReader,
    /// The services' ops URLs; `up` sets its own once it listens.
    urls: Arc<OnceLock<Vec<String>>>,
    http: reqwest::Client,
    producer: Producer,
    /// The latest status, for every open page (the gathering task starts with the first page).
    feed: Arc<OnceLock<watch::Sender<Option<Arc<Snapshot>>>>>,
    /// The gathering task, stopped by [`Console::close`].
    gathering: Arc<OnceLock<tokio::task::AbortHandle>>,
}

impl Console {
    pub fn new(kafka: KafkaConfig) -> anyhow::Result<Self> {
        Ok(Self {
            producer: Producer::new(&kafka)?,
            topics: TopicReader::new(&kafka)?,
            kafka,
            urls: Arc::new(OnceLock::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?,
            feed: Arc::new(OnceLock::new()),
            gathering: Arc::new(OnceLock::new()),
        })
    }

    /// The feed of statuses. Its task gathers one every [`EVERY`] while at least one page
    /// listens, and nothing while none does.
    fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.feed
            .get_or_init(|| {
                let (tx, _) = watch::channel(None);
                let (console, feed) = (self.clone(), tx.clone());
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(EVERY);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    // The previous status, for the rates.
                    let mut earlier: Option<(std::time::Instant, status::Status)> = None;
                    loop {
                        tick.tick().await;
                        if feed.receiver_count() == 0 {
                            earlier = None;
                            continue;
                        }
                        let snapshot = match console.status().await {
                            Ok(mut s) => {
                                if let Some((at, before)) = &earlier {
                                    s.rates_since(before, at.elapsed().as_secs_f64());
                                }
                                let json = serde_json::to_string(&s).unwrap_or_default();
                                earlier = Some((std::time::Instant::now(), s));
                                Snapshot::Status(json)
                            }
                            Err(e) => Snapshot::Failure(format!("{e:#}")),
                        };
                        feed.send_replace(Some(Arc::new(snapshot)));
                    }
                });
                let _ = self.gathering.set(task.abort_handle());
                tx
            })
            .subscribe()
    }

    /// Stops gathering; the console's Kafka clients go with the last clone (`up` drops it before
    /// its embedded broker, so that no client reports the broker gone).
    pub fn close(self) {
        if let Some(task) = self.gathering.get() {
            task.abort();
        }
    }

    /// The URLs whose `/ready` and `/metrics` the console reads (set once).
    pub fn watch(&self, urls: Vec<String>) {
        let _ = self.urls.set(urls);
    }

    async fn status(&self) -> anyhow::Result<status::Status> {
        let urls = self.urls.get().cloned().unwrap_or_default();
        status::gather(&self.topics, &urls, &self.http).await
    }
}

/// The console's routes, all under `/console`.
pub fn router(console: Console) -> Router {
    let file = |mime: &'static str, body: &'static str| {
        get(move || async move {
            (
                [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")],
                body,
            )
        })
    };
    Router::new()
        .route("/console", file("text/html; charset=utf-8", INDEX_HTML))
        .route("/console/console.js", file("text/javascript; charset=utf-8", APP_JS))
        .route("/console/console.css", file("text/css; charset=utf-8", STYLE_CSS))
        .route("/console/api/status", get(current))
        .route("/console/api/events", get(events))
        .route("/console/api/dlq/{topic}", get(letters))
        .route("/console/api/dlq/{topic}/replay", post(replay))
        .with_state(console)
}

async fn current(State(c): State<Console>) -> Response {
    match c.status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

/// The feed's statuses as `status` events (or `failure` events with the reason): the latest at
/// once, then each new one.
async fn events(State(c): State<Console>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((c.subscribe(), true), |(mut feed, first)| async move {
        // The latest at once (if one was gathered already), then each new one as it comes.
        if !first || feed.borrow().is_none() {
            feed.changed().await.ok()?;
        }
        let snapshot = feed.borrow_and_update().clone()?;
        let event = match &*snapshot {
            Snapshot::Status(json) => Event::default().event("status").data(json),
            Snapshot::Failure(why) => Event::default().event("failure").data(why),
        };
        Some((Ok(event), (feed, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn letters(State(c): State<Console>, Path(topic): Path<String>) -> Response {
    let dlq = dlq::dlq_topic(&topic);
    let read = async {
        let letters = dlq::read(&c.kafka, &dlq, READ_TIMEOUT).await?;
        let replayed = dlq::replayed(&c.kafka, &dlq, READ_TIMEOUT).await?;
        anyhow::Ok(
            letters
                .iter()
                .map(|l| super::dlq::as_json(l, &dlq, &replayed))
                .collect::<Vec<_>>(),
        )
    };
    match read.await {
        Ok(list) => Json(json!({"topic": dlq, "letters": list})).into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(Deserialize)]
struct ReplayRequest {
    #[serde(default)]
    positions: Vec<String>,
    #[serde(default)]
    all: bool,
}

async fn replay(
    State(c): State<Console>,
    Path(topic): Path<String>,
    body: kafkube_http::Json<ReplayRequest>,
) -> Response {
    let body = body.0;
    let positions: Result<Vec<Position>, String> = body.positions.iter().map(|p| p.parse()).collect();
    let selection = match (body.all, positions) {
        (true, _) => Selection::All,
        (false, Ok(p)) if !p.is_empty() => Selection::Only(p),
        (false, Ok(_)) => return error_response(StatusCode::BAD_REQUEST, "name the letters (positions) or all"),
        (false, Err(e)) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let dlq = dlq::dlq_topic(&topic);
    match dlq::replay(&c.kafka, &c.producer, &dlq, &selection, false, READ_TIMEOUT).await {
        Ok(r) => Json(json!({
            "replayed": r.replayed.iter().map(|(p, t)| json!({"position": p.to_string(), "topic": t})).collect::<Vec<_>>(),
            "already": r.already.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "missing": r.missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// Port of the console.
    #[arg(long, env = "KAFKUBE_CONSOLE_PORT", default_value_t = 9100)]
    port: u16,

    /// Base URLs of the services' ops endpoints (`/ready`, `/metrics`), comma-separated.
    /// Default: the `kafkube up` running in this directory.
    #[arg(long = "url", env = "KAFKUBE_STATUS_URLS", value_delimiter = ',', value_name = "URL")]
    urls: Vec<String>,

    /// The cluster: KAFKA_BROKERS and its security options; default: the `kafkube up` running
    /// in this directory.
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// `kafkube console`: the console on a port of its own, until Ctrl-C.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let (cluster, urls) = instance::watched(&args.kafka, &args.urls)?;
    let console = Console::new(cluster.config.clone())?;
    console.watch(urls);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], args.port)))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on port {} for the console ({e}): give --port", args.port))?;
    println!(
        "Console on http://localhost:{}/console (Kafka {}). Ctrl-C stops it.",
        listener.local_addr()?.port(),
        cluster.bootstrap_servers()
    );
    axum::serve(listener, router(console))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
