//! Kafkube's database layer, on `sqlx`.
//!
//! One [`Db`] handle for the backends Kafkube runs on — SQLite (the embedded default, files under
//! `./data`) and PostgreSQL (production) — chosen by URL. Apps write their SQL once where it is
//! portable (`$1` placeholders, `ON CONFLICT`, `RETURNING` work on both) and run it through
//! [`on_db!`] / [`on_tx!`], which type-check the same code against each backend; where the
//! backends differ (bulk inserts), an app matches on the variant.

pub mod db;
mod error;
mod group;
pub mod storable;
mod url;

pub use db::{Backend, Db, DbArgs, Migrations, Tx};
pub use error::{Result, StoreError};
pub use group::{GroupCommit, GroupOptions, GroupWrite};
pub use url::DatabaseUrl;

/// Re-exported so apps name one sqlx.
pub use sqlx;

/// Runs `$body` with `$pool` bound to the backend's pool (`&SqlitePool` or `&PgPool`).
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's connection (`&mut SqliteConnection` or
/// `&mut PgConnection`), so several statements share one transaction.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}
