//! One function per subcommand. Commands load the configuration, do their work and
//! return an exit code; errors carry enough context for a one-line message.

mod config_cmd;
mod db;
mod doctor;
mod serve;
mod status;

use anyhow::Context;

use crate::cli::{Cli, Command, ConfigCommand, DbCommand, exit};
use crate::client::ClientError;
use crate::config::{self, ConfigError, Environment, Loaded};
use crate::lock::LockError;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let verbose = cli.global.verbose;
    let load = || -> anyhow::Result<Loaded> {
        let overrides = cli.global.overrides().map_err(anyhow::Error::msg)?;
        Ok(config::load(&overrides, &Environment::capture())?)
    };
    match &cli.command {
        Command::Version => {
            println!("appliance {}", crate::app::VERSION);
            Ok(exit::OK)
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", config::DEFAULT_TOML);
            Ok(exit::OK)
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => config_cmd::show(&load()?),
        Command::Serve => serve::run(load()?),
        Command::Status { json } => {
            crate::telemetry::init_cli_logging(verbose);
            status::run(&load()?, *json)
        }
        Command::Doctor => {
            crate::telemetry::init_cli_logging(verbose);
            doctor::run(&load()?)
        }
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            crate::telemetry::init_cli_logging(verbose);
            db::migrate(&load()?)
        }
    }
}

/// The exit code for an error, from the most specific cause in its chain.
pub fn exit_code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<ConfigError>() {
            return exit::CONFIG;
        }
        if let Some(LockError::Held { .. }) = cause.downcast_ref::<LockError>() {
            return exit::ALREADY_RUNNING;
        }
        if let Some(ClientError::Unreachable { .. }) = cause.downcast_ref::<ClientError>() {
            return exit::UNREACHABLE;
        }
    }
    exit::FAILURE
}

/// A small single-threaded runtime for commands that talk HTTP.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}

/// `config show`'s and `doctor`'s one-line description of the layout and file.
fn describe_sources(loaded: &Loaded) -> String {
    format!(
        "layout {}, configuration file {}",
        loaded.layout,
        loaded.file_path_display()
    )
}
