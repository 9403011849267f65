//! The `mailferry` command: see `mailferry --help` and the crate README.

use std::process::ExitCode;

use clap::Parser;
use mailferry_forwarder::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    run(
        &cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}
