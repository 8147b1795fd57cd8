//! A real Prometheus against every Kafkube service, each its own `kafkube serve` process (as in a
//! deployment) on `kafkube broker`: it scrapes every service's `/metrics` on loopback, evaluates
//! `deploy/prometheus/alerts.yml`, and answers every query of the Grafana dashboard
//! (`deploy/grafana/kafkube.json`). `etl-cdc` reads the test MariaDB (`KAFKUBE_TEST_MYSQL_URL`,
//! which scripts/test starts).
//!
//! Prometheus is built from its Go module by `scripts/lib.sh ensure_prometheus` (into
//! target/tools/bin; `KAFKUBE_PROMETHEUS` names another binary). The test is `#[ignore]`d in the
//! broker legs, since it runs its own embedded broker whatever the leg: `scripts/test` runs it
//! once, in its `tools` leg. Without the binary it fails and says how to build it (it never skips).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{broker_in, free_port, kafkube, spawn_reading};
use kafkube_bus::{KafkaConfig, Outgoing, Producer};
use kafkube_testkit::eventually;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prometheus_binary() -> PathBuf {
    let bin = std::env::var_os("KAFKUBE_PROMETHEUS")
        .map_or_else(|| repo().join("target/tools/bin/prometheus"), PathBuf::from);
    assert!(
        bin.is_file(),
        "{} not found: this test runs a real Prometheus; build it with \
         `bash -c 'source scripts/lib.sh && ensure_prometheus'` (go install, a few minutes), \
         or run scripts/test, which does",
        bin.display()
    );
    bin
}

/// Every service of `kafkube serve`, with the options that put its HTTP endpoint on `port`.
fn services(port: impl Fn() -> u16) -> Vec<(&'static str, Vec<String>)> {
    let on = |flag: &str| vec![flag.to_owned(), port().to_string()];
    let mut cdc = on("--ops-port");
    cdc.extend(["--cdc-mysql-url".to_owned(), kafkube_testkit::mysql_url()]);
    let mut webhook = on("--ops-port");
    // Nothing is posted in this test; the service runs only with a URL.
    webhook.extend(["--webhook-url".to_owned(), "http://127.0.0.1:9/orders".to_owned()]);
    vec![
        ("students-api", on("--students-port")),
        ("event-logger", on("--ops-port")),
        ("aggregator", on("--aggregator-port")),
        ("hash-gateway", on("--hash-port")),
        ("hash-processor", on("--ops-port")),
        ("etl-cdc", cdc),
        ("etl-transform", on("--ops-port")),
        ("etl-sink", on("--ops-port")),
        ("etl-webhook", webhook),
        ("restaurants", on("--restaurants-port")),
        ("restaurant-payments", on("--ops-port")),
        ("restaurant-mailer", on("--ops-port")),
    ]
}

async fn api(http: &reqwest::Client, prometheus: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let r = http
        .get(format!("{prometheus}{path}"))
        .query(query)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
    body["data"].clone()
}

/// After a poisoned record, the dead-letter alert fires; every rule evaluates without error;
/// every service is scraped, with its readiness checks at 1; the dashboard's queries all parse,
/// and the ones on the services' core metrics return data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Prometheus binary: scripts/test runs it in its tools leg"]
async fn a_real_prometheus_scrapes_every_service_and_evaluates_the_alerts() {
    let bin = prometheus_binary();
    let dir = tempfile::tempdir().unwrap();
    let (_broker, bootstrap) = broker_in(dir.path(), &[]).await;

    let mut targets = Vec::new();
    let mut running = Vec::new();
    for (service, args) in services(free_port) {
        let port = args[1].clone();
        let (child, rx) = spawn_reading(
            kafkube()
                .current_dir(dir.path())
                .env("KAFKA_BROKERS", &bootstrap)
                .args(["serve", service])
                .args(&args),
        );
        targets.push((service.to_owned(), format!("http://127.0.0.1:{port}")));
        running.push((service, child, rx));
    }
    let http = reqwest::Client::new();
    for (service, url) in &targets {
        let ready = eventually(Duration::from_secs(60), || {
            let r = http.get(format!("{url}/ready")).send();
            async move { r.await.ok().filter(|r| r.status() == 200) }
        })
        .await;
        if ready.is_none() {
            let (_, _, rx) = running.iter().find(|(s, _, _)| s == service).unwrap();
            let log: Vec<String> = rx.try_iter().collect();
            panic!("{service} is not ready at {url}/ready in 60 s: {log:#?}");
        }
    }

    let statics: Vec<Value> = targets
        .iter()
        .map(|(service, url)| {
            serde_json::json!({"targets": [url.trim_start_matches("http://")], "labels": {"service": service}})
        })
        .collect();
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [repo().join("deploy/prometheus/alerts.yml")],
        "scrape_configs": [{"job_name": "kafkube", "static_configs": statics}],
    });
    // JSON is YAML.
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let port = free_port();
    let (_prometheus, prom_rx) = spawn_reading(
        Command::new(&bin)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn"),
    );
    let prometheus = format!("http://127.0.0.1:{port}");

    // Every target scraped, and healthy.
    let scraped = eventually(Duration::from_secs(60), || {
        let (http, prometheus, n) = (http.clone(), prometheus.clone(), targets.len());
        async move {
            let r = http.get(format!("{prometheus}/api/v1/targets")).send().await.ok()?;
            let body: Value = r.json().await.ok()?;
            let active = body["data"]["activeTargets"].as_array()?;
            (active.len() == n && active.iter().all(|t| t["health"] == "up")).then_some(())
        }
    })
    .await;
    if scraped.is_none() {
        let log: Vec<String> = prom_rx.try_iter().collect();
        panic!("not every target is up in 60 s; prometheus said: {log:#?}");
    }

    // Each target reports its readiness checks, all passing.
    let ready = api(&http, &prometheus, "/api/v1/query", &[("query", "kafkube_ready")]).await;
    for (service, _) in &targets {
        let series: Vec<&Value> = ready["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["metric"]["service"] == service.as_str())
            .collect();
        assert!(!series.is_empty(), "no kafkube_ready of {service}: {ready}");
        assert!(series.iter().all(|s| s["value"][1] == "1"), "{service}: {series:#?}");
    }

    // A record the event logger cannot read: dead-lettered, and the alert fires.
    let producer = Producer::new(&KafkaConfig::new(bootstrap)).unwrap();
    producer
        .send(&Outgoing::new("mahasiswa_events", Some("7"), "not an event"))
        .await
        .unwrap();
    let firing = eventually(Duration::from_secs(60), || {
        let (http, prometheus) = (http.clone(), prometheus.clone());
        async move {
            let r = http.get(format!("{prometheus}/api/v1/alerts")).send().await.ok()?;
            let body: Value = r.json().await.ok()?;
            body["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "KafkubeDeadLetters" && a["state"] == "firing")
                .cloned()
        }
    })
    .await;
    let Some(firing) = firing else {
        let series = "kafkube_consumer_records_total{group=\"event-logger\"}";
        let samples = api(
            &http,
            &prometheus,
            "/api/v1/query",
            &[("query", &format!("{series}[2m]"))],
        )
        .await;
        let increase = format!("increase({series}[10m])");
        let increase = api(&http, &prometheus, "/api/v1/query", &[("query", &increase)]).await;
        let rules = api(&http, &prometheus, "/api/v1/rules", &[("type", "alert")]).await;
        panic!(
            "KafkubeDeadLetters does not fire after a dead letter; samples: {samples:#}; \
             increase: {increase:#}; rules: {rules:#}"
        );
    };
    assert_eq!(firing["labels"]["group"], "event-logger", "{firing}");
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("group event-logger dead-lettered records"),
        "{firing}"
    );

    // Every rule evaluated, without error; none but the dead letters' is active on healthy
    // services. An alert may be pending for a moment while the dead letter's offset is being
    // committed (its group's lag reads 1 until the next lag reading, and a counter's first
    // sample shows no rate): it must clear, and none may fire.
    let rules_now = || async {
        let rules = api(&http, &prometheus, "/api/v1/rules", &[]).await;
        let rules: Vec<Value> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().iter().cloned())
            .collect();
        assert!(rules.len() >= 8, "{rules:#?}");
        let mut active = Vec::new();
        for rule in &rules {
            assert_eq!(rule["health"], "ok", "{rule:#}");
            if rule["name"] == "KafkubeDeadLetters" {
                continue;
            }
            for alert in rule["alerts"].as_array().unwrap() {
                assert_ne!(
                    alert["state"], "firing",
                    "{} fires on a healthy `up`: {alert:#}",
                    rule["name"]
                );
                active.push((rule["name"].clone(), alert.clone()));
            }
        }
        active
    };
    let quiet = eventually(Duration::from_secs(30), || async {
        rules_now().await.is_empty().then_some(())
    })
    .await;
    if quiet.is_none() {
        panic!("alerts stay active on a healthy `up`: {:#?}", rules_now().await);
    }

    // The dashboard: every query is valid PromQL here; those on metrics every service has, answer.
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(repo().join("deploy/grafana/kafkube.json")).unwrap()).unwrap();
    let mut answered = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            let data = api(&http, &prometheus, "/api/v1/query", &[("query", &expr)]).await;
            if !data["result"].as_array().unwrap().is_empty() {
                answered.push(panel["title"].as_str().unwrap().to_owned());
            }
        }
    }
    for title in [
        "Targets up",
        "Readiness per check (1 ready, 0 failing)",
        "Lag by group and topic (records)",
        "Records handled per second",
        "Requests per second by status",
        "Outbox: events waiting",
    ] {
        assert!(
            answered.iter().any(|a| a == title),
            "the panel {title:?} shows nothing: {answered:?}"
        );
    }
}
