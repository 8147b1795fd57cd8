//! The source server restarted under the CDC. A test binary of its own: the restart drops every
//! connection to the server, which the other CDC tests' own statements would not survive.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kafkube_store::sqlx;
use kafkube_testkit::TestKafka;

mod common;
use common::{distinct_rows, exec, orders_under_cdc};

/// MariaDB restarted mid-stream (stopped, every connection dropped, back with a new binlog
/// file): the CDC reconnects, resumes from its stored position, follows the stream into the new
/// file, and every change arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_resumes_after_the_source_server_restarts_and_loses_nothing() {
    kafkube_testkit::show_logs();
    if !kafkube_testkit::mysql_is_private() {
        eprintln!("skipped: restarts the private MariaDB of scripts/mariadb, and KAFKUBE_TEST_MYSQL_URL is another");
        return;
    }
    let kafka = TestKafka::start();
    let topic = kafka.topic("cdc", 2).await;
    let (my, _state, cdc) = orders_under_cdc(&kafka, &topic).await;
    let file = || async {
        use sqlx::Row;
        let row = sqlx::query("SHOW MASTER STATUS").fetch_one(&my.pool).await.unwrap();
        row.get::<String, _>(0)
    };
    for i in 0..150 {
        exec(&my, &format!("INSERT INTO orders VALUES ({i}, 'O-{i}')")).await;
    }
    let before = file().await;
    let restart = tokio::task::spawn_blocking(kafkube_testkit::restart_mysql);
    restart.await.unwrap();
    for i in 150..300 {
        exec(&my, &format!("INSERT INTO orders VALUES ({i}, 'O-{i}')")).await;
    }
    assert_ne!(file().await, before, "the restart began a new binlog file");

    let ids = distinct_rows(&kafka, &topic, 300, Duration::from_secs(120)).await;
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>(),
        "every change arrives (duplicates allowed)"
    );
    cdc.stop().await;
}
