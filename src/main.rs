//! The `ftpsfs` command: parse the command line, then mount and serve.
use std::process::ExitCode;

fn main() -> ExitCode {
    match ftpsfs::cli::parse_args(std::env::args_os()) {
        Ok(options) => ftpsfs::run::run(options),
        Err(e) => e.exit(),
    }
}
