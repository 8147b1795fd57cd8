//! The deployment files (`compose.yaml`, `deploy/k8s/`) checked against the command line: every
//! container runs a `kafkube` command that exists, and every variable they set is one that the
//! service reads. (Their schemas are checked by `scripts/check-deploy`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

/// Read by the process itself rather than by an option.
const PROCESS_VARIABLES: &[&str] = &["RUST_LOG", "RUST_BACKTRACE"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The variables `kafkube <args>` reads, or why `args` is not a service command.
fn variables_of(args: &[String]) -> Result<BTreeSet<String>, String> {
    let mut root = super::command();
    root.build();
    let mut vars: BTreeSet<String> = PROCESS_VARIABLES.iter().map(|s| s.to_string()).collect();
    let mut current = &root;
    let mut words = args.iter().filter(|a| !a.starts_with('-'));
    loop {
        vars.extend(
            current
                .get_arguments()
                .filter_map(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned()),
        );
        if !current.has_subcommands() {
            return Ok(vars);
        }
        let Some(word) = words.next() else {
            return Err(format!("`kafkube {}` names no service", args.join(" ")));
        };
        current = current
            .find_subcommand(word)
            .ok_or_else(|| format!("`kafkube {}`: no command `{word}`", args.join(" ")))?;
    }
}

#[test]
fn compose_services_run_real_commands_with_variables_they_read() {
    let path = repo().join("compose.yaml");
    let compose = yaml_documents(&path).pop().expect("one document");
    let services = compose["services"].as_mapping().expect("services");
    let mut ours = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        let image = svc["image"].as_str().unwrap_or_default();
        if !image.starts_with("kafkube") {
            continue;
        }
        ours += 1;
        let args = strings(&svc["command"]);
        let reads = variables_of(&args).unwrap_or_else(|e| panic!("compose.yaml `{name}`: {e}"));
        let env = svc["environment"].as_mapping().expect("environment as a mapping");
        for key in env.keys().filter_map(Value::as_str) {
            assert!(
                reads.contains(key),
                "compose.yaml `{name}` sets {key}, which `kafkube {}` does not read",
                args.join(" ")
            );
        }
    }
    assert_eq!(ours, 11, "every service of `kafkube serve` has a container");
}

#[test]
fn kubernetes_deployments_run_real_commands_and_their_config_is_read() {
    let dir = repo().join("deploy/k8s");
    let mut shared: BTreeMap<String, String> = BTreeMap::new(); // variable → where it is set
    let mut read_by_some: BTreeSet<String> = BTreeSet::new();
    let mut deployments = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        for doc in yaml_documents(path) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            match kind {
                "ConfigMap" => {
                    for k in doc["data"].as_mapping().into_iter().flat_map(|m| m.keys()) {
                        shared.insert(k.as_str().unwrap_or_default().to_owned(), format!("ConfigMap {name}"));
                    }
                }
                "Secret" => {
                    for k in doc["stringData"].as_mapping().into_iter().flat_map(|m| m.keys()) {
                        shared.insert(k.as_str().unwrap_or_default().to_owned(), format!("Secret {name}"));
                    }
                }
                "Deployment" => {
                    deployments += 1;
                    for c in doc["spec"]["template"]["spec"]["containers"].as_sequence().unwrap() {
                        let args = strings(&c["args"]);
                        let reads = variables_of(&args)
                            .unwrap_or_else(|e| panic!("{}: Deployment {name}: {e}", path.display()));
                        for e in c["env"].as_sequence().into_iter().flatten() {
                            let key = e["name"].as_str().unwrap_or_default();
                            assert!(
                                reads.contains(key),
                                "Deployment {name} sets {key}, which it does not read"
                            );
                        }
                        read_by_some.extend(reads);
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(deployments, 11, "every service of `kafkube serve` has a Deployment");
    for (key, origin) in &shared {
        assert!(
            read_by_some.contains(key),
            "{origin} sets {key}, which no Deployment's service reads"
        );
    }
}

/// The Helm chart has one entry per service of `kafkube serve`, no more, no less (the rendered
/// manifests are checked against the chart by `scripts/render-k8s --check`).
#[test]
fn the_chart_deploys_every_service() {
    let values = yaml_documents(&repo().join("deploy/helm/kafkube/values.yaml"))
        .pop()
        .expect("one document");
    let chart: BTreeSet<String> = values["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let served: BTreeSet<String> = crate::apps::APPS
        .iter()
        .flat_map(|a| a.service_infos())
        .map(|i| i.name.to_owned())
        .collect();
    assert_eq!(chart, served);
}

/// compose.yaml's Prometheus (deploy/prometheus/prometheus.yml) scrapes every Kafkube container
/// on the port its /metrics is on: the API's own port, or 9090 (OPS_PORT's default) for the
/// consumers; and nothing else.
#[test]
fn compose_prometheus_scrapes_every_service_on_its_metrics_port() {
    let compose = yaml_documents(&repo().join("compose.yaml"))
        .pop()
        .expect("one document");
    let mut expected = BTreeSet::new();
    for (name, svc) in compose["services"].as_mapping().expect("services") {
        if !svc["image"].as_str().unwrap_or_default().starts_with("kafkube") {
            continue;
        }
        let port = match svc["ports"].as_sequence().and_then(|p| p.first()) {
            Some(mapping) => mapping.as_str().and_then(|m| m.rsplit(':').next()).unwrap().to_owned(),
            None => "9090".to_owned(),
        };
        expected.insert(format!("{}:{port}", name.as_str().unwrap()));
    }
    let config = yaml_documents(&repo().join("deploy/prometheus/prometheus.yml"))
        .pop()
        .expect("one document");
    let mut scraped = BTreeSet::new();
    for job in config["scrape_configs"].as_sequence().expect("scrape_configs") {
        assert_eq!(
            job["job_name"].as_str(),
            Some("kafkube"),
            "alerts.yml selects job=\"kafkube\""
        );
        for sd in job["dns_sd_configs"].as_sequence().expect("dns_sd_configs") {
            let port = sd["port"].as_u64().expect("port");
            for name in strings(&sd["names"]) {
                scraped.insert(format!("{name}:{port}"));
            }
        }
    }
    assert_eq!(scraped, expected);
    let mounts = strings(&compose["services"]["prometheus"]["volumes"]);
    assert!(
        mounts.iter().any(|v| v.starts_with("./deploy/prometheus:")),
        "{mounts:?}"
    );
}
