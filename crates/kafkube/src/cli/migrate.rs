//! `kafkube migrate`: apply every app's migrations and exit.

use std::process::ExitCode;

use clap::Args;
use kafkube_store::db::redact;
use kafkube_store::{Db, DbArgs, Migrations};
use kafkube_students::config::StudentsDbArgs;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub students: StudentsDbArgs,

    /// The log aggregator's database.
    #[arg(
        long = "aggregator-database-url",
        env = "AGGREGATOR_DATABASE_URL",
        default_value = "sqlite:data/aggregator.db"
    )]
    pub aggregator_database_url: String,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let plan: [(&str, Vec<Migrations>); 2] = [
        (&args.students.database_url, kafkube_students::main_migrations().into()),
        (
            &args.students.log_database_url,
            vec![kafkube_students::log_migrations()],
        ),
    ];
    for (url, migrations) in plan {
        let db = Db::connect(url, &DbArgs::default()).await?;
        for m in &migrations {
            db.migrate(m).await?;
            println!("migrated {} on {}", m.name, redact(url));
        }
        db.close().await;
    }
    Ok(ExitCode::SUCCESS)
}
