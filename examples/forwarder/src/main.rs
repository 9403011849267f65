//! The `mailferry` command: see `mailferry --help` and the crate README.

use std::process::ExitCode;

use clap::Parser;
use mailferry_forwarder::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Unlocked handles: holding `stderr().lock()` here for the whole run would block every log
    // line written by a runtime worker thread (tracing writes to stderr), hanging the daemon.
    run(&cli, &mut std::io::stdout(), &mut std::io::stderr())
}
