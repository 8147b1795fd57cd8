//! The sink's database: MySQL/MariaDB, PostgreSQL or SQLite, one upsert statement per batch.
//!
//! The table is created when missing (its name is an option, so it is DDL here rather than a
//! migration); a table made by the seed's sink, which has no `version` column, gets one.
//! The upsert only replaces a row with a change of an equal or larger `version`, so a
//! redelivered older change never overwrites a newer one.

use std::str::FromStr;
use std::time::Duration;

use kafkube_core::{Backoff, Outage, Shutdown};
use kafkube_store::{Db, DbArgs, StoreError};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder, Sqlite};

use crate::config::{SinkBackend, SinkUrl};
use crate::order::Enriched;

/// A pool to the sink database.
#[derive(Clone, Debug)]
pub enum SinkDb {
    /// SQLite or PostgreSQL, through the core's [`Db`].
    Sql(Db),
    MySql(MySqlPool),
}

impl SinkDb {
    /// Connects, waiting with backoff while the database is unreachable (until `shutdown`).
    pub async fn connect(url: &SinkUrl, args: &DbArgs, shutdown: &Shutdown) -> Result<Self, StoreError> {
        if url.backend() != SinkBackend::MySql {
            return Ok(Self::Sql(Db::connect_with_retry(url.expose(), args, shutdown).await?));
        }
        let mysql_url = url.expose().replacen("mariadb://", "mysql://", 1);
        let opts = MySqlConnectOptions::from_str(&mysql_url).map_err(|e| StoreError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let acquire = Duration::from_millis(args.acquire_timeout_ms);
        let mut backoff = Backoff::outage();
        let mut outage = Outage::new("retrying");
        let what = format!("the sink database {url}");
        loop {
            match Self::connect_mysql(&opts, args.max_connections, acquire).await {
                Ok(pool) => {
                    outage.recovered(&what);
                    return Ok(Self::MySql(pool));
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

    /// One connection first, as the core's [`Db`] does: a pool that cannot connect only says
    /// "pool timed out", and the cause (connection refused, unknown database, bad password) is
    /// lost.
    async fn connect_mysql(
        opts: &MySqlConnectOptions,
        max_connections: u32,
        acquire: Duration,
    ) -> Result<MySqlPool, StoreError> {
        match tokio::time::timeout(acquire, sqlx::ConnectOptions::connect(opts)).await {
            Ok(Ok(conn)) => drop(sqlx::Connection::close(conn).await),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(sqlx::Error::PoolTimedOut.into()),
        }
        Ok(MySqlPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire)
            .connect_with(opts.clone())
            .await?)
    }

    pub fn backend(&self) -> SinkBackend {
        match self {
            Self::Sql(Db::Sqlite(_)) => SinkBackend::Sqlite,
            Self::Sql(Db::Postgres(_)) => SinkBackend::Postgres,
            Self::MySql(_) => SinkBackend::MySql,
        }
    }

    /// Creates `table` when missing, and its `version` column in a table of the seed's.
    pub async fn ensure_table(&self, table: &str) -> Result<(), StoreError> {
        let create = match self.backend() {
            SinkBackend::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, order_id TEXT, quantity INTEGER, \
                 unit_price TEXT, total_value TEXT, processed_at INTEGER, \
                 created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), \
                 updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), \
                 version INTEGER NOT NULL DEFAULT 0)"
            ),
            SinkBackend::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, order_id TEXT, quantity BIGINT, \
                 unit_price NUMERIC, total_value NUMERIC, processed_at BIGINT, \
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
                 version BIGINT NOT NULL DEFAULT 0)"
            ),
            SinkBackend::MySql => format!(
                "CREATE TABLE IF NOT EXISTS `{table}` (id VARCHAR(64) NOT NULL PRIMARY KEY, order_id VARCHAR(255), \
                 quantity BIGINT, unit_price DECIMAL(20,4), total_value DECIMAL(30,4), processed_at BIGINT, \
                 created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                 version BIGINT NOT NULL DEFAULT 0) DEFAULT CHARSET=utf8mb4"
            ),
        };
        self.execute(&create).await?;
        if self
            .execute(&format!("SELECT version FROM {table} WHERE 1 = 0"))
            .await
            .is_err()
        {
            tracing::info!(table, "adding the column `version` to the sink table");
            self.execute(&format!(
                "ALTER TABLE {table} ADD COLUMN version BIGINT NOT NULL DEFAULT 0"
            ))
            .await?;
        }
        Ok(())
    }

    async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Self::Sql(db) => kafkube_store::on_db!(db, p => sqlx::query(sql).execute(p).await.map(drop))?,
            Self::MySql(p) => sqlx::query(sql).execute(p).await.map(drop)?,
        }
        Ok(())
    }

    /// A round trip (for `/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.execute("SELECT 1").await
    }

    /// Applies one batch in one transaction: one upsert statement for the rows that stay (per
    /// SQLite's and MySQL's parameter limits, in chunks), one delete for the rows that go.
    /// `orders` must hold each id at most once (the batch's last change of it).
    pub async fn apply(&self, table: &str, upserts: &[&Enriched], deletes: &[&str]) -> Result<(), StoreError> {
        match self {
            Self::Sql(Db::Postgres(pool)) => {
                let mut tx = pool.begin().await?;
                if !upserts.is_empty() {
                    let col = |f: fn(&Enriched) -> Option<String>| upserts.iter().map(|o| f(o)).collect::<Vec<_>>();
                    sqlx::query(&format!(
                        "INSERT INTO {table} AS t (id, order_id, quantity, unit_price, total_value, processed_at, version) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[]::numeric[], \
                                              $5::text[]::numeric[], $6::int8[], $7::int8[]) \
                         ON CONFLICT (id) DO UPDATE SET order_id = EXCLUDED.order_id, quantity = EXCLUDED.quantity, \
                         unit_price = EXCLUDED.unit_price, total_value = EXCLUDED.total_value, \
                         processed_at = EXCLUDED.processed_at, version = EXCLUDED.version, updated_at = now() \
                         WHERE t.version <= EXCLUDED.version"
                    ))
                    .bind(upserts.iter().map(|o| o.id.clone()).collect::<Vec<_>>())
                    .bind(col(|o| o.order_id.clone()))
                    .bind(upserts.iter().map(|o| o.quantity).collect::<Vec<_>>())
                    .bind(col(|o| o.unit_price.map(|d| d.to_string())))
                    .bind(col(|o| o.total_value.map(|d| d.to_string())))
                    .bind(upserts.iter().map(|o| o.processed_at).collect::<Vec<_>>())
                    .bind(upserts.iter().map(|o| o.version).collect::<Vec<_>>())
                    .execute(&mut *tx)
                    .await?;
                }
                if !deletes.is_empty() {
                    sqlx::query(&format!("DELETE FROM {table} WHERE id = ANY($1)"))
                        .bind(deletes)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Self::Sql(Db::Sqlite(pool)) => {
                let mut tx = pool.begin().await?;
                // 7 parameters a row; SQLite allows 32766 per statement.
                for chunk in upserts.chunks(4000) {
                    let mut q = upsert_head::<Sqlite>(table);
                    push_rows(&mut q, chunk);
                    q.push(
                        " ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, quantity = excluded.quantity, \
                         unit_price = excluded.unit_price, total_value = excluded.total_value, \
                         processed_at = excluded.processed_at, version = excluded.version, \
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE version <= excluded.version",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in deletes.chunks(30000) {
                    delete_in::<Sqlite>(table, chunk).build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Self::MySql(pool) => {
                let mut tx = pool.begin().await?;
                // MySQL allows 65535 placeholders per statement.
                for chunk in upserts.chunks(9000) {
                    let mut q = upsert_head::<MySql>(&format!("`{table}`"));
                    push_rows(&mut q, chunk);
                    // `version` last: the conditions before it compare with the old version.
                    let newer = "VALUES(version) >= version";
                    q.push(format!(
                        " ON DUPLICATE KEY UPDATE order_id = IF({newer}, VALUES(order_id), order_id), \
                         quantity = IF({newer}, VALUES(quantity), quantity), \
                         unit_price = IF({newer}, VALUES(unit_price), unit_price), \
                         total_value = IF({newer}, VALUES(total_value), total_value), \
                         processed_at = IF({newer}, VALUES(processed_at), processed_at), \
                         updated_at = IF({newer}, CURRENT_TIMESTAMP(6), updated_at), \
                         version = IF({newer}, VALUES(version), version)"
                    ));
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in deletes.chunks(30000) {
                    delete_in::<MySql>(&format!("`{table}`"), chunk)
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Rows in the table (tests and `kafkube load etl` count with it).
    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Self::Sql(db) => kafkube_store::on_db!(db, p => sqlx::query_scalar::<_, i64>(&sql).fetch_one(p).await)?,
            Self::MySql(p) => sqlx::query_scalar::<_, i64>(&sql).fetch_one(p).await?,
        })
    }

    /// Every row as `(id, order_id, quantity, unit_price, total_value)`, decimals as text
    /// normalised (`59.9700` → `59.97`), ordered by id: what tests compare with the source.
    pub async fn rows(&self, table: &str) -> Result<Vec<SinkRow>, StoreError> {
        self.rows_where(table, None).await
    }

    /// [`rows`](Self::rows) whose id starts with `prefix` (`kafkube load etl`'s rows of one run).
    pub async fn rows_with_prefix(&self, table: &str, prefix: &str) -> Result<Vec<SinkRow>, StoreError> {
        self.rows_where(table, Some(prefix)).await
    }

    async fn rows_where(&self, table: &str, prefix: Option<&str>) -> Result<Vec<SinkRow>, StoreError> {
        let text = if self.backend() == SinkBackend::MySql {
            "CHAR"
        } else {
            "TEXT"
        };
        let sql = format!(
            "SELECT id, order_id, quantity, CAST(unit_price AS {text}) AS unit_price, \
             CAST(total_value AS {text}) AS total_value FROM {table} {} ORDER BY id",
            self.id_like(prefix)
        );
        let like = prefix.map(|p| format!("{p}%"));
        let rows: Vec<SinkRow> = match self {
            Self::Sql(db) => kafkube_store::on_db!(db, p => sqlx::query_as(&sql).bind(like).fetch_all(p).await)?,
            Self::MySql(p) => sqlx::query_as(&sql).bind(like).fetch_all(p).await?,
        };
        let norm = |d: Option<String>| {
            d.and_then(|d| rust_decimal::Decimal::from_str(&d).ok())
                .map(|d| d.normalize().to_string())
        };
        Ok(rows
            .into_iter()
            .map(|r| SinkRow {
                unit_price: norm(r.unit_price),
                total_value: norm(r.total_value),
                ..r
            })
            .collect())
    }

    /// Each row whose id starts with `prefix`, with its `updated_at` as epoch seconds (the time
    /// of the statement that last wrote it, on the database's clock).
    pub async fn updated_at_with_prefix(&self, table: &str, prefix: &str) -> Result<Vec<(String, f64)>, StoreError> {
        let epoch = match self.backend() {
            SinkBackend::Sqlite => "(julianday(updated_at) - 2440587.5) * 86400.0",
            SinkBackend::Postgres => "EXTRACT(EPOCH FROM updated_at)::float8",
            SinkBackend::MySql => "CAST(UNIX_TIMESTAMP(updated_at) AS DOUBLE)",
        };
        let sql = format!("SELECT id, {epoch} FROM {table} {}", self.id_like(Some(prefix)));
        let like = format!("{prefix}%");
        Ok(match self {
            Self::Sql(db) => kafkube_store::on_db!(db, p => sqlx::query_as(&sql).bind(like).fetch_all(p).await)?,
            Self::MySql(p) => sqlx::query_as(&sql).bind(like).fetch_all(p).await?,
        })
    }

    /// `WHERE id LIKE <first parameter>`, or a condition that is always true (the parameter,
    /// bound as NULL, unused) without a prefix.
    fn id_like(&self, prefix: Option<&str>) -> &'static str {
        match (prefix.is_some(), self.backend() == SinkBackend::MySql) {
            (true, true) => "WHERE id LIKE ?",
            (true, false) => "WHERE id LIKE $1",
            (false, true) => "WHERE ? IS NULL",
            (false, false) => "WHERE $1 IS NULL",
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sql(db) => db.close().await,
            Self::MySql(p) => p.close().await,
        }
    }
}

/// A row of the sink table, as [`SinkDb::rows`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct SinkRow {
    pub id: String,
    pub order_id: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<String>,
    pub total_value: Option<String>,
}

fn upsert_head<'a, DB: sqlx::Database>(table: &str) -> QueryBuilder<'a, DB> {
    QueryBuilder::new(format!(
        "INSERT INTO {table} (id, order_id, quantity, unit_price, total_value, processed_at, version) "
    ))
}

fn push_rows<'a, DB>(q: &mut QueryBuilder<'a, DB>, rows: &[&Enriched])
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push_values(rows, |mut b, o| {
        b.push_bind(o.id.clone())
            .push_bind(o.order_id.clone())
            .push_bind(o.quantity)
            .push_bind(o.unit_price.map(|d| d.to_string()))
            .push_bind(o.total_value.map(|d| d.to_string()))
            .push_bind(o.processed_at)
            .push_bind(o.version);
    });
}

fn delete_in<'a, DB>(table: &str, ids: &[&str]) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new(format!("DELETE FROM {table} WHERE id IN ("));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind((*id).to_owned());
    }
    q.push(")");
    q
}
