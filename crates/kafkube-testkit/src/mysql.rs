//! A MySQL/MariaDB database of a test: a fresh database on the server `scripts/test` starts
//! (`scripts/mariadb`), or on `KAFKUBE_TEST_MYSQL_URL`.

use kafkube_store::sqlx::{self, Executor, MySqlPool};

use crate::unique;

/// A fresh database on the test MySQL/MariaDB server, and a pool to it.
pub struct TestMySql {
    /// `mysql://USER:PASSWORD@HOST:PORT/DB` of this test's database.
    pub url: String,
    pub name: String,
    pub pool: MySqlPool,
}

impl TestMySql {
    pub async fn new() -> Self {
        let server = mysql_url();
        let admin = MySqlPool::connect(&server).await.unwrap_or_else(|e| {
            panic!(
                "MariaDB/MySQL is not reachable at {} ({e}). Run the tests with `scripts/test`, which \
                 starts one (scripts/mariadb start), or set KAFKUBE_TEST_MYSQL_URL.",
                kafkube_store::db::redact(&server)
            )
        });
        let name = unique("kt");
        admin
            .execute(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4").as_str())
            .await
            .expect("create test database");
        admin.close().await;
        let url = format!("{}/{name}", server.trim_end_matches('/'));
        let pool = MySqlPool::connect(&url).await.expect("connect to the test database");
        Self { url, name, pool }
    }

    /// A query's single value, e.g. `COUNT(*)`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The MySQL/MariaDB server tests use (no database in the path).
pub fn mysql_url() -> String {
    std::env::var("KAFKUBE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://kafkube:kafkube@127.0.0.1:23306".into())
}

/// Whether the test server is the private one `scripts/mariadb` runs (as `scripts/test` starts
/// it), which a test may restart; not a server of the user's own (`KAFKUBE_TEST_MYSQL_URL`).
pub fn mysql_is_private() -> bool {
    let ours = mariadb_script("url")
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == mysql_url());
    ours && mariadb_script("status").is_ok_and(|o| o.status.success())
}

/// Restarts the private test server (see [`mysql_is_private`]) the way an operator's restart
/// does: it stops, every connection drops, and it comes back writing a new binlog file.
pub fn restart_mysql() {
    assert!(
        mysql_is_private(),
        "the test server is not the private one scripts/mariadb runs"
    );
    let out = mariadb_script("restart").expect("run scripts/mariadb restart");
    assert!(
        out.status.success(),
        "scripts/mariadb restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mariadb_script(command: &str) -> std::io::Result<std::process::Output> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mariadb");
    std::process::Command::new("bash").arg(script).arg(command).output()
}
