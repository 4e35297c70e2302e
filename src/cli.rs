//! The command line: `ftpsfs [OPTIONS] URL MOUNTPOINT`, parsed with clap and
//! turned into validated `Options`.
//!
//! `-o opt[,opt…]` accepts every long option by its name, so that mount(8) and
//! /etc/fstab can pass them. It works by rewriting each `-o name=value` into
//! `--name=value` placed before the real arguments and parsing again: clap's
//! own parsers validate both spellings, and since the last occurrence of an
//! option wins, a flag written on the command line beats the same option in
//! `-o`.
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::credentials::{self, Sources, PASSWORD_ENV};
use crate::fs::{FsConfig, Verify};
use crate::ftp::config::{parse_port_range, parse_sha256_hex, Keepalive, Timeouts};
use crate::ftp::identity;
use crate::ftp::socks::{self, Proxy, ProxyUrl, PROXY_PASSWORD_ENV};
use crate::ftp::{
    Credentials, DataMode, FtpConfig, Password, PoolSettings, Security, TlsOptions, TlsVersion,
};

const SESSIONS_MAX: u16 = 64;
const SECONDS_MAX: u64 = 365 * 24 * 3600;

#[derive(Parser)]
#[command(
    name = "ftpsfs",
    version,
    about = "Mount a directory of an FTPS server as a local filesystem",
    args_override_self = true,
    after_help = "URL forms:\n  \
        ftpes://[user@]host[:port][/path]  explicit TLS (AUTH TLS), port 21\n  \
        ftp://[user@]host[:port][/path]    the same; TLS is still required\n  \
        ftps://[user@]host[:port][/path]   implicit TLS, port 990\n\n\
        Password: URL, then FTPSFS_PASSWORD, --password-file, ~/.netrc (or --netrc-file),\n\
        then a prompt when stdin is a terminal.\n\n\
        Commands for a running mount (the mounting user only; `ftpsfs COMMAND --help`):\n  \
        ftpsfs status [--json] [--watch] MOUNTPOINT  sessions, transfers, uploads, cache\n  \
        ftpsfs refresh MOUNTPOINT [PATH]             forget cached listings and attributes\n  \
        ftpsfs sync MOUNTPOINT                       upload every pending change now\n\n\
        See ftpsfs(1)."
)]
pub struct Args {
    /// Server and directory to mount: ftpes://, ftp:// or ftps://[user@]host[:port][/path]
    #[arg(value_name = "URL")]
    url: String,

    /// Directory to mount on
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,

    /// Stay in the foreground instead of returning once the mount is live
    #[arg(short, long)]
    foreground: bool,

    /// Mount options, comma-separated: ro, rw, allow_other, uid=N, … and every long option by name
    #[arg(short = 'o', value_name = "OPT[,OPT...]", action = ArgAction::Append)]
    mount_options: Vec<String>,

    /// Read the password from the first line of FILE
    #[arg(long, value_name = "FILE", help_heading = "Login")]
    password_file: Option<PathBuf>,

    /// Read login and password from FILE instead of ~/.netrc
    #[arg(long, value_name = "FILE", help_heading = "Login")]
    netrc_file: Option<PathBuf>,

    /// Trust the certificates in PEM (a CA, or the server's own certificate) instead of the system roots
    #[arg(long, value_name = "PEM", help_heading = "TLS")]
    ca_file: Option<PathBuf>,

    /// Accept only the server certificate with this SHA-256 fingerprint (64 hex digits, colons allowed)
    #[arg(long, value_name = "HEX", value_parser = parse_fingerprint, help_heading = "TLS")]
    pin_sha256: Option<[u8; 32]>,

    /// Present this client certificate when the server asks for one (mutual TLS): PEM, the certificate first, then any intermediates
    #[arg(long, value_name = "PEM", help_heading = "TLS")]
    client_cert: Option<PathBuf>,

    /// The private key of --client-cert: PEM, not encrypted (PKCS#8, RSA or EC) [default: the --client-cert file, which may hold the key too]
    #[arg(
        long,
        value_name = "PEM",
        requires = "client_cert",
        help_heading = "TLS"
    )]
    client_key: Option<PathBuf>,

    /// Do not verify the server certificate (warns on every start)
    #[arg(long, conflicts_with_all = ["ca_file", "pin_sha256"], help_heading = "TLS")]
    insecure: bool,

    /// Use plain FTP without TLS: password and data in clear text (warns on every start)
    #[arg(
        long,
        conflicts_with_all = ["insecure", "ca_file", "pin_sha256", "tls_max", "client_cert"],
        help_heading = "TLS"
    )]
    insecure_plain_ftp: bool,

    /// After login, end TLS on the control connection (CCC) so that firewalls and NAT devices can read PASV/PORT; the password and all data stay encrypted, commands and file names do not (warns on every start)
    #[arg(long, conflicts_with = "insecure_plain_ftp", help_heading = "TLS")]
    clear_control_after_login: bool,

    /// Highest TLS version to offer
    #[arg(long, value_name = "VERSION", value_parser = tls_version_parser(), help_heading = "TLS")]
    tls_max: Option<TlsVersion>,

    /// Control sessions to the server at most; fewer once the server refuses more (421) [default: 4; 8 with --write-back async]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=SESSIONS_MAX as i64),
        help_heading = "Connection"
    )]
    sessions: Option<u16>,

    /// Extra sessions a large file read in order may be fetched on, in segments, besides its own; shared by all readers, added only while they make it faster (0: off) [default: sessions - 1, at most 3]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(0..SESSIONS_MAX as i64),
        help_heading = "Connection"
    )]
    read_streams: Option<u16>,

    /// Active mode: the server connects to us for data (EPRT, then PORT)
    #[arg(long, conflicts_with_all = ["trust_pasv_address", "no_epsv"], help_heading = "Connection")]
    active: bool,

    /// Local ports to listen on in active mode
    #[arg(
        long,
        value_name = "LOW-HIGH",
        value_parser = parse_active_ports,
        requires = "active",
        conflicts_with = "proxy",
        help_heading = "Connection"
    )]
    active_ports: Option<RangeInclusive<u16>>,

    /// Address to advertise in active mode (a NAT's public address)
    #[arg(
        long,
        value_name = "IP",
        requires = "active",
        help_heading = "Connection"
    )]
    active_address: Option<IpAddr>,

    /// Connect to the address in the PASV reply instead of the control connection's peer (implies PASV: an EPSV reply has no address)
    #[arg(long, help_heading = "Connection")]
    trust_pasv_address: bool,

    /// Use PASV only, without trying EPSV first
    #[arg(long, help_heading = "Connection")]
    no_epsv: bool,

    /// Connect through this SOCKS5 proxy, control and data: socks5://[USER@]HOST:PORT (names resolved here) or socks5h://… (names resolved by the proxy); the password comes from FTPSFS_PROXY_PASSWORD or --proxy-password-file
    #[arg(long, value_name = "URL", value_parser = socks::parse_proxy_url, help_heading = "Connection")]
    proxy: Option<ProxyUrl>,

    /// Read the proxy user's password from the first line of FILE
    #[arg(
        long,
        value_name = "FILE",
        requires = "proxy",
        help_heading = "Connection"
    )]
    proxy_password_file: Option<PathBuf>,

    /// Timeout for TCP connect and TLS handshakes
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Timeouts::default().connect), value_parser = positive_seconds, help_heading = "Connection")]
    connect_timeout: Seconds,

    /// Timeout for a reply on the control connection
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Timeouts::default().reply), value_parser = positive_seconds, help_heading = "Connection")]
    timeout: Seconds,

    /// A data connection with no byte moving for this long fails the transfer
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Timeouts::default().data_idle), value_parser = positive_seconds, help_heading = "Connection")]
    data_timeout: Seconds,

    /// Send NOOP on a session idle for this long, before the server or a firewall drops it (TCP keepalive probes too, at most 15 s apart)
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Keepalive::default().noop_after), value_parser = positive_seconds, help_heading = "Connection")]
    keepalive: Seconds,

    /// Keep file attributes cached this long (0: ask the server every time)
    #[arg(long, value_name = "SECS", default_value_t = Seconds(FsConfig::default().attr_ttl), value_parser = seconds, help_heading = "Cache")]
    attr_ttl: Seconds,

    /// Keep directory listings cached this long (0: list every time)
    #[arg(long, value_name = "SECS", default_value_t = Seconds(FsConfig::default().dir_ttl), value_parser = seconds, help_heading = "Cache")]
    dir_ttl: Seconds,

    /// Keep up to SIZE of file contents on disk under the cache directory, across opens and remounts (e.g. 512M, 10G; 0: off)
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize(crate::fs::ContentCache::DEFAULT_LIMIT), value_parser = parse_byte_size, help_heading = "Cache")]
    cache_size: ByteSize,

    /// Close-to-open consistency: each open asks the server for the file's size and time (one MLST, or SIZE and MDTM), so it reads what the server has now, whatever the TTLs; the kernel then keeps no attributes of its own
    #[arg(long, visible_alias = "cto", help_heading = "Cache")]
    revalidate_on_open: bool,

    /// Directory for the write spool [default: $XDG_CACHE_HOME/ftpsfs, /var/cache/ftpsfs for root]
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    cache_dir: Option<PathBuf>,

    /// Log more: -v info, -vv debug, -vvv trace (ignored when --log-level is given)
    #[arg(short, long, action = ArgAction::Count, help_heading = "Logging")]
    verbose: u8,

    /// Log messages of this level and above [default: warn]
    #[arg(long, value_name = "LEVEL", help_heading = "Logging")]
    log_level: Option<LogLevel>,

    /// Write the log to FILE
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    log_file: Option<PathBuf>,

    /// Mount read-only
    #[arg(long, help_heading = "Mount")]
    ro: bool,

    /// Let other users than the one mounting use the mount (see /etc/fuse.conf)
    #[arg(long, help_heading = "Mount")]
    allow_other: bool,

    /// Owner shown for every file [default: the user mounting]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    uid: Option<u32>,

    /// Group shown for every file [default: the group of the user mounting]
    #[arg(long, value_name = "N", help_heading = "Mount")]
    gid: Option<u32>,

    /// Bits cleared from the server's permissions, in octal (e.g. 022)
    #[arg(long, value_name = "OCTAL", value_parser = parse_umask, help_heading = "Mount")]
    umask: Option<u32>,

    /// Let the kernel check permissions against the mode, uid and gid shown
    #[arg(long, help_heading = "Mount")]
    default_permissions: bool,

    /// Resume a cut upload for this long without progress before it fails with EIO
    #[arg(long, value_name = "SECS", default_value_t = Seconds(FsConfig::default().retry_time), value_parser = seconds, help_heading = "Connection")]
    retry_time: Seconds,

    /// Upload files under their own names, not through a hidden temporary name renamed into place (for servers that refuse renames; found out by itself otherwise). A failed or cut upload can then leave a partial file
    #[arg(long, help_heading = "Mount")]
    write_in_place: bool,

    /// A big file changed a little: send only the changed ranges (REST + STOR) where the server writes them in place (auto), or always replace the file whole and atomically (never). A patch is not atomic: see doc/SEMANTICS.md
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Patch::Auto, help_heading = "Mount")]
    patch: Patch,

    /// Check each upload: none; size (the server's size must be the bytes sent); digest (also the digest of files of 1 MiB or more, where the server offers HASH, XSHA256, XSHA1 or XCRC; size elsewhere)
    #[arg(long, value_name = "HOW", default_value_t = Verify::Digest, value_parser = parse_verify, help_heading = "Mount")]
    verify: Verify,

    /// When close() returns: sync (once the server has the file); async (once the file is on local disk in the write-back spool, fsync'd and journaled; uploads run in the background and survive a crash: see doc/SEMANTICS.md)
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = WriteBack::Sync, help_heading = "Mount")]
    write_back: WriteBack,

    /// With --write-back async: bytes of files waiting for their upload on local disk; close() waits beyond it (e.g. 4G)
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize(crate::fs::DEFAULT_SPOOL_LIMIT), value_parser = parse_byte_size, help_heading = "Mount")]
    write_back_spool_size: ByteSize,
}

/// When close() returns (`--write-back`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteBack {
    Sync,
    Async,
}

/// When a changed file may be patched in place (`--patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Patch {
    Auto,
    Never,
}

fn parse_verify(value: &str) -> Result<Verify, String> {
    value.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Everything the rest of the program needs, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub ftp: FtpConfig,
    pub pool: PoolSettings,
    /// The URL's path, percent-decoded. Empty: the directory the server puts
    /// the user in after login. Relative: below that directory. Starting with
    /// `/` (written `%2F` in the URL): absolute. No trailing `/`.
    pub remote_root: Vec<u8>,
    /// Absolute, so that it survives going to the background.
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub mount: MountOptions,
    pub attr_ttl: Duration,
    pub dir_ttl: Duration,
    pub write_in_place: bool,
    pub revalidate_on_open: bool,
    /// Bytes of file contents kept on disk (0: no content cache).
    pub cache_size: u64,
    /// `--patch auto`: a big file changed a little may be patched in place.
    pub patch_in_place: bool,
    pub retry_time: Duration,
    pub verify: Verify,
    pub write_back: WriteBack,
    /// Bytes of the async write-back spool (see `WriteBackConfig`).
    pub write_back_spool_size: u64,
    /// Extra streams for segmented reads (see `FsConfig::read_streams`).
    pub read_streams: usize,
    /// Absolute.
    pub cache_dir: PathBuf,
    pub log: LogSettings,
    /// To print on every start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub read_only: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
    /// `None`: the user (or group) that mounts.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `None`: show the server's permissions as they are.
    pub umask: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub level: log::LevelFilter,
    /// Absolute; `None` logs to standard error.
    pub file: Option<PathBuf>,
}

/// Why the command line gave no `Options`. `--help` and `--version` arrive
/// here too, as `is_info()`, to be printed on standard output with exit code 0.
#[derive(Debug)]
pub struct CliError {
    kind: CliErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliErrorKind {
    /// `--help` or `--version`: the message is the text asked for.
    Info,
    /// Unknown option, bad value, missing argument (clap's own checks).
    Usage,
    /// A value that parses but cannot be used: a bad URL, a missing password.
    Invalid,
}

impl CliError {
    fn invalid(message: impl Into<String>) -> CliError {
        CliError {
            kind: CliErrorKind::Invalid,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> CliErrorKind {
        self.kind
    }

    pub fn is_info(&self) -> bool {
        self.kind == CliErrorKind::Info
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_info() {
            0
        } else {
            2
        }
    }

    /// Prints the message where it belongs and exits.
    pub fn exit(&self) -> ! {
        if self.is_info() {
            print!("{}", self.message);
        } else {
            eprintln!("ftpsfs: {}", self.message);
            if self.kind == CliErrorKind::Usage {
                eprintln!("Try 'ftpsfs --help' or 'man ftpsfs' for more information.");
            }
        }
        std::process::exit(self.exit_code())
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// What the parser reads from the outside world, so that tests can supply it.
pub trait Environment {
    fn var(&self, name: &str) -> Option<OsString>;
    fn is_root(&self) -> bool;
    /// Asks for a password; `None` when nobody can be asked (stdin is not a terminal).
    fn prompt_password(&self, question: &str) -> Option<io::Result<String>>;
}

/// The real process: its environment variables, effective uid and terminal.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn is_root(&self) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn prompt_password(&self, question: &str) -> Option<io::Result<String>> {
        credentials::prompt_on_terminal(question)
    }
}

/// Parses the process's command line (`std::env::args_os()`), reading the
/// password sources from the real environment.
pub fn parse_args<I, T>(args: I) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_args_with(args, &ProcessEnvironment)
}

pub fn parse_args_with<I, T>(args: I, env: &dyn Environment) -> Result<Options, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let args = parse_command_line(&argv)?;
    build_options(args, env)
}

fn parse_command_line(argv: &[OsString]) -> Result<Args, CliError> {
    let first_pass = try_parse(argv)?;
    if first_pass.mount_options.is_empty() {
        return Ok(first_pass);
    }
    let expanded = expand_mount_options(&first_pass.mount_options)?;
    let program = argv.first().cloned().unwrap_or_else(|| "ftpsfs".into());
    let rest = argv.iter().skip(1).cloned();
    let with_options: Vec<OsString> = std::iter::once(program)
        .chain(expanded)
        .chain(rest)
        .collect();
    try_parse(&with_options)
}

fn try_parse(argv: &[OsString]) -> Result<Args, CliError> {
    Args::try_parse_from(argv).map_err(|err| from_clap(&err, argv))
}

fn from_clap(err: &clap::Error, argv: &[OsString]) -> CliError {
    use clap::error::ErrorKind;
    let rendered = err.render().to_string();
    let (kind, message) = match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => (CliErrorKind::Info, rendered),
        _ => (CliErrorKind::Usage, clap_error_as_one_line(&rendered)),
    };
    CliError {
        kind,
        message: redact_url_passwords(&message, argv),
    }
}

/// clap writes "error: …", sometimes a list of indented lines, then a blank
/// line and a usage hint; the error itself becomes one line.
fn clap_error_as_one_line(rendered: &str) -> String {
    let text = rendered.strip_prefix("error: ").unwrap_or(rendered);
    text.lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A clap error may quote any argument, the URL included, also the URL of
/// an `-o name=URL` (which reaches clap as `--name=URL`).
fn redact_url_passwords(message: &str, argv: &[OsString]) -> String {
    argv.iter()
        .filter_map(|arg| arg.to_str())
        .flat_map(|arg| arg.split(','))
        .flat_map(|piece| [Some(piece), piece.split_once('=').map(|(_, value)| value)])
        .flatten()
        .filter_map(|arg| redact_url(arg).map(|redacted| (arg, redacted)))
        .fold(message.to_string(), |text, (arg, redacted)| {
            text.replace(arg, &redacted)
        })
}

/// `scheme://user:secret@host/…` → `scheme://user:****@host/…`; `None` when
/// there is no password to hide.
pub fn redact_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:****@{host}{path}"))
}

/// Mount options that mount(8), mount.fuse or fstab pass along and that mean
/// nothing to ftpsfs. `rw` is the default.
pub const IGNORED_MOUNT_OPTIONS: &[&str] = &[
    "rw", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "auto", "noauto", "user", "nouser",
    "users", "nofail", "_netdev",
];
pub const IGNORED_MOUNT_OPTION_PREFIXES: &[&str] = &["x-", "comment="];

/// The names `-o` accepts besides the ignored ones: every long option except
/// `--help` and `--version`, with `_` for `-`.
pub fn mount_option_names() -> Vec<String> {
    Args::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !matches!(*long, "help" | "version"))
        .map(|long| long.replace('-', "_"))
        .collect()
}

fn expand_mount_options(values: &[String]) -> Result<Vec<OsString>, CliError> {
    let command = Args::command();
    let mut expanded = Vec::new();
    for option in values.iter().flat_map(|v| v.split(',')) {
        if option.is_empty() || is_ignored_mount_option(option) {
            continue;
        }
        expanded.push(mount_option_as_flag(&command, option)?);
    }
    Ok(expanded)
}

fn is_ignored_mount_option(option: &str) -> bool {
    let name = option.split_once('=').map_or(option, |(name, _)| name);
    IGNORED_MOUNT_OPTIONS.contains(&name)
        || IGNORED_MOUNT_OPTION_PREFIXES
            .iter()
            .any(|prefix| option.starts_with(prefix))
}

fn mount_option_as_flag(command: &clap::Command, option: &str) -> Result<OsString, CliError> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    };
    let long = name.replace('_', "-");
    let arg = command
        .get_arguments()
        .find(|arg| {
            arg.get_long_and_visible_aliases()
                .is_some_and(|names| names.contains(&long.as_str()))
        })
        .filter(|_| !matches!(long.as_str(), "help" | "version"))
        .ok_or_else(|| CliError::invalid(format!("unknown mount option \"{name}\" in -o")))?;
    match (arg.get_action().takes_values(), value) {
        (true, Some(value)) => Ok(format!("--{long}={value}").into()),
        (true, None) => Err(CliError::invalid(format!(
            "mount option \"{name}\" in -o needs a value: {name}=VALUE"
        ))),
        (false, None) => Ok(format!("--{long}").into()),
        (false, Some(_)) => Err(CliError::invalid(format!(
            "mount option \"{name}\" in -o takes no value"
        ))),
    }
}

fn build_options(args: Args, env: &dyn Environment) -> Result<Options, CliError> {
    let url = FtpUrl::parse(&args.url)?;
    let security = security_for(&url, args.insecure_plain_ftp)?;
    let port = url.port.unwrap_or_else(|| security.default_port());
    let resolved = resolve_credentials(&args, &url, env)?;
    let mut warnings = security_warnings(&args);
    warnings.extend(resolved.warnings);

    let mut ftp = FtpConfig::new(url.host.clone(), port, resolved.credentials);
    ftp.security = security;
    ftp.tls = tls_options(&args, &mut warnings)?;
    ftp.timeouts = Timeouts {
        connect: args.connect_timeout.0,
        reply: args.timeout.0,
        data_idle: args.data_timeout.0,
    };
    ftp.data_mode = data_mode(&args);
    ftp.proxy = proxy(&args, env, &mut warnings)?;
    ftp.clear_control_after_login = args.clear_control_after_login;
    ftp.keepalive.noop_after = args.keepalive.0;
    // A firewall that forgets idle connections sooner than the default
    // probes come needs them sooner too: --keepalive sets both.
    ftp.keepalive.tcp_idle = ftp.keepalive.tcp_idle.min(args.keepalive.0);
    ftp.keepalive.tcp_interval = ftp.keepalive.tcp_interval.min(args.keepalive.0);
    Ok(Options {
        ftp,
        pool: PoolSettings {
            max_sessions: sessions(&args),
            ..PoolSettings::default()
        },
        remote_root: url.path,
        mountpoint: absolute(&args.mountpoint, "mountpoint")?,
        foreground: args.foreground,
        mount: mount_options(&args),
        write_in_place: args.write_in_place,
        revalidate_on_open: args.revalidate_on_open,
        cache_size: args.cache_size.0,
        patch_in_place: args.patch == Patch::Auto,
        retry_time: args.retry_time.0,
        verify: args.verify,
        write_back: args.write_back,
        write_back_spool_size: args.write_back_spool_size.0,
        read_streams: read_streams(&args),
        attr_ttl: args.attr_ttl.0,
        dir_ttl: args.dir_ttl.0,
        cache_dir: cache_dir(&args, env)?,
        log: log_settings(&args)?,
        warnings,
    })
}

/// Sessions unless told: async write-back uploads on every session at once,
/// and a session needs three round trips per small file however it is
/// driven (the data connection's TCP and TLS handshakes, then the bytes and
/// the 226; FTP allows one transfer per session), so async mode needs more
/// sessions than reads do to get well ahead of the default mode. A server
/// that caps sessions lower answers 421 and the pool keeps below that.
pub const ASYNC_DEFAULT_SESSIONS: usize = 8;

fn sessions(args: &Args) -> usize {
    match (args.sessions, args.write_back) {
        (Some(n), _) => usize::from(n),
        (None, WriteBack::Sync) => PoolSettings::default().max_sessions,
        (None, WriteBack::Async) => ASYNC_DEFAULT_SESSIONS,
    }
}

/// All sessions but the reader's own unless told, at most the default's
/// three: each stream holds a segment in memory (see `fs::segmented`), and
/// the sessions async mode adds are there for uploads.
fn read_streams(args: &Args) -> usize {
    args.read_streams.map_or_else(
        || {
            let default = PoolSettings::default().max_sessions - 1;
            sessions(args).saturating_sub(1).min(default)
        },
        usize::from,
    )
}

fn security_for(url: &FtpUrl, plain: bool) -> Result<Security, CliError> {
    match (url.security, plain) {
        (Security::Implicit, true) => Err(CliError::invalid(
            "--insecure-plain-ftp cannot be used with ftps:// (implicit TLS); use ftp://",
        )),
        (_, true) => Ok(Security::InsecurePlain),
        (security, false) => Ok(security),
    }
}

fn security_warnings(args: &Args) -> Vec<String> {
    let mut warnings = Vec::new();
    if args.insecure {
        warnings.push(
            "--insecure: the server's certificate is not verified; anyone on the network path \
             can read and change the traffic, the password included"
                .to_string(),
        );
    }
    if args.clear_control_after_login {
        warnings.push(
            "--clear-control-after-login: after login the control connection is in clear text; \
             commands, file names and replies can be read and changed on the network (the \
             password and the data stay encrypted)"
                .to_string(),
        );
    }
    if args.insecure_plain_ftp {
        warnings.push(
            "--insecure-plain-ftp: no TLS; the password and all data cross the network in clear text"
                .to_string(),
        );
    }
    warnings
}

fn resolve_credentials(
    args: &Args,
    url: &FtpUrl,
    env: &dyn Environment,
) -> Result<credentials::Resolved, CliError> {
    let home = env
        .var("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from);
    let prompt = |question: &str| env.prompt_password(question);
    let sources = Sources {
        host: &url.host,
        url_user: url.user.as_deref(),
        url_password: url.password.as_ref(),
        env_password: env.var(PASSWORD_ENV),
        password_file: args.password_file.as_deref(),
        netrc_file: args.netrc_file.as_deref(),
        home: home.as_deref(),
        prompt: &prompt,
    };
    credentials::resolve(&sources).map_err(CliError::invalid)
}

fn tls_options(args: &Args, warnings: &mut Vec<String>) -> Result<TlsOptions, CliError> {
    let ca_file = match &args.ca_file {
        Some(path) => Some(readable_file(path, "--ca-file")?),
        None => None,
    };
    // Read now, once: the daemon never looks at the files again.
    let client_identity = match &args.client_cert {
        Some(cert) => {
            let loaded =
                identity::load(cert, args.client_key.as_deref()).map_err(CliError::invalid)?;
            warnings.extend(loaded.warnings);
            Some(loaded.identity)
        }
        None => None,
    };
    Ok(TlsOptions {
        ca_file,
        pin_sha256: args.pin_sha256,
        insecure: args.insecure,
        max_version: args.tls_max,
        client_identity,
        ..TlsOptions::default()
    })
}

fn proxy(
    args: &Args,
    env: &dyn Environment,
    warnings: &mut Vec<String>,
) -> Result<Option<Proxy>, CliError> {
    let Some(url) = &args.proxy else {
        return Ok(None);
    };
    let auth = match &url.user {
        Some(user) => {
            let env_value = env.var(PROXY_PASSWORD_ENV);
            let password = credentials::proxy_password(
                user,
                env_value.as_deref(),
                args.proxy_password_file.as_deref(),
                warnings,
            )
            .map_err(CliError::invalid)?;
            Some(Credentials {
                user: user.clone(),
                password,
            })
        }
        None if args.proxy_password_file.is_some() => {
            return Err(CliError::invalid(
                "--proxy-password-file needs a proxy user: socks5://USER@host:port",
            ))
        }
        None => None,
    };
    Ok(Some(Proxy {
        host: url.host.clone(),
        port: url.port,
        remote_dns: url.remote_dns,
        auth,
    }))
}

fn readable_file(path: &Path, option: &str) -> Result<PathBuf, CliError> {
    std::fs::File::open(path).map_err(|err| {
        CliError::invalid(format!("cannot read {option} {}: {err}", path.display()))
    })?;
    absolute(path, option)
}

fn data_mode(args: &Args) -> DataMode {
    if args.active {
        DataMode::Active {
            ports: args.active_ports.clone(),
            advertise: args.active_address,
        }
    } else {
        DataMode::Passive {
            trust_pasv_address: args.trust_pasv_address,
            // Only a PASV reply has an address to trust.
            epsv: !args.no_epsv && !args.trust_pasv_address,
        }
    }
}

fn mount_options(args: &Args) -> MountOptions {
    MountOptions {
        read_only: args.ro,
        allow_other: args.allow_other,
        default_permissions: args.default_permissions,
        uid: args.uid,
        gid: args.gid,
        umask: args.umask,
    }
}

fn log_settings(args: &Args) -> Result<LogSettings, CliError> {
    let level = match args.log_level {
        Some(level) => level.filter(),
        None => level_for_verbosity(args.verbose),
    };
    let file = match &args.log_file {
        Some(path) => Some(absolute(path, "--log-file")?),
        None => None,
    };
    Ok(LogSettings { level, file })
}

fn level_for_verbosity(verbose: u8) -> log::LevelFilter {
    match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

fn cache_dir(args: &Args, env: &dyn Environment) -> Result<PathBuf, CliError> {
    match &args.cache_dir {
        Some(dir) => absolute(dir, "--cache-dir"),
        None => default_cache_dir(env),
    }
}

/// Root (a mount at boot) uses /var/cache; a user follows the XDG base
/// directory rules, which ignore a relative `XDG_CACHE_HOME`.
pub fn default_cache_dir(env: &dyn Environment) -> Result<PathBuf, CliError> {
    if env.is_root() {
        return Ok(PathBuf::from("/var/cache/ftpsfs"));
    }
    let absolute_var = |name: &str| {
        env.var(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(xdg) = absolute_var("XDG_CACHE_HOME") {
        return Ok(xdg.join("ftpsfs"));
    }
    if let Some(home) = absolute_var("HOME") {
        return Ok(home.join(".cache").join("ftpsfs"));
    }
    Err(CliError::invalid(
        "cannot choose a cache directory: neither XDG_CACHE_HOME nor HOME is set; use --cache-dir DIR",
    ))
}

/// Relative paths would break once the daemon changes to `/`.
fn absolute(path: &Path, what: &str) -> Result<PathBuf, CliError> {
    if path.as_os_str().is_empty() {
        return Err(CliError::invalid(format!("{what} is empty")));
    }
    std::path::absolute(path).map_err(|err| {
        CliError::invalid(format!("cannot resolve {what} {}: {err}", path.display()))
    })
}

/// The parts of an `ftpes://`, `ftp://` or `ftps://` URL.
#[derive(Debug, Clone)]
pub struct FtpUrl {
    /// `Explicit` for ftpes:// and ftp://, `Implicit` for ftps://.
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<Password>,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: Option<u16>,
    /// See `Options::remote_root`.
    pub path: Vec<u8>,
}

impl FtpUrl {
    pub fn parse(url: &str) -> Result<FtpUrl, CliError> {
        let shown = redact_url(url).unwrap_or_else(|| url.to_string());
        let invalid =
            |reason: String| CliError::invalid(format!("invalid URL \"{shown}\": {reason}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("expected ftpes://[user@]host[:port][/path]".into()))?;
        let security = security_for_scheme(scheme).ok_or_else(|| {
            invalid(format!(
                "unsupported scheme \"{scheme}\"; use ftpes://, ftp:// or ftps://"
            ))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash + 1..]),
            None => (rest, ""),
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (user, password) = parse_userinfo(userinfo).map_err(&invalid)?;
        let (host, port) = parse_host_port(host_port).map_err(&invalid)?;
        Ok(FtpUrl {
            security,
            user,
            password,
            host,
            port,
            path: parse_path(path).map_err(&invalid)?,
        })
    }
}

fn security_for_scheme(scheme: &str) -> Option<Security> {
    match scheme.to_ascii_lowercase().as_str() {
        "ftpes" | "ftp" => Some(Security::Explicit),
        "ftps" => Some(Security::Implicit),
        _ => None,
    }
}

type UserInfo = (Option<String>, Option<Password>);

fn parse_userinfo(userinfo: Option<&str>) -> Result<UserInfo, String> {
    let Some(userinfo) = userinfo else {
        return Ok((None, None));
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    let user = decode_text(user, "user name")?;
    if user.is_empty() {
        return Err("empty user name before '@'".into());
    }
    if user.contains(['\r', '\n', '\0']) {
        return Err("the user name contains a line break or NUL".into());
    }
    let password = match password {
        Some(password) => Some(Password::new(decode_text(password, "password")?)),
        None => None,
    };
    Ok((Some(user), password))
}

fn parse_host_port(host_port: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => split_bracketed_host(bracketed)?,
        None => split_plain_host(host_port)?,
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_string(), port))
}

fn split_bracketed_host(bracketed: &str) -> Result<(&str, Option<&str>), String> {
    let (host, after) = bracketed
        .split_once(']')
        .ok_or("missing ']' after the IPv6 address")?;
    host.parse::<Ipv6Addr>()
        .map_err(|_| format!("invalid IPv6 address \"{host}\""))?;
    match after {
        "" => Ok((host, None)),
        _ => match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("expected ':PORT' after ']'".into()),
        },
    }
}

fn split_plain_host(host_port: &str) -> Result<(&str, Option<&str>), String> {
    if host_port.matches(':').count() > 1 {
        return Err("an IPv6 address goes in brackets: ftpes://[::1]:21/".into());
    }
    let (host, port) = match host_port.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    if host.is_empty() {
        return Err("no host name".into());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if !host.chars().all(allowed) {
        return Err(format!(
            "invalid host name \"{host}\" (an international name goes in its xn-- form)"
        ));
    }
    Ok((host, port))
}

fn parse_port(port: &str) -> Result<u16, String> {
    let invalid = || format!("invalid port \"{port}\": expected 1-65535");
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid()),
        Ok(port) => Ok(port),
    }
}

fn parse_path(path: &str) -> Result<Vec<u8>, String> {
    let mut decoded = crate::percent::decode(path)?;
    if decoded.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err("the path contains a line break or NUL".into());
    }
    while decoded.len() > 1 && decoded.ends_with(b"/") {
        decoded.pop();
    }
    Ok(decoded)
}

fn decode_text(text: &str, what: &str) -> Result<String, String> {
    String::from_utf8(crate::percent::decode(text)?)
        .map_err(|_| format!("the {what} is not valid UTF-8"))
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    parse_sha256_hex(text).map_err(|_| "expected 64 hex digits, colons allowed".to_string())
}

fn parse_active_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
    parse_port_range(text)
        .map_err(|_| "expected LOW-HIGH with 0 < LOW <= HIGH <= 65535".to_string())
}

fn tls_version_parser() -> impl TypedValueParser<Value = TlsVersion> {
    PossibleValuesParser::new(["1.2", "1.3"]).map(|version| match version.as_str() {
        "1.2" => TlsVersion::Tls12,
        _ => TlsVersion::Tls13,
    })
}

fn parse_umask(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if mask <= 0o777 && !digits.is_empty() => Ok(mask),
        _ => Err("expected an octal mask from 000 to 777, such as 022".to_string()),
    }
}

/// A duration given in whole seconds on the command line. Its own type so
/// that `--help` shows the defaults of the library's `Default` impls
/// (`Timeouts`, `Keepalive`, `FsConfig`), the one place they are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs())
    }
}

fn seconds(text: &str) -> Result<Seconds, String> {
    seconds_from(text, 0)
}

fn positive_seconds(text: &str) -> Result<Seconds, String> {
    seconds_from(text, 1)
}

fn seconds_from(text: &str, min: u64) -> Result<Seconds, String> {
    match text.parse::<u64>() {
        Ok(secs) if (min..=SECONDS_MAX).contains(&secs) => Ok(Seconds(Duration::from_secs(secs))),
        _ => Err(format!(
            "expected whole seconds from {min} to {SECONDS_MAX}"
        )),
    }
}

/// A size on the command line: bytes, or with K, M, G or T (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSize(u64);

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut n = self.0;
        for unit in ["", "K", "M", "G"] {
            if !n.is_multiple_of(1024) || n == 0 {
                return write!(f, "{n}{unit}");
            }
            n /= 1024;
        }
        write!(f, "{n}T")
    }
}

fn parse_byte_size(text: &str) -> Result<ByteSize, String> {
    let invalid = || format!("expected a size such as 512M or 10G, not {text:?}");
    let trimmed = text.trim_end_matches(['B', 'b', 'i']);
    let (digits, shift) = match trimmed.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(invalid()),
            };
            (&trimmed[..at], shift)
        }
        _ => (trimmed, 0),
    };
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    n.checked_mul(1u64 << shift)
        .map(ByteSize)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("0"), Ok(ByteSize(0)));
        assert_eq!(parse_byte_size("4096"), Ok(ByteSize(4096)));
        assert_eq!(parse_byte_size("512M"), Ok(ByteSize(512 << 20)));
        assert_eq!(parse_byte_size("10G"), Ok(ByteSize(10 << 30)));
        assert_eq!(parse_byte_size("2GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(parse_byte_size("1k"), Ok(ByteSize(1024)));
        for bad in ["", "M", "1X", "-1G", "1.5G", "99999999999T", "G1"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
        assert_eq!(ByteSize(1 << 30).to_string(), "1G");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        assert_eq!(
            parse_byte_size(&ByteSize(3 << 20).to_string()),
            Ok(ByteSize(3 << 20))
        );
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("ftpes://u:p@ss@h:21/x:y@z").as_deref(),
            Some("ftpes://u:****@h:21/x:y@z")
        );
        assert_eq!(redact_url("ftpes://u@h/a:b@c"), None);
        assert_eq!(redact_url("ftpes://h"), None);
    }

    #[test]
    fn umask_is_octal() {
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert_eq!(parse_umask("0o077"), Ok(0o77));
        assert_eq!(parse_umask("0"), Ok(0));
        assert!(parse_umask("8").is_err());
        assert!(parse_umask("1000").is_err());
        assert!(parse_umask("").is_err());
        assert!(parse_umask("0o").is_err());
    }

    /// The core cannot see the pool, so its default of extra read streams
    /// is a number: it must stay "all sessions but one" of the default.
    #[test]
    fn the_cores_default_read_streams_follow_the_default_sessions() {
        assert_eq!(
            FsConfig::default().read_streams,
            PoolSettings::default().max_sessions - 1
        );
    }

    #[test]
    fn seconds_have_bounds() {
        assert_eq!(seconds("0"), Ok(Seconds(Duration::ZERO)));
        assert!(positive_seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds(&(SECONDS_MAX + 1).to_string()).is_err());
    }

    #[test]
    fn ignored_mount_options_match_by_name_or_prefix() {
        for option in [
            "_netdev",
            "user=bob",
            "x-systemd.automount",
            "comment=x",
            "rw",
        ] {
            assert!(is_ignored_mount_option(option), "{option}");
        }
        for option in ["ro", "x_systemd", "netdev"] {
            assert!(!is_ignored_mount_option(option), "{option}");
        }
    }
}
