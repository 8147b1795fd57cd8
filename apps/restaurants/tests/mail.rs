//! The mailer against a real SMTP server (aiosmtpd): exactly one message per paid order,
//! addressed right, carrying the order id; an SMTP server that is down delays the mail and
//! loses none.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{DECLINED_CARD, GOOD_CARD, Stack};
use kafkube_testkit::{Backend, TestSmtp, eventually};
use secrecy::SecretString;

async fn with_smtp(smtp: &TestSmtp) -> Stack {
    let mut s = Stack::new(Backend::Sqlite).await;
    s.args.mailer.smtp_url = Some(SecretString::from(smtp.url()));
    s.start_api().await;
    s.start_payments().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_paid_order_gets_exactly_one_mail_over_smtp() {
    let smtp = TestSmtp::start();
    let mut s = with_smtp(&smtp).await;
    s.start_mailer().await;
    let mut paid = HashMap::new();
    let mut declined = Vec::new();
    for i in 0..12 {
        let email = format!("guest{i}@example.com");
        if i % 4 == 3 {
            declined.push(s.place(DECLINED_CARD, &email).await);
        } else {
            paid.insert(s.place(GOOD_CARD, &email).await, email);
        }
    }
    for id in paid.keys() {
        s.wait_for(id, "email_sent", Duration::from_secs(30)).await;
    }
    for id in &declined {
        s.wait_for(id, "rejected", Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        paid.len(),
        "one mail per paid order, none for a declined one"
    );
    let mut seen = HashMap::new();
    for m in &mails {
        let message_id = m.header("Message-ID").unwrap();
        let id = message_id
            .strip_prefix("<order-")
            .and_then(|x| x.strip_suffix("@restaurants.kafkube>"))
            .unwrap_or_else(|| panic!("unexpected Message-ID {message_id}"))
            .to_owned();
        let to = paid
            .get(&id)
            .unwrap_or_else(|| panic!("a mail for an unpaid order {id}"));
        assert_eq!(m.header("To").as_deref(), Some(to.as_str()));
        assert_eq!(m.header("X-RcptTo").as_deref(), Some(to.as_str()), "the envelope too");
        assert!(m.raw.contains(&id), "the body names the order");
        assert!(seen.insert(id, ()).is_none(), "two mails for one order");
    }
    assert!(s.eml_files().is_empty(), "SMTP configured: no files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_delays_mail_and_loses_none() {
    let mut smtp = TestSmtp::start();
    smtp.stop();
    let mut s = with_smtp(&smtp).await;
    // Not ready while its SMTP server is down, but running.
    let mailer = kafkube_testkit::spawn(kafkube_restaurants::Mailer, s.args.clone(), &s.kafka.config())
        .await
        .unwrap();
    s.mailer = Some(mailer);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.place(GOOD_CARD, &format!("late{i}@example.com")).await);
    }
    for id in &ids {
        s.wait_for(id, "confirmed", Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        assert_eq!(s.order(id).await["status"], "confirmed", "no mail while SMTP is down");
    }
    smtp.restart();
    for id in &ids {
        s.wait_for(id, "email_sent", Duration::from_secs(60)).await;
    }
    let delivered = eventually(Duration::from_secs(5), || async {
        (smtp.messages().len() == ids.len()).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "{} mails", smtp.messages().len());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.messages().len(), ids.len(), "and not one more");
}
