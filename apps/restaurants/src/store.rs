//! The orders database: the restaurant list, orders and their status history. An order's row,
//! its `placed` status and its `order` record (the outbox) are written in one transaction.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kafkube_bus::Outgoing;
use kafkube_store::{Db, GroupWrite, StoreError, on_db, on_tx};

use crate::model::{
    Cents, HistoryEntry, NewOrder, OrderPlaced, OrderView, Restaurant, Status, StatusChange, card_last4, keyed_record,
};

/// The seed's restaurant list, imported into an empty database.
pub const SEED_RESTAURANTS: &str = include_str!("../data/restaurants.json");

/// Parses a restaurant list (a JSON array of `{name, style, vegetarian, delivery}`).
pub fn parse_restaurants(json: &str) -> Result<Vec<Restaurant>, String> {
    let list: Vec<Restaurant> =
        serde_json::from_str(json).map_err(|e| format!("not a list of {{name, style, vegetarian, delivery}}: {e}"))?;
    if let Some(r) = list
        .iter()
        .find(|r| r.name.trim().is_empty() || r.style.trim().is_empty())
    {
        return Err(format!("a restaurant without a name or style: {r:?}"));
    }
    Ok(list)
}

/// Replaces the restaurant list (one transaction). Existing orders keep their restaurant's name.
pub async fn import_restaurants(db: &Db, list: &[Restaurant]) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, conn => {
        sqlx::query("DELETE FROM restaurants").execute(&mut *conn).await?;
        for r in list {
            sqlx::query(
                "INSERT INTO restaurants (name, style, vegetarian, delivery) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET style = excluded.style, \
                 vegetarian = excluded.vegetarian, delivery = excluded.delivery",
            )
            .bind(&r.name)
            .bind(&r.style)
            .bind(r.vegetarian)
            .bind(r.delivery)
            .execute(&mut *conn)
            .await?;
        }
    });
    tx.commit().await
}

/// Imports `list` if the database has no restaurant yet (the first start).
pub async fn seed_restaurants(db: &Db, list: &[Restaurant]) -> Result<bool, StoreError> {
    let (n,): (i64,) = on_db!(db, p => sqlx::query_as("SELECT COUNT(*) FROM restaurants").fetch_one(p).await)?;
    if n > 0 {
        return Ok(false);
    }
    import_restaurants(db, list).await?;
    Ok(true)
}

/// `GET /search`'s filters.
#[derive(Debug, Default)]
pub struct Search {
    pub name: Option<String>,
    pub style: Option<String>,
    pub vegetarian: bool,
    pub delivery: bool,
}

/// Restaurants matching `q`, by name.
pub async fn search(db: &Db, q: &Search) -> Result<Vec<Restaurant>, StoreError> {
    let like = q.name.as_deref().map(|n| {
        let escaped: String = n
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("%{escaped}%")
    });
    let sql = "SELECT name, style, vegetarian, delivery FROM restaurants \
               WHERE ($1 IS NULL OR LOWER(name) LIKE $1 ESCAPE '\\') \
               AND ($2 IS NULL OR LOWER(style) = $2) \
               AND ($3 = FALSE OR vegetarian) AND ($4 = FALSE OR delivery) \
               ORDER BY name";
    let style = q.style.as_deref().map(str::to_lowercase);
    Ok(on_db!(db, p => sqlx::query_as(sql)
        .bind(&like)
        .bind(&style)
        .bind(q.vegetarian)
        .bind(q.delivery)
        .fetch_all(p)
        .await)?)
}

/// The restaurants' names as the list spells them, for any capitalisation of the names asked
/// for: `asked` lower-cased → the name (the exact spelling when two names differ only in case).
async fn restaurants_named<'a>(
    db: &Db,
    asked: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, String>, StoreError> {
    let mut wanted: Vec<(String, &str)> = asked.map(|n| (n.to_lowercase(), n)).collect();
    wanted.sort();
    wanted.dedup();
    let mut found: HashMap<String, String> = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
        let names: Vec<(String,)> = on_db!(db, p => {
            let mut q = sqlx::QueryBuilder::new("SELECT name FROM restaurants WHERE LOWER(name) IN (");
            let mut list = q.separated(", ");
            for (lower, _) in chunk {
                list.push_bind(lower.as_str());
            }
            q.push(") ORDER BY name");
            q.build_query_as().fetch_all(p).await?
        });
        for (name,) in names {
            let lower = name.to_lowercase();
            let exact = wanted.iter().any(|(l, asked)| *l == lower && *asked == name);
            if exact || !found.contains_key(&lower) {
                found.insert(lower, name);
            }
        }
    }
    Ok(found)
}

/// One `POST /orders`, checked: what [`place_many`] writes.
#[derive(Debug)]
pub struct Placement {
    pub order_id: String,
    /// Its restaurant in any capitalisation.
    pub order: NewOrder,
}

/// What [`place_many`] did with one placement.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    /// A new order, with its `order` record in the outbox.
    New,
    /// The order with this id exists (a retried request with the same `Idempotency-Key`):
    /// whether it is the same order.
    Existing { same: bool },
    /// No restaurant has this name: nothing written.
    UnknownRestaurant,
}

/// Rows per INSERT statement (8 parameters a row; SQLite takes 32,766, PostgreSQL 65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Writes orders, their `placed` statuses and their `order` records in one transaction: every
/// one of them or none. Concurrent `POST /orders` share it through [`Orders`] (group commit).
/// An order id given twice (a retry racing its original) is placed once; the other placement
/// learns whether it asked for the same order.
pub async fn place_many(db: &Db, topic: &str, placements: &[Placement]) -> Result<Vec<Placed>, StoreError> {
    let now = Utc::now();
    // Read before the transaction: a read that turns into a write can fail at once on SQLite
    // when another connection wrote in between.
    let restaurants = restaurants_named(db, placements.iter().map(|p| p.order.restaurant.as_str())).await?;
    let restaurant = |p: &Placement| restaurants.get(&p.order.restaurant.to_lowercase());
    let mut seen = HashSet::new();
    let firsts: Vec<(&Placement, &String, String)> = placements
        .iter()
        .filter_map(|p| Some((p, restaurant(p)?)))
        .filter(|(p, _)| seen.insert(p.order_id.as_str()))
        .map(|(p, r)| (p, r, card_last4(&p.order.credit_card)))
        .collect();
    let mut tx = db.begin().await?;
    let mut inserted: HashSet<String> = HashSet::with_capacity(firsts.len());
    for chunk in firsts.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<(String,)> = on_tx!(&mut tx, conn => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO orders (order_id, email, restaurant, card_last4, amount_cents, status, status_rank, placed_at) ",
            );
            q.push_values(chunk, |mut b, (p, restaurant, last4)| {
                b.push_bind(&p.order_id)
                    .push_bind(&p.order.email)
                    .push_bind(*restaurant)
                    .push_bind(last4)
                    .push_bind(p.order.amount.0)
                    .push_bind(Status::Placed.as_str())
                    .push_bind(Status::Placed.rank())
                    .push_bind(now);
            });
            q.push(" ON CONFLICT (order_id) DO NOTHING RETURNING order_id");
            q.build_query_as().fetch_all(&mut *conn).await?
        });
        inserted.extend(ids.into_iter().map(|(id,)| id));
    }
    let new: Vec<(&Placement, &String)> = firsts
        .iter()
        .map(|(p, r, _)| (*p, *r))
        .filter(|(p, _)| inserted.contains(&p.order_id))
        .collect();
    for chunk in new.chunks(ROWS_PER_STATEMENT) {
        on_tx!(&mut tx, conn => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO order_status (order_id, status, rank, at) ");
            q.push_values(chunk, |mut b, (p, _)| {
                b.push_bind(&p.order_id)
                    .push_bind(Status::Placed.as_str())
                    .push_bind(Status::Placed.rank())
                    .push_bind(now);
            });
            q.build().execute(&mut *conn).await?;
        });
    }
    let records: Vec<Outgoing> = new
        .iter()
        .map(|(p, restaurant)| {
            let event = OrderPlaced {
                order_id: p.order_id.clone(),
                email: p.order.email.clone(),
                credit_card: p.order.credit_card.clone(),
                restaurant: (*restaurant).clone(),
                amount_cents: p.order.amount.0,
                placed_at: now,
            };
            keyed_record(topic, &p.order_id, &event, "order_placed")
        })
        .collect();
    kafkube_outbox::enqueue_many(&mut tx, &records).await?;

    let mut answers = Vec::with_capacity(placements.len());
    let mut claimed = HashSet::new();
    for p in placements {
        let Some(restaurant) = restaurant(p) else {
            answers.push(Placed::UnknownRestaurant);
            continue;
        };
        if inserted.contains(&p.order_id) && claimed.insert(p.order_id.as_str()) {
            answers.push(Placed::New);
            continue;
        }
        let existing: Option<(String, String, String, i64)> = on_tx!(&mut tx, conn => {
            sqlx::query_as("SELECT email, restaurant, card_last4, amount_cents FROM orders WHERE order_id = $1")
                .bind(&p.order_id)
                .fetch_optional(&mut *conn)
                .await?
        });
        let last4 = card_last4(&p.order.credit_card);
        let same = existing
            .is_some_and(|(e, r, l, a)| e == p.order.email && r == *restaurant && l == last4 && a == p.order.amount.0);
        answers.push(Placed::Existing { same });
    }
    tx.commit().await?;
    Ok(answers)
}

/// `POST /orders`' group commit: the placements waiting at once share one transaction.
#[derive(Debug)]
pub struct Orders {
    pub topic: Arc<str>,
}

impl GroupWrite for Orders {
    type Item = Placement;
    type Output = Placed;

    fn write<'a>(
        &'a self,
        db: &'a Db,
        items: &'a [Placement],
    ) -> impl Future<Output = Result<Vec<Placed>, StoreError>> + Send + 'a {
        place_many(db, &self.topic, items)
    }
}

type OrderRow = (String, String, String, String, i64, String, DateTime<Utc>);
type HistoryRow = (String, DateTime<Utc>, Option<String>);

/// The order and its history (in status order), or `None`.
pub async fn order(db: &Db, order_id: &str) -> Result<Option<OrderView>, StoreError> {
    let row: Option<OrderRow> = on_db!(db, p => sqlx::query_as(
        "SELECT order_id, email, restaurant, card_last4, amount_cents, status, placed_at FROM orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(p)
        .await)?;
    let Some((order_id, email, restaurant, card_last4, amount, status, placed_at)) = row else {
        return Ok(None);
    };
    let history = history(db, &order_id).await?;
    Ok(Some(OrderView {
        order_id,
        email,
        restaurant,
        card_last4,
        amount: Cents(amount).to_string(),
        status: Status::parse(&status).unwrap_or(Status::Placed),
        placed_at,
        history,
    }))
}

/// The statuses an order reached, in status order.
pub async fn history(db: &Db, order_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows: Vec<HistoryRow> = on_db!(db, p => sqlx::query_as(
        "SELECT status, at, reason FROM order_status WHERE order_id = $1 ORDER BY rank, at")
        .bind(order_id)
        .fetch_all(p)
        .await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(s, at, reason)| {
            Some(HistoryEntry {
                status: Status::parse(&s)?,
                at,
                reason,
            })
        })
        .collect())
}

/// Records status changes (one transaction, a few statements however many changes): each
/// `(order, status)` once, however often it is delivered, and the order shows the highest status
/// it reached. Returns the orders touched.
pub async fn apply(db: &Db, changes: &[StatusChange]) -> Result<Vec<String>, StoreError> {
    let mut seen = HashSet::new();
    let changes: Vec<&StatusChange> = changes
        .iter()
        .filter(|c| seen.insert((c.order_id.as_str(), c.status)))
        .collect();
    let mut tx = db.begin().await?;
    let mut new: Vec<(String, String)> = Vec::with_capacity(changes.len());
    for chunk in changes.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(String, String)> = on_tx!(&mut tx, conn => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO order_status (order_id, status, rank, at, reason) ");
            q.push_values(chunk, |mut b, c| {
                b.push_bind(&c.order_id)
                    .push_bind(c.status.as_str())
                    .push_bind(c.status.rank())
                    .push_bind(c.at)
                    .push_bind(&c.reason);
            });
            q.push(" ON CONFLICT (order_id, status) DO NOTHING RETURNING order_id, status");
            q.build_query_as().fetch_all(&mut *conn).await?
        });
        new.extend(rows);
    }
    // The order's own status: one UPDATE per status reached, each only raising it.
    let mut by_status: Vec<(Status, Vec<&str>)> = Vec::new();
    for (id, status) in &new {
        let Some(status) = Status::parse(status) else { continue };
        match by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, ids)) => ids.push(id),
            None => by_status.push((status, vec![id])),
        }
    }
    for (status, ids) in &by_status {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            on_tx!(&mut tx, conn => {
                let mut q = sqlx::QueryBuilder::new("UPDATE orders SET status = ");
                q.push_bind(status.as_str())
                    .push(", status_rank = ")
                    .push_bind(status.rank())
                    .push(" WHERE status_rank < ")
                    .push_bind(status.rank())
                    .push(" AND order_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *conn).await?;
            });
        }
    }
    tx.commit().await?;
    let mut once = HashSet::new();
    Ok(new
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| once.insert(id.clone()))
        .collect())
}

/// Orders per status (the load command's final check).
pub async fn count_by_status(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        on_db!(db, p => sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
        .fetch_all(p)
        .await)?,
    )
}

/// `kafkube import-restaurants`: the options.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The list to import (a JSON array of `{name, style, vegetarian, delivery}`); without it,
    /// the seed's list that is built in.
    pub file: Option<std::path::PathBuf>,

    /// The orders database to import into.
    #[arg(
        long = "restaurants-database-url",
        env = "RESTAURANTS_DATABASE_URL",
        default_value = "sqlite:data/restaurants.db"
    )]
    pub database_url: kafkube_store::DatabaseUrl,
}

/// Replaces the restaurant list of the orders database (migrating it first); returns a line
/// for the user.
pub async fn import(args: &ImportArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let list = crate::restaurant_list(args.file.as_deref())?;
    let db = Db::connect(args.database_url.expose(), &kafkube_store::DbArgs::default())
        .await
        .with_context(|| format!("cannot open the orders database {}", args.database_url))?;
    for m in &crate::orders_migrations() {
        db.migrate(m).await?;
    }
    import_restaurants(&db, &list).await?;
    db.close().await;
    Ok(format!(
        "imported {} restaurants into {}",
        list.len(),
        args.database_url
    ))
}
