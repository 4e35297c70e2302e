//! `ftpsfs status|refresh|sync MOUNTPOINT …`: the command lines that talk to
//! a running mount, parsed apart from the mount's own (`cli`), whose first
//! argument is a URL.
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::client::{self, REPLY_TIMEOUT};
use super::protocol::{ReplyLine, Request};
use super::runtime;

/// The first arguments that select a control command instead of a mount.
pub const NAMES: [&str; 3] = ["status", "refresh", "sync"];

/// Whether `args` (program name first) run a control command.
pub fn is_control_command(args: &[OsString]) -> bool {
    args.get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| NAMES.contains(&a))
}

#[derive(Parser, Debug)]
#[command(name = "ftpsfs", version, about = "Talk to a running ftpsfs mount")]
struct ControlArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug, PartialEq, Eq)]
enum Command {
    /// What the mount is doing: sessions, transfers, pending uploads, cache
    Status {
        /// Print JSON, for scripts
        #[arg(long)]
        json: bool,
        /// Show the status again every second, until interrupted
        #[arg(long)]
        watch: bool,
        mountpoint: PathBuf,
    },
    /// Forget cached listings and attributes, so that changes made by
    /// other clients show at once
    Refresh {
        mountpoint: PathBuf,
        /// A directory or file in the mount (absolute, or relative to the
        /// mount's root); the whole mount without one
        path: Option<PathBuf>,
    },
    /// Wait until every pending change is on the server; non-zero exit
    /// status if any upload failed
    Sync { mountpoint: PathBuf },
}

/// Runs a control command; the exit status tells whether it worked.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let parsed = match ControlArgs::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    match execute(parsed.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ftpsfs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Status {
            json,
            watch,
            mountpoint,
        } => {
            let socket = socket_of(&mountpoint)?;
            let request = Request::Status { json };
            if !watch {
                return print_reply(&socket, &request, Some(REPLY_TIMEOUT));
            }
            let terminal = std::io::stdout().is_terminal();
            loop {
                if terminal {
                    // Home, then clear: each view replaces the last.
                    print!("\x1b[H\x1b[2J");
                }
                print_reply(&socket, &request, Some(REPLY_TIMEOUT))?;
                if !terminal {
                    println!();
                }
                let _ = std::io::stdout().flush();
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Command::Refresh { mountpoint, path } => {
            let canonical = canonical(&mountpoint)?;
            let relative = match path {
                Some(path) => path_in_mount(&canonical, &path)?,
                None => Vec::new(),
            };
            let socket = socket_at(&canonical)?;
            print_reply(
                &socket,
                &Request::Refresh { path: relative },
                Some(REPLY_TIMEOUT),
            )
        }
        Command::Sync { mountpoint } => {
            let socket = socket_of(&mountpoint)?;
            let terminal = std::io::stderr().is_terminal();
            let mut shown = false;
            let result = client::ask(&socket, &Request::Sync, None, |line| match line {
                ReplyLine::Progress(text) if terminal => {
                    // One line, rewritten in place.
                    eprint!("\r\x1b[K{text}");
                    shown = true;
                }
                ReplyLine::Data(text) => {
                    if shown {
                        eprintln!();
                        shown = false;
                    }
                    println!("{text}");
                }
                _ => {}
            });
            if shown {
                eprintln!();
            }
            result
        }
    }
}

fn print_reply(socket: &Path, request: &Request, timeout: Option<Duration>) -> Result<(), String> {
    client::ask(socket, request, timeout, |line| {
        if let ReplyLine::Data(text) = line {
            println!("{text}");
        }
    })
}

fn canonical(mountpoint: &Path) -> Result<PathBuf, String> {
    runtime::canonical_mountpoint(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))
}

fn socket_at(canonical: &Path) -> Result<PathBuf, String> {
    let socket = runtime::socket_path(&runtime::default_runtime_dir(), canonical)
        .map_err(|e| e.to_string())?;
    if !socket.exists() && !socket.parent().is_some_and(Path::exists) {
        return Err(format!(
            "no ftpsfs mount of this user on {} (no runtime directory {})",
            canonical.display(),
            runtime::default_runtime_dir().display()
        ));
    }
    Ok(socket)
}

fn socket_of(mountpoint: &Path) -> Result<PathBuf, String> {
    let canonical = canonical(mountpoint)?;
    socket_at(&canonical).map_err(|e| format!("{}: {e}", canonical.display()))
}

/// `path` as the mount's store sees it: relative to the mount's root. An
/// absolute path must lie inside the mount; a relative one is taken from
/// the mount's root (not the current directory), so `refresh /mnt/x docs`
/// means /mnt/x/docs wherever the command runs.
fn path_in_mount(mountpoint: &Path, path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    let relative = if path.is_absolute() {
        path.strip_prefix(mountpoint).map_err(|_| {
            format!(
                "{} is not inside the mount {}",
                path.display(),
                mountpoint.display()
            )
        })?
    } else {
        path
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => parts.push(name.as_bytes()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts
                    .pop()
                    .ok_or_else(|| format!("{} leads out of the mount", path.display()))?;
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        ControlArgs::try_parse_from(args).map(|a| a.command)
    }

    #[test]
    fn the_three_commands_parse() {
        assert_eq!(
            parse(&["ftpsfs", "status", "--json", "/mnt"]).unwrap(),
            Command::Status {
                json: true,
                watch: false,
                mountpoint: "/mnt".into()
            }
        );
        assert_eq!(
            parse(&["ftpsfs", "refresh", "/mnt", "docs"]).unwrap(),
            Command::Refresh {
                mountpoint: "/mnt".into(),
                path: Some("docs".into())
            }
        );
        assert_eq!(
            parse(&["ftpsfs", "sync", "/mnt"]).unwrap(),
            Command::Sync {
                mountpoint: "/mnt".into()
            }
        );
        assert!(parse(&["ftpsfs", "sync"]).is_err());
        assert!(parse(&["ftpsfs", "status", "/a", "/b"]).is_err());
    }

    #[test]
    fn only_the_command_names_select_the_control_commands() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(is_control_command(&args(&["ftpsfs", "status", "/mnt"])));
        assert!(is_control_command(&args(&["ftpsfs", "sync", "/mnt"])));
        assert!(!is_control_command(&args(&["ftpsfs", "ftpes://h", "/mnt"])));
        assert!(!is_control_command(&args(&["ftpsfs", "--help"])));
        assert!(!is_control_command(&args(&["ftpsfs"])));
    }

    #[test]
    fn refresh_paths_are_taken_from_the_mounts_root() {
        let m = Path::new("/mnt/x");
        assert_eq!(path_in_mount(m, Path::new("/mnt/x/a/b")).unwrap(), b"a/b");
        assert_eq!(path_in_mount(m, Path::new("/mnt/x")).unwrap(), b"");
        assert_eq!(path_in_mount(m, Path::new("a/./b/../c")).unwrap(), b"a/c");
        assert_eq!(path_in_mount(m, Path::new("a b/")).unwrap(), b"a b");
        assert!(path_in_mount(m, Path::new("/mnt/y")).is_err());
        assert!(path_in_mount(m, Path::new("../etc")).is_err());
    }
}
