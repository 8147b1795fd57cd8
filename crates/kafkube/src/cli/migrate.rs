//! `kafkube migrate`: apply every app's migrations and exit.

use std::process::ExitCode;

use clap::Args;
use kafkube_store::{Db, DbArgs};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Main database.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "sqlite:data/students.db"
    )]
    pub database_url: String,

    /// Log database of the students app.
    #[arg(
        long = "log-database-url",
        env = "LOG_DATABASE_URL",
        default_value = "sqlite:data/event-logs.db"
    )]
    pub log_database_url: String,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let opts = DbArgs::default();
    let main = Db::connect(&args.database_url, &opts).await?;
    for m in kafkube_students::main_migrations() {
        main.migrate(&m).await?;
        println!(
            "migrated {} on {}",
            m.name,
            kafkube_store::db::redact(&args.database_url)
        );
    }
    let log = Db::connect(&args.log_database_url, &opts).await?;
    let m = kafkube_students::log_migrations();
    log.migrate(&m).await?;
    println!(
        "migrated {} on {}",
        m.name,
        kafkube_store::db::redact(&args.log_database_url)
    );
    Ok(ExitCode::SUCCESS)
}
