//! `kafkube`: parses the command line and hands over to a subcommand. Everything else lives in
//! the library crates (`crates/`) and the apps (`apps/`).

mod apps;
mod cli;

use clap::FromArgMatches;

fn main() {
    let code = run();
    // Every service has finished (offsets committed, group left) before `run` returns. Exit
    // now rather than through the runtime's drop, which would block on any client still
    // trying to reach a broker that has gone away.
    std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS))
}

fn run() -> std::process::ExitCode {
    let matches = cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    kafkube_core::telemetry::init_logging(cli.log_format, cli::DEFAULT_LOG_FILTER);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(cli.command.run(&matches)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // Do not wait for leftover tasks (see `main`).
    runtime.shutdown_background();
    code
}
