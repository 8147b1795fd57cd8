//! A secured cluster (TLS + SASL): the right credentials connect; a wrong password or an
//! untrusted certificate is one clear error, fast, that never shows the password. Runs in the
//! test suite's SASL_SSL leg (`KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL=sasl_ssl`, see scripts/test);
//! elsewhere it says it was skipped.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kafkube_bus::{KafkaArgs, KafkaConfig, Probe, probe};
use kafkube_testkit::TestKafka;
use secrecy::SecretString;

/// The SASL_SSL listener's options (as the test suite gives them, through `TestKafka`) and the
/// path of a CA that signed nothing there; `None` (skipped) outside the SASL_SSL leg.
fn secured() -> Option<(KafkaArgs, String)> {
    let sasl_ssl =
        std::env::var("KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL").is_ok_and(|p| p.eq_ignore_ascii_case("sasl_ssl"));
    let (true, Ok(other_ca)) = (sasl_ssl, std::env::var("KAFKUBE_TEST_KAFKA_OTHER_CA")) else {
        eprintln!("skipped: needs the SASL_SSL leg (KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL=sasl_ssl)");
        return None;
    };
    Some((TestKafka::start().args(), other_ca))
}

fn config(args: &KafkaArgs) -> KafkaConfig {
    KafkaConfig::from_args(args, args.brokers.clone().unwrap()).unwrap()
}

#[tokio::test]
async fn the_right_credentials_connect() {
    let Some((args, _)) = secured() else {
        return;
    };
    match probe(&config(&args), Duration::from_secs(20)).await.unwrap() {
        Probe::Topics(_) => {}
        Probe::Unreachable(why) => panic!("could not connect with the right credentials: {why}"),
    }
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_error_without_the_password() {
    let Some((mut args, _)) = secured() else {
        return;
    };
    args.security.sasl_password = Some(SecretString::from("not-the-password-42".to_owned()));
    let started = Instant::now();
    let err = probe(&config(&args), Duration::from_secs(20))
        .await
        .expect_err("a wrong password must fail")
        .to_string();
    let took = started.elapsed();
    eprintln!("wrong password reported after {took:?}: {err}");
    assert!(err.contains("refused the SASL login of user"), "{err}");
    assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
    assert!(!err.contains("not-the-password-42"), "the password leaked: {err}");
    assert!(
        took < Duration::from_secs(20),
        "reported only when the wait ran out: {took:?}"
    );
}

#[tokio::test]
async fn an_untrusted_broker_certificate_is_one_clear_error() {
    let Some((mut args, other_ca)) = secured() else {
        return;
    };
    args.security.ca = Some(other_ca.into());
    let started = Instant::now();
    let err = probe(&config(&args), Duration::from_secs(20))
        .await
        .expect_err("a certificate from an untrusted CA must fail")
        .to_string();
    let took = started.elapsed();
    eprintln!("untrusted certificate reported after {took:?}: {err}");
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(err.contains("KAFKA_SSL_CA_LOCATION"), "{err}");
    assert!(
        took < Duration::from_secs(20),
        "reported only when the wait ran out: {took:?}"
    );
}
