//! The `ftpsfs` command: parse the command line, then mount and serve, or
//! talk to a running mount (`ftpsfs status|refresh|sync`).
use std::process::ExitCode;

fn main() -> ExitCode {
    // First, before any thread exists: see `malloc` (issue 12).
    ftpsfs::malloc::share_one_arena();
    // Before the password is read: this process holds it, and file
    // contents in its spool, for as long as the mount lives. Not dumpable:
    // no core dump of it, and no other process of the user may ptrace it
    // or read its /proc memory and environment.
    // SAFETY: prctl(2) with PR_SET_DUMPABLE and a plain integer argument
    // touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let args: Vec<_> = std::env::args_os().collect();
    if ftpsfs::control::command::is_control_command(&args) {
        return ftpsfs::control::command::run(args);
    }
    match ftpsfs::cli::parse_args(args) {
        Ok(options) => ftpsfs::run::run(options),
        Err(e) => e.exit(),
    }
}
