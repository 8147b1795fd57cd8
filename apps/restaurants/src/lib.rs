//! The restaurants app (seed `004`, "Kafka restaurants system").
//!
//! - [`api`]: the page and API on port 5000 (`restaurants`): search, order (the order row and its
//!   `order` record in one transaction, the outbox), the order's status and its live stream; its
//!   [`follower`] applies status changes from `order_status` and `order_confirm`.
//! - [`payments`]: `restaurant-payments` (group `transaction-service`): card check, one bank
//!   charge per order, → `order_confirm` and `order_status`.
//! - [`mailer`]: `restaurant-mailer` (group `confirmation-service`): one confirmation e-mail per
//!   paid order over SMTP (or `.eml` files) → `order_status`.

pub mod api;
pub mod config;
pub mod follower;
pub mod load;
pub mod mailer;
pub mod model;
pub mod payments;
pub mod store;

pub use api::RestaurantsApi;
pub use config::RestaurantsArgs;
pub use mailer::Mailer;
pub use payments::Payments;

use anyhow::Context as _;
use kafkube_bus::TopicSpec;
use kafkube_runtime::{App, Database, Service};
use kafkube_store::Migrations;

use crate::model::Restaurant;

/// The restaurants app, as the binary lists it.
pub struct Restaurants;

impl App for Restaurants {
    type Args = RestaurantsArgs;

    fn name(&self) -> &'static str {
        "restaurants"
    }

    fn about(&self) -> &'static str {
        "restaurant search and ordering page, payments and confirmation e-mail (seed 004)"
    }

    fn topics(&self, args: &RestaurantsArgs) -> Vec<TopicSpec> {
        [&args.order_topic, &args.confirm_topic, &args.status_topic]
            .into_iter()
            .flat_map(|t| TopicSpec::with_dlq(t.clone(), args.partitions))
            .collect()
    }

    fn databases(&self, args: &RestaurantsArgs) -> Vec<Database> {
        vec![
            Database {
                label: "restaurant orders",
                url: args.database_url.clone(),
                migrations: orders_migrations().into(),
            },
            Database {
                label: "restaurant payments",
                url: args.payments.database_url.clone(),
                migrations: vec![payments_migrations()],
            },
            Database {
                label: "restaurant mail log",
                url: args.mailer.database_url.clone(),
                migrations: vec![mailer_migrations()],
            },
        ]
    }

    fn services(&self) -> Vec<Box<dyn Service<RestaurantsArgs>>> {
        vec![
            Box::new(RestaurantsApi),
            Box::new(Payments::default()),
            Box::new(Mailer),
        ]
    }
}

/// The orders database: the outbox, restaurants, orders, statuses.
pub fn orders_migrations() -> [Migrations; 2] {
    [
        kafkube_outbox::migrations(),
        Migrations {
            name: "restaurants",
            sqlite: sqlx::migrate!("./migrations/orders/sqlite"),
            postgres: sqlx::migrate!("./migrations/orders/postgres"),
        },
    ]
}

/// The payments database.
pub fn payments_migrations() -> Migrations {
    Migrations {
        name: "restaurant-payments",
        sqlite: sqlx::migrate!("./migrations/payments/sqlite"),
        postgres: sqlx::migrate!("./migrations/payments/postgres"),
    }
}

/// The mailer's sent-log.
pub fn mailer_migrations() -> Migrations {
    Migrations {
        name: "restaurant-mailer",
        sqlite: sqlx::migrate!("./migrations/mailer/sqlite"),
        postgres: sqlx::migrate!("./migrations/mailer/postgres"),
    }
}

/// The restaurant list: `file`'s, or the seed's built in.
pub fn restaurant_list(file: Option<&std::path::Path>) -> anyhow::Result<Vec<Restaurant>> {
    let (text, from) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the restaurant list {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (store::SEED_RESTAURANTS.to_owned(), "the built-in list".to_owned()),
    };
    store::parse_restaurants(&text).map_err(|e| anyhow::anyhow!("{from}: {e}"))
}
