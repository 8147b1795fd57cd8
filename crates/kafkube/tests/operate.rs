//! Operating Kafkube from the command line as users do: `kafkube dlq list|show|replay` against a
//! cluster named in KAFKA_BROKERS (embedded, or the real Kafka of `KAFKUBE_TEST_KAFKA_BROKERS`),
//! and `kafkube dlq` and `kafkube status` beside a `kafkube up` with no option at all.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::{banner_url, kafkube, signal, up_in};
use fantoccini::Locator;
use kafkube_bus::{Header, KafkaConfig, Outgoing, Producer};
use kafkube_testkit::browser::{ChromeDriver, screenshot, wait_js};
use kafkube_testkit::{TestKafka, eventually};

fn run(cmd: &mut std::process::Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_and_replay_a_dead_letter_once() {
    let kafka = TestKafka::start();
    let topic = kafka.topic("dlqcli", 1).await;
    let producer = Producer::new(&kafka.config()).unwrap();
    let letter = Outgoing::new(format!("{topic}.dlq"), Some("k7"), r#"{"x":1}"#)
        .header("correlation-id", "c-7")
        .header(Header::ERROR, "no price for item 7")
        .header(Header::SOURCE_TOPIC, topic.as_str())
        .header(Header::SOURCE_PARTITION, "0")
        .header(Header::SOURCE_OFFSET, "5");
    producer.send(&letter).await.unwrap();
    let dlq = |args: &[&str]| run(kafkube().envs(kafka.client_env()).arg("dlq").args(args));

    let (out, list, err) = dlq(&["list", &topic]);
    assert!(out.status.success(), "{err}");
    assert!(
        list.contains(&format!("{topic}.dlq: 1 dead letter, 0 replayed")),
        "{list}"
    );
    assert!(
        list.contains(&format!("0:0       {topic} 0:5  no        k7   no price for item 7")),
        "{list}"
    );

    let (out, show, err) = dlq(&["show", &format!("{topic}.dlq"), "0:0"]);
    assert!(out.status.success(), "{err}");
    assert!(
        show.contains("\"x\": 1") && show.contains("correlation-id: c-7"),
        "{show}"
    );

    let (out, first, err) = dlq(&["replay", &topic, "--all"]);
    assert!(out.status.success(), "{err}");
    assert!(
        first.contains(&format!("replayed {topic}.dlq 0:0 to {topic}")),
        "{first}"
    );
    assert!(first.contains("1 replayed, 0 replayed before."), "{first}");
    let (out, second, _) = dlq(&["replay", &topic, "--all"]);
    assert!(out.status.success());
    assert!(second.contains("0 replayed, 1 replayed before."), "{second}");
    let back = kafka.read_exact(&topic, 1, Duration::from_secs(20)).await;
    assert_eq!(back.len(), 1, "replayed once");
    assert_eq!(back[0].payload, br#"{"x":1}"#);
    assert_eq!(back[0].header("correlation-id"), Some("c-7"));
    assert_eq!(back[0].header(Header::ERROR), None);

    let (_, list, _) = dlq(&["list", &topic]);
    assert!(list.contains("1 dead letter, 1 replayed"), "{list}");

    // `status` with only a cluster: its topics, with their dead letters and replays.
    let (out, table, err) = run(kafkube().envs(kafka.client_env()).arg("status"));
    assert!(out.status.success(), "{err}");
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{topic} ")))
        .unwrap_or_else(|| panic!("no row for {topic}: {table}"));
    assert!(row.trim_end().ends_with("1 (1 replayed)"), "{row}");

    // Wrong positions and missing selections are refused with what to do.
    let (out, _, err) = dlq(&["replay", &topic, "0:9"]);
    assert!(!out.status.success());
    assert!(
        err.contains("has no letter at 0:9") && err.contains("kafkube dlq list"),
        "{err}"
    );
    let (out, _, err) = dlq(&["replay", &topic]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--all"), "{err}");
    let (out, _, err) = dlq(&["show", &topic, "zero"]);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PARTITION:OFFSET"), "{err}");
    let (out, _, err) = dlq(&["list", "no-such-topic-here"]);
    assert!(!out.status.success());
    assert!(err.contains("no topic `no-such-topic-here.dlq`"), "{err}");
}

/// Beside a running `kafkube up`, no option is needed: after a few students and a poisoned record
/// on their topic, `status` and the console (in headless Chromium; a screenshot is kept in
/// target/test-artifacts) show the event logger's lag at 0 and one dead letter; the letter is
/// replayed from the console's button (it fails again: a new letter), and both count the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_up_dlq_and_status_need_no_option() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, err) = run(kafkube()
        .current_dir(dir.path())
        .args(["dlq", "list", "mahasiswa_events"]));
    assert!(!out.status.success());
    assert!(err.contains("set KAFKA_BROKERS") && err.contains("kafkube up"), "{err}");

    let (guard, banner, _rx) = up_in(dir.path());
    let students = banner_url(&banner, "students-api");
    let http = reqwest::Client::new();
    for i in 0..3 {
        let r = http
            .post(&students)
            .json(&serde_json::json!({"nim": format!("op{i}"), "nama": "Operator"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/kafkube-up.json")).unwrap()).unwrap();
    let bootstrap = file["kafka"].as_str().unwrap().to_owned();
    let producer = Producer::new(&KafkaConfig::new(bootstrap)).unwrap();
    producer
        .send(&Outgoing::new("mahasiswa_events", Some("9"), "this is not an event"))
        .await
        .unwrap();

    let dlq = |args: &[&str]| run(kafkube().current_dir(dir.path()).arg("dlq").args(args));
    let listed = eventually(Duration::from_secs(30), || {
        let (out, list, _) = dlq(&["list", "mahasiswa_events"]);
        async move { (out.status.success() && list.contains("1 dead letter")).then_some(list) }
    })
    .await
    .expect("the poisoned record is dead-lettered");
    assert!(listed.contains("mahasiswa_events"), "{listed}");

    let status = |args: &[&str]| run(kafkube().current_dir(dir.path()).arg("status").args(args));
    let table = eventually(Duration::from_secs(30), || {
        let (out, table, _) = status(&[]);
        let caught_up = table.contains("SERVICES: all ready")
            && table.contains("  total lag: 0")
            && table
                .lines()
                .any(|l| l.trim_start().starts_with("event-logger") && l.contains("mahasiswa_events"));
        async move { (out.status.success() && caught_up).then_some(table) }
    })
    .await;
    let table = table.unwrap_or_else(|| status(&[]).1);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("mahasiswa_events "))
        .unwrap_or_else(|| panic!("no topic row: {table}"));
    assert!(row.trim_end().ends_with(" 1"), "one dead letter: {row}\n{table}");
    let (out, json, err) = status(&["--json"]);
    assert!(out.status.success(), "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "event-logger/database")
    );
    let (out, table, _) = status(&["--url", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("SERVICES: NOT READY") && table.contains("cannot reach it"),
        "{table}"
    );

    // The console, in a real browser: the same lag and dead letter, then the replay by its button.
    let console = banner
        .iter()
        .find_map(|l| l.strip_prefix("Console: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no console in {banner:?}"))
        .replace("localhost", "127.0.0.1");
    let driver = ChromeDriver::start().await;
    let c = driver.session_sized(1280, 900).await;
    c.goto(&console).await.unwrap();
    wait_js(
        &c,
        "the console shows the event logger caught up, its records handled, the three POSTs and one dead letter",
        Duration::from_secs(30),
        "const t = (s) => document.querySelector(s)?.textContent.trim();
         return { lag: t('#groups tr[data-group=\"event-logger\"] .lag'),
                  dead: t('#topics tr[data-topic=\"mahasiswa_events\"] .dead'),
                  handled: t('#activity tr[data-group=\"event-logger\"] .handled'),
                  posts: t('#routes tr[data-route=\"POST /api/mahasiswa\"] .requests'),
                  rate: t('#activity tr[data-group=\"event-logger\"] .rate'),
                  ready: t('#summary') };",
        |v| {
            v["lag"] == "0"
                && v["dead"].as_str().is_some_and(|d| d.starts_with("1 "))
                && v["handled"] == "3"
                && v["posts"] == "3"
                && v["rate"].as_str().is_some_and(|r| r.parse::<f64>().is_ok())
        },
    )
    .await;
    screenshot(&c, "console").await;
    c.find(Locator::Css("#topics tr[data-topic=\"mahasiswa_events\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "the letter is listed",
        Duration::from_secs(30),
        "return document.querySelectorAll('#letters tr[data-position]').length;",
        |v| v == 1,
    )
    .await;
    c.find(Locator::Css("#letters tr[data-position=\"0:0\"] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = wait_js(
        &c,
        "the replay is confirmed",
        Duration::from_secs(30),
        "return document.querySelector('#letters-note').textContent;",
        |v| v.as_str().is_some_and(|t| t.starts_with("Replayed 1;")),
    )
    .await;
    assert!(note.as_str().unwrap().contains("0 replayed before"), "{note}");
    c.close().await.unwrap();
    let again = eventually(Duration::from_secs(30), || {
        let (_, list, _) = dlq(&["list", "mahasiswa_events"]);
        async move { list.contains("2 dead letters, 1 replayed").then_some(()) }
    })
    .await;
    assert!(again.is_some(), "the replayed record failed again and came back once");
    let counted = eventually(Duration::from_secs(10), || {
        let (_, table, _) = status(&[]);
        async move { table.contains("2 (1 replayed)").then_some(()) }
    })
    .await;
    assert!(counted.is_some(), "{}", status(&[]).1);

    signal(&guard.0, "-INT");
    let status = tokio::task::spawn_blocking(move || {
        let mut guard = guard;
        guard.0.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!dir.path().join("data/kafkube-up.json").exists(), "removed on exit");
}
