//! The [`Db`] handle: a pool per backend, migrations, transactions.

use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use kafkube_core::{Backoff, Outage, Shutdown};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::{Result, StoreError};

/// Pool options shared by every database of a process.
#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// Largest number of connections each pool opens.
    #[arg(long = "db-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    #[arg(
        long = "db-acquire-timeout-ms",
        env = "DATABASE_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub acquire_timeout_ms: u64,
}

impl Default for DbArgs {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout_ms: 5000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to one database. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction on either backend; use [`on_tx!`](crate::on_tx) to run statements in it.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Self::Sqlite(t) => t.commit().await?,
            Self::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

/// An app's migrations, one directory per backend (`sqlx::migrate!`). Versions must be unique
/// across apps because apps may share a database: each app owns a range.
#[derive(Debug)]
pub struct Migrations {
    pub name: &'static str,
    pub sqlite: Migrator,
    pub postgres: Migrator,
}

impl Db {
    /// Connects to `url`: `sqlite:PATH` / `sqlite://PATH` (the file is created, and its
    /// directory when it is under ./data), `sqlite::memory:`, or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str, args: &DbArgs) -> Result<Self> {
        let acquire = Duration::from_millis(args.acquire_timeout_ms);
        match Backend::of_url(url)? {
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| url_error(url, e))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                // The default directory, ./data, is created; any other must exist (a typo in a
                // path must not leave directories around the file system).
                if let Some(dir) = opts.get_filename().parent().filter(|d| !d.as_os_str().is_empty())
                    && !dir.is_dir()
                {
                    if dir.starts_with("data") || dir.starts_with("./data") {
                        std::fs::create_dir_all(dir).map_err(|e| url_error(url, e))?;
                    } else {
                        return Err(url_error(
                            url,
                            format!(
                                "the directory {} does not exist; create it first (only ./data is created for you)",
                                dir.display()
                            ),
                        ));
                    }
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(args.max_connections.max(1))
                    .acquire_timeout(acquire)
                    .connect_with(opts)
                    .await?;
                Ok(Self::Sqlite(pool))
            }
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url).map_err(|e| url_error(url, e))?;
                // One connection first: a pool that cannot connect only says "pool timed out",
                // and the cause (connection refused, no such database, bad password) is lost.
                match tokio::time::timeout(acquire, sqlx::ConnectOptions::connect(&opts)).await {
                    Ok(Ok(conn)) => drop(sqlx::Connection::close(conn).await),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(sqlx::Error::PoolTimedOut.into()),
                }
                let pool = PgPoolOptions::new()
                    .max_connections(args.max_connections.max(1))
                    .acquire_timeout(acquire)
                    .connect_with(opts)
                    .await?;
                Ok(Self::Postgres(pool))
            }
        }
    }

    /// [`connect`](Self::connect), waiting with backoff while the database is unreachable
    /// (a service must start before its database in Kubernetes). Gives up on shutdown or on a
    /// non-transient error such as a bad URL or bad credentials.
    pub async fn connect_with_retry(url: &str, args: &DbArgs, shutdown: &Shutdown) -> Result<Self> {
        let mut backoff = Backoff::outage();
        let mut outage = Outage::new("retrying");
        let what = format!("the database {}", redact(url));
        loop {
            match Self::connect(url, args).await {
                Ok(db) => {
                    outage.recovered(&what);
                    return Ok(db);
                }
                Err(e) if e.is_transient() => {
                    outage.failed(&what, &e.to_string());
                    if !backoff.wait(shutdown).await {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What a service does at start: connect (waiting for the database) and apply its
    /// migrations.
    pub async fn open(
        url: &crate::DatabaseUrl,
        args: &DbArgs,
        shutdown: &Shutdown,
        migrations: &[Migrations],
    ) -> Result<Self> {
        let db = Self::connect_with_retry(url.expose(), args, shutdown).await?;
        for m in migrations {
            db.migrate(m).await?;
        }
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the app's pending migrations. Migrations of other apps in the same database are
    /// left alone.
    pub async fn migrate(&self, m: &Migrations) -> Result<()> {
        match self {
            Self::Sqlite(p) => tolerant(&m.sqlite).run(p).await?,
            Self::Postgres(p) => tolerant(&m.postgres).run(p).await?,
        }
        tracing::debug!(app = m.name, "migrations applied");
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Self::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Self::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A round trip to the database (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        crate::on_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(drop))?;
        Ok(())
    }

    pub async fn close(&self) {
        crate::on_db!(self, p => p.close().await);
    }
}

/// A copy of `m` that tolerates migrations applied by other apps sharing the database.
fn tolerant(m: &Migrator) -> Migrator {
    Migrator {
        migrations: m.migrations.clone(),
        ignore_missing: true,
        locking: m.locking,
        no_tx: m.no_tx,
    }
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Url {
                url: redact(url),
                reason: "expected sqlite:PATH or postgres://USER@HOST/DB".into(),
            })
        }
    }
}

fn url_error(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Url {
        url: redact(url),
        reason: e.to_string(),
    }
}

/// The URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:data/x.db"), "sqlite:data/x.db");
    }

    #[test]
    fn picks_backend_by_scheme() {
        assert_eq!(Backend::of_url("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgresql://h/db").ok(), Some(Backend::Postgres));
        assert!(Backend::of_url("mysql://h/db").is_err());
    }
}
