//! The databases of a test: a temporary SQLite file or a fresh PostgreSQL database.

use kafkube_store::{Backend, Db, DbArgs};

use crate::unique;

/// A database of a test: a temporary SQLite file or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: String,
    pub db: Db,
    /// The PostgreSQL database's name (`None` for SQLite).
    pub pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("test.db").display());
        let db = Db::connect(&url, &DbArgs::default()).await.expect("open SQLite");
        Self {
            url,
            db,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let admin_url = postgres_url();
        let admin = Db::connect(&admin_url, &DbArgs::default()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin_url} ({e}). Run the tests with `scripts/test`, \
                 which starts one, or set KAFKUBE_TEST_POSTGRES_URL."
            )
        });
        let name = unique("kt");
        let Db::Postgres(pool) = &admin else {
            panic!("KAFKUBE_TEST_POSTGRES_URL must be postgres://")
        };
        kafkube_store::sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(pool)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let db = Db::connect(&url, &DbArgs::default())
            .await
            .expect("connect to test database");
        Self {
            url,
            db,
            pg_name: Some(name),
            _dir: None,
        }
    }

    /// PostgreSQL only: refuses new connections to this database and cuts the open ones (`false`),
    /// or lets them in again (`true`) — a database outage as clients see it.
    pub async fn set_reachable(&self, up: bool) {
        let name = self.pg_name.as_deref().expect("outages are simulated on PostgreSQL");
        let admin = Db::connect(&postgres_url(), &DbArgs::default())
            .await
            .expect("admin connection");
        let Db::Postgres(pool) = &admin else { unreachable!() };
        kafkube_store::sqlx::query(&format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {up}"))
            .execute(pool)
            .await
            .expect("alter database");
        if !up {
            kafkube_store::sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .execute(pool)
                .await
                .expect("terminate connections");
        }
        admin.close().await;
    }
}

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("KAFKUBE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
