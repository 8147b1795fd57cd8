//! A secured cluster (TLS + SASL): the right credentials connect; a wrong password or an
//! untrusted certificate is one clear error, fast, that never shows the password. Runs in the
//! test suite's SASL_SSL leg (`KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL=sasl_ssl`, see scripts/test);
//! elsewhere it says it was skipped.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kafkube_bus::{KafkaArgs, KafkaConfig, KafkaSecurityArgs, Probe, SaslMechanism, SecurityProtocol, probe};
use secrecy::SecretString;

/// The SASL_SSL listener's settings, or `None` (skipped) outside the SASL_SSL leg.
fn secured() -> Option<(String, KafkaSecurityArgs, String)> {
    let var = |n: &str| std::env::var(format!("KAFKUBE_TEST_KAFKA_{n}")).ok();
    if !var("SECURITY_PROTOCOL").is_some_and(|p| p.eq_ignore_ascii_case("sasl_ssl")) {
        eprintln!("skipped: needs the SASL_SSL leg (KAFKUBE_TEST_KAFKA_SECURITY_PROTOCOL=sasl_ssl)");
        return None;
    }
    let security = KafkaSecurityArgs {
        protocol: Some(SecurityProtocol::SaslSsl),
        sasl_mechanism: Some(SaslMechanism::ScramSha512),
        sasl_username: var("SASL_USERNAME"),
        sasl_password: var("SASL_PASSWORD").map(SecretString::from),
        ca: var("CA").map(Into::into),
        ..KafkaSecurityArgs::default()
    };
    Some((var("BROKERS").unwrap(), security, var("OTHER_CA").unwrap()))
}

fn config(brokers: &str, security: KafkaSecurityArgs) -> KafkaConfig {
    let args = KafkaArgs {
        brokers: Some(brokers.into()),
        timeout_secs: 10,
        session_timeout_ms: 6000,
        options: Vec::new(),
        security,
    };
    KafkaConfig::from_args(&args, brokers).unwrap()
}

#[tokio::test]
async fn the_right_credentials_connect() {
    let Some((brokers, security, _)) = secured() else {
        return;
    };
    match probe(&config(&brokers, security), Duration::from_secs(20))
        .await
        .unwrap()
    {
        Probe::Topics(_) => {}
        Probe::Unreachable(why) => panic!("could not connect with the right credentials: {why}"),
    }
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_error_without_the_password() {
    let Some((brokers, mut security, _)) = secured() else {
        return;
    };
    security.sasl_password = Some(SecretString::from("not-the-password-42".to_owned()));
    let started = Instant::now();
    let err = probe(&config(&brokers, security), Duration::from_secs(20))
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
    let Some((brokers, mut security, other_ca)) = secured() else {
        return;
    };
    security.ca = Some(other_ca.into());
    let started = Instant::now();
    let err = probe(&config(&brokers, security), Duration::from_secs(20))
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
