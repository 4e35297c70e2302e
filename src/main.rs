//! The `ftpsfs` command. The mount (FUSE) is built on the protocol client in
//! `ftpsfs::ftp`; until it lands, the command says so instead of pretending.
use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "ftpsfs {}: the FUSE mount is not part of this build yet; \
         this build contains the FTPS protocol client (library `ftpsfs::ftp`) and its tests",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
