//! `kafkube migrate`: apply every app's migrations to every database it is given, and exit.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, Args};
use kafkube_store::{Db, DbArgs};

use crate::apps::APPS;

/// `migrate` takes the same database options as `up` and `serve` (every app's options are added
/// from [`APPS`]; only the database URLs matter here).
#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn augment(migrate: clap::Command) -> clap::Command {
    APPS.iter().fold(migrate, |cmd, app| app.augment_args(cmd))
}

pub async fn run(args: MigrateArgs, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    for app in APPS {
        for database in app.configure(matches)?.databases {
            let db = Db::connect(database.url.expose(), &args.db)
                .await
                .with_context(|| format!("{} database {}", database.label, database.url))?;
            for m in &database.migrations {
                db.migrate(m)
                    .await
                    .with_context(|| format!("migrations {} on {}", m.name, database.url))?;
                println!("migrated {} on {} ({})", m.name, database.url, database.label);
            }
            db.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
