#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    appattach_operator::cli::Cli::parse().run()
}
