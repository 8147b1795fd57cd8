//! Every HTTP app's `/openapi.json` checked against the app itself by schemathesis (PyPI): it
//! generates requests from the document, valid and invalid, and checks each answer — no server
//! error, and status code, content type, headers and body as the document says. On SQLite (what
//! `kafkube up` uses by default) and on PostgreSQL.
//!
//! `#[ignore]`d: it needs schemathesis, which `scripts/test` installs (target/tools) and runs
//! this with, once, in its own leg (`tools`), on the embedded broker. By hand:
//! `KAFKUBE_SCHEMATHESIS=/path/to/schemathesis cargo test -p kafkube --test openapi -- --ignored`.

mod common;

use std::process::Command;

use common::{banner_url, up_in_with};
use kafkube_store::Backend;
use kafkube_testkit::TestDb;

/// The apps with an HTTP API, by their name in `up`'s banner.
const APPS: [&str; 4] = ["students-api", "aggregator", "hash-gateway", "restaurants"];

/// What schemathesis checks on every answer. Not `negative_data_rejection` or
/// `positive_data_acceptance`: the apps accept what the seeds' clients send beyond the documents
/// (a numeric `nim`, unknown fields, zone-less timestamps), and refuse values the schema language
/// cannot express (a blank name, a card that fails Luhn).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis: scripts/test runs it in its `tools` leg"]
async fn every_api_answers_as_its_openapi_document_says() {
    let st = std::env::var("KAFKUBE_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let mut failed = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        // On PostgreSQL, one fresh database for every app (each migrates its own tables).
        let pg = match backend {
            Backend::Postgres => Some(TestDb::postgres().await),
            Backend::Sqlite => None,
        };
        let envs: Vec<(&str, &str)> = match &pg {
            Some(db) => [
                "DATABASE_URL",
                "LOG_DATABASE_URL",
                "AGGREGATOR_DATABASE_URL",
                "RESTAURANTS_DATABASE_URL",
                "PAYMENTS_DATABASE_URL",
                "MAILER_DATABASE_URL",
            ]
            .into_iter()
            .map(|k| (k, db.url.as_str()))
            .collect(),
            None => Vec::new(),
        };
        let (guard, banner, _rest) = up_in_with(dir.path(), &envs);
        // One schemathesis process per app, all at once, each with one worker: its threads share
        // one interpreter, and CPython 3.11's `ast` can fail under them ("AST constructor
        // recursion depth mismatch", seen once in CI), which is a crash of the tool, not a finding.
        let runs = APPS.iter().map(|app| {
            // The banner gives a route (`http://localhost:PORT/api/mahasiswa`): its origin.
            let url = banner_url(&banner, app);
            let host = url.strip_prefix("http://").unwrap().split('/').next().unwrap();
            let base = format!("http://{host}");
            let document = format!("{base}/openapi.json");
            let st = st.clone();
            tokio::task::spawn_blocking(move || {
                let out = Command::new(&st)
                    .args(["run", &document, "--url", &base, "--checks", CHECKS])
                    .args(["--max-examples", "60", "--workers", "1", "--no-color"])
                    .args(["--seed", "1"])
                    .env("SCHEMATHESIS_HOOKS", "")
                    .output();
                (app, document, out)
            })
        });
        for run in futures::future::join_all(runs).await {
            let (app, document, out) = run.unwrap();
            let out = out.unwrap_or_else(|e| {
                panic!(
                    "cannot run {st} ({e}): run the tests with scripts/test, which installs it, \
                     or `pip install schemathesis==4.32.5` and set KAFKUBE_SCHEMATHESIS"
                )
            });
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            println!("--- {app} on {backend:?}: {document}\n{text}");
            // "Test cases: 860 generated, 860 passed": a run that tried nothing proves nothing.
            let generated: u64 = text
                .rsplit_once(" generated, ")
                .and_then(|(before, _)| before.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .unwrap_or(0);
            if !out.status.success() || generated == 0 {
                failed.push(format!("{app} on {backend:?}"));
            }
        }
        drop(guard);
    }
    assert!(
        failed.is_empty(),
        "schemathesis found answers that break their documents, or ran no case: {failed:?} (its reports are above)"
    );
}
