//! One function per subcommand. Commands load the configuration, do their work and
//! return an exit code; errors carry enough context for a one-line message.

mod accounts;
mod assets;
mod backup;
mod chat;
mod config_cmd;
mod db;
pub mod docs;
mod doctor;
mod gpu;
mod models;
pub mod output;
mod serve;
mod status;
mod tls;
pub mod transcribe;

use anyhow::Context;

pub use chat::ChatArgs;
pub use tls::SelfSignedArgs;

use crate::cli::{Cli, Command, ConfigCommand, DbCommand, TlsCommand, WorkerKind, exit};
use crate::client::ClientError;
use crate::config::{self, ConfigError, Environment, Loaded};
use crate::lock::LockError;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let verbose = cli.global.verbose;
    if !matches!(cli.command, Command::Serve | Command::Worker { .. }) {
        die_quietly_on_closed_stdout();
    }
    // The database, logs, keys and models hold secrets: whatever this process creates
    // (the CLI opens the database too) is for its own user only.
    private_files();
    let load = || -> anyhow::Result<Loaded> {
        let overrides = cli.global.overrides().map_err(anyhow::Error::msg)?;
        Ok(config::load(&overrides, &Environment::capture())?)
    };
    match &cli.command {
        Command::Backup { command } => {
            crate::telemetry::init_cli_logging(verbose);
            backup::run(&load()?, command)
        }
        Command::Restore {
            file,
            stop,
            with_config,
        } => {
            crate::telemetry::init_cli_logging(verbose);
            backup::restore(&load()?, file, *stop, *with_config)
        }
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
        Command::GenerateAssets { dir } => {
            assets::generate(dir)?;
            Ok(exit::OK)
        }
        Command::Serve => serve::run(load()?),
        Command::Chat(args) => {
            crate::telemetry::init_cli_logging(verbose);
            chat::run(&load()?, args)
        }
        Command::Docs { command } => {
            crate::telemetry::init_cli_logging(verbose);
            docs::run(&load()?, command)
        }
        Command::Transcribe(args) => {
            crate::telemetry::init_cli_logging(verbose);
            transcribe::run(&load()?, args)
        }
        Command::Users { command } => {
            crate::telemetry::init_cli_logging(verbose);
            accounts::users(&load()?, command)
        }
        Command::Keys { command } => {
            crate::telemetry::init_cli_logging(verbose);
            accounts::keys(&load()?, command)
        }
        Command::Tls {
            command: TlsCommand::SelfSigned(args),
        } => tls::self_signed(&load()?, args),
        Command::Usage(args) => {
            crate::telemetry::init_cli_logging(verbose);
            accounts::usage(&load()?, args)
        }
        Command::Audit(args) => {
            crate::telemetry::init_cli_logging(verbose);
            accounts::audit_log(&load()?, args)
        }
        Command::Models { command } => {
            crate::telemetry::init_cli_logging(verbose);
            models::run(&load()?, command)
        }
        // A worker is configured entirely by its arguments from the daemon.
        Command::Worker {
            kind: WorkerKind::Llm(args),
        } => {
            crate::engine::worker::run(args.clone())?;
            Ok(exit::OK)
        }
        Command::Worker {
            kind: WorkerKind::Embed(args),
        } => {
            crate::engine::worker::embed::run(args.clone())?;
            Ok(exit::OK)
        }
        Command::Worker {
            kind: WorkerKind::Extract(args),
        } => {
            crate::documents::worker::run(args.clone())?;
            Ok(exit::OK)
        }
        Command::Worker {
            kind: WorkerKind::Fake(args),
        } => {
            crate::engine::worker::fake::run(args.clone())?;
            Ok(exit::OK)
        }
        Command::Status { json } => {
            crate::telemetry::init_cli_logging(verbose);
            status::run(&load()?, *json)
        }
        Command::Gpu { json, watch } => {
            crate::telemetry::init_cli_logging(verbose);
            gpu::run(&load()?, *json, *watch)
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

/// Restores the default SIGPIPE action so `appliance config show | head` ends quietly
/// instead of panicking on a closed pipe. Not for `serve`, which must survive clients
/// that hang up (Rust ignores SIGPIPE by default and reports EPIPE instead).
fn die_quietly_on_closed_stdout() {
    // SAFETY: `signal` with SIG_DFL installs no handler code; this runs before any
    // other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Makes every file and directory this process creates private to its user (umask
/// 077), whatever umask it was started with.
pub(crate) fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Removes group and other permissions from an existing path created by an older
/// version or by hand (best effort: a path owned by someone else is left alone).
pub(crate) fn restrict(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs_err::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
        && let Err(e) = fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
    {
        tracing::warn!(error = %e, "could not make a private path private");
    }
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
