//! `appliance`: parses the command line, runs the command, picks the exit code.

use std::process::ExitCode;

use clap::Parser;

use appliance::cli::{Cli, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let verbose = cli.global.verbose;
    // One TLS implementation for the whole process (server and CLI client): ring.
    appliance::client::tls_provider();
    match appliance::commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // The message may quote a daemon's answer or a file's content.
            let message = if verbose {
                format!("{error:?}")
            } else {
                format!("{error:#}")
            };
            eprintln!("error: {}", appliance::commands::output::text(&message));
            ExitCode::from(appliance::commands::exit_code_for(&error))
        }
    }
}
