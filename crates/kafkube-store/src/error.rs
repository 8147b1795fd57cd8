//! Errors of the store, classified the way callers must act on them.

use sqlx::error::DatabaseError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database's own message (`database "x" does not exist`, `Connection refused`), once:
    /// sqlx's errors repeat their source in their text, so the source is not chained.
    #[error("database error: {}", cause(.0))]
    Sqlx(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database URL `{url}`: {reason}")]
    Url { url: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sqlx(e)
    }
}

/// What went wrong, without sqlx's wrapping ("error returned from database: …",
/// "error communicating with database: …").
fn cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

impl StoreError {
    /// True when retrying later may succeed: the database is unreachable, restarting, busy, or
    /// a transaction lost a serialization race. Such errors become 503s and consumer retries,
    /// never dead letters.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sqlx(e) => is_transient(e),
            Self::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient(e),
            _ => false,
        }
    }

    /// True when the data itself was refused (a value out of range, a constraint): retrying the
    /// same data cannot succeed. Consumers dead-letter such records; every other failure is
    /// retried, because dead-lettering on an outage would lose data.
    pub fn is_data_error(&self) -> bool {
        let Self::Sqlx(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let Some(code) = db.code() else { return false };
        let code = code.as_ref();
        // PostgreSQL: data exception (22), integrity constraint violation (23).
        // SQLite: SQLITE_TOOBIG (18), SQLITE_CONSTRAINT (19), SQLITE_MISMATCH (20).
        code.starts_with("22") || code.starts_with("23") || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(18..=20))
    }

    /// True when a unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Sqlx(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => is_transient_code(db.as_ref()),
        _ => false,
    }
}

fn is_transient_code(db: &dyn DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    let code = code.as_ref();
    // PostgreSQL SQLSTATEs: connection exceptions (08), serialization failure and deadlock (40),
    // insufficient resources (53), object not in prerequisite state (55), operator intervention
    // such as a restart (57), system (58).
    // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) with their extended codes.
    // 55000: the database does not accept connections right now (ALLOW_CONNECTIONS false).
    ["08", "40", "53", "55", "57", "58"].iter().any(|p| code.starts_with(p))
        || matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
}
