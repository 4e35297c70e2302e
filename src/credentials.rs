//! Where the user name and password come from: the URL, `FTPSFS_PASSWORD`,
//! `--password-file`, a netrc file, or a prompt on the terminal, tried in that
//! order. The sources are handed in as values (`Sources`), so tests need
//! neither the process environment nor a terminal.
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ftp::{Credentials, Password};

/// The user name used when neither the URL nor a netrc entry names one.
pub const ANONYMOUS_USER: &str = "anonymous";
/// Sent as the password of an anonymous login when no source gives one.
pub const ANONYMOUS_PASSWORD: &str = "anonymous@";
pub const PASSWORD_ENV: &str = "FTPSFS_PASSWORD";

/// Asks a person for the password; `None` when nobody can be asked.
pub type Prompt<'a> = &'a dyn Fn(&str) -> Option<io::Result<String>>;

pub struct Sources<'a> {
    pub host: &'a str,
    pub url_user: Option<&'a str>,
    pub url_password: Option<&'a Password>,
    /// The value of `FTPSFS_PASSWORD`; unset and empty both mean "not given".
    pub env_password: Option<std::ffi::OsString>,
    pub password_file: Option<&'a Path>,
    /// `--netrc-file`: must be readable when given.
    pub netrc_file: Option<&'a Path>,
    /// `$HOME`, for `~/.netrc`, which may be missing.
    pub home: Option<&'a Path>,
    pub prompt: Prompt<'a>,
}

#[derive(Debug)]
pub struct Resolved {
    pub credentials: Credentials,
    /// To be printed on every start (a password in the URL, a group-readable file).
    pub warnings: Vec<String>,
}

pub fn resolve(sources: &Sources) -> Result<Resolved, String> {
    let mut warnings = Vec::new();
    let netrc = if needs_netrc(sources) {
        load_netrc(sources)?
    } else {
        None
    };
    let user = choose_user(sources, netrc.as_ref());
    let password = choose_password(sources, &user, netrc.as_ref(), &mut warnings)?;
    Ok(Resolved {
        credentials: Credentials { user, password },
        warnings,
    })
}

fn needs_netrc(sources: &Sources) -> bool {
    let password_given = sources.url_password.is_some()
        || env_password_given(sources)
        || sources.password_file.is_some();
    sources.netrc_file.is_some() || sources.url_user.is_none() || !password_given
}

fn env_password_given(sources: &Sources) -> bool {
    sources.env_password.as_ref().is_some_and(|v| !v.is_empty())
}

fn choose_user(sources: &Sources, netrc: Option<&NetrcFile>) -> String {
    if let Some(user) = sources.url_user {
        return user.to_string();
    }
    netrc
        .and_then(|file| file.netrc.find(sources.host, None))
        .and_then(|entry| entry.login.clone())
        .unwrap_or_else(|| ANONYMOUS_USER.to_string())
}

fn choose_password(
    sources: &Sources,
    user: &str,
    netrc: Option<&NetrcFile>,
    warnings: &mut Vec<String>,
) -> Result<Password, String> {
    if let Some(password) = sources.url_password {
        warnings.push(
            "the password in the URL can be seen by every user of this machine (ps, /proc); \
             use FTPSFS_PASSWORD, --password-file or ~/.netrc instead"
                .to_string(),
        );
        return checked(password.expose().to_string(), "the URL");
    }
    if let Some(value) = sources.env_password.as_ref().filter(|v| !v.is_empty()) {
        let text = value
            .to_str()
            .ok_or_else(|| format!("{PASSWORD_ENV} is not valid UTF-8"))?;
        return checked(text.to_string(), PASSWORD_ENV);
    }
    if let Some(path) = sources.password_file {
        return read_password_file(path, warnings);
    }
    if let Some(password) = netrc_password(sources.host, user, netrc, warnings)? {
        return Ok(password);
    }
    if user == ANONYMOUS_USER {
        return Ok(Password::new(ANONYMOUS_PASSWORD));
    }
    prompt_for_password(sources, user)
}

fn netrc_password(
    host: &str,
    user: &str,
    netrc: Option<&NetrcFile>,
    warnings: &mut Vec<String>,
) -> Result<Option<Password>, String> {
    let Some(file) = netrc else { return Ok(None) };
    let Some(password) = file
        .netrc
        .find(host, Some(user))
        .and_then(|entry| entry.password.as_ref())
    else {
        return Ok(None);
    };
    check_private(&file.path, file.mode, "netrc file", warnings)?;
    let source = format!("netrc file {}", file.path.display());
    checked(password.expose().to_string(), &source).map(Some)
}

fn prompt_for_password(sources: &Sources, user: &str) -> Result<Password, String> {
    let question = format!("Password for {user}@{}: ", sources.host);
    match (sources.prompt)(&question) {
        Some(Ok(typed)) => checked(typed, "the terminal"),
        Some(Err(err)) => Err(format!("no password: {err}")),
        None => Err(format!(
            "no password for {user}@{}: set {PASSWORD_ENV}, use --password-file or ~/.netrc, \
             or run ftpsfs from a terminal to be asked",
            sources.host
        )),
    }
}

/// The SOCKS5 proxy's password, for a proxy user named in `--proxy`:
/// `FTPSFS_PROXY_PASSWORD` first, then `--proxy-password-file` (never the
/// command line, which every user can read). RFC 1929 carries at most 255
/// bytes.
pub fn proxy_password(
    user: &str,
    env_value: Option<&std::ffi::OsStr>,
    file: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Password, String> {
    use crate::ftp::socks::PROXY_PASSWORD_ENV;
    let password = if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let text = value
            .to_str()
            .ok_or_else(|| format!("{PROXY_PASSWORD_ENV} is not valid UTF-8"))?;
        Password::new(text)
    } else if let Some(path) = file {
        read_password_file(path, warnings)?
    } else {
        return Err(format!(
            "no password for the proxy user {user}: set {PROXY_PASSWORD_ENV} or use              --proxy-password-file"
        ));
    };
    if password.expose().len() > 255 {
        return Err("the proxy password is longer than 255 bytes, which SOCKS5 cannot send".into());
    }
    Ok(password)
}

/// FTP sends the password in a `PASS` line: a line break would end it early
/// and let the rest be read as another command.
fn checked(secret: String, source: &str) -> Result<Password, String> {
    if secret.contains(['\r', '\n', '\0']) {
        return Err(format!(
            "the password from {source} contains a line break or NUL, which FTP cannot send"
        ));
    }
    Ok(Password::new(secret))
}

fn read_password_file(path: &Path, warnings: &mut Vec<String>) -> Result<Password, String> {
    let cannot_read =
        |err: io::Error| format!("cannot read password file {}: {err}", path.display());
    let mode = fs::metadata(path)
        .map_err(cannot_read)?
        .permissions()
        .mode();
    check_private(path, mode, "password file", warnings)?;
    let bytes = fs::read(path).map_err(cannot_read)?;
    let first_line = first_line(&bytes);
    let text = std::str::from_utf8(first_line)
        .map_err(|_| format!("password file {} is not valid UTF-8", path.display()))?;
    checked(
        text.to_string(),
        &format!("password file {}", path.display()),
    )
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A file holding a password must not be readable by every user; readable by
/// its group is allowed (a deliberate setting for a service group) but warned.
fn check_private(
    path: &Path,
    mode: u32,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let mode = mode & 0o777;
    if mode & 0o004 != 0 {
        return Err(format!(
            "{what} {} is readable by every user (mode {mode:03o}); run chmod 600 on it",
            path.display()
        ));
    }
    if mode & 0o040 != 0 {
        warnings.push(format!(
            "{what} {} is readable by its group (mode {mode:03o})",
            path.display()
        ));
    }
    Ok(())
}

struct NetrcFile {
    path: PathBuf,
    mode: u32,
    netrc: Netrc,
}

fn load_netrc(sources: &Sources) -> Result<Option<NetrcFile>, String> {
    if let Some(path) = sources.netrc_file {
        return read_netrc(path).map(Some);
    }
    let Some(path) = sources.home.map(|home| home.join(".netrc")) else {
        return Ok(None);
    };
    match read_netrc(&path) {
        Ok(file) => Ok(Some(file)),
        Err(_) if !path.exists() => Ok(None),
        Err(err) => Err(err),
    }
}

fn read_netrc(path: &Path) -> Result<NetrcFile, String> {
    let cannot_read = |err: io::Error| format!("cannot read netrc file {}: {err}", path.display());
    let mode = fs::metadata(path)
        .map_err(cannot_read)?
        .permissions()
        .mode();
    let bytes = fs::read(path).map_err(cannot_read)?;
    Ok(NetrcFile {
        path: path.to_path_buf(),
        mode,
        netrc: Netrc::parse(&String::from_utf8_lossy(&bytes)),
    })
}

/// The parsed contents of a `.netrc` file.
#[derive(Debug, Clone, Default)]
pub struct Netrc {
    pub entries: Vec<NetrcEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct NetrcEntry {
    /// `None` for the `default` entry.
    pub machine: Option<String>,
    pub login: Option<String>,
    pub password: Option<Password>,
}

impl Netrc {
    /// Reads `machine`, `default`, `login` and `password` tokens, which may be
    /// spread over lines; skips `account` values, `macdef` bodies (up to the
    /// next empty line) and lines starting with `#`.
    pub fn parse(text: &str) -> Netrc {
        let mut entries: Vec<NetrcEntry> = Vec::new();
        let mut tokens = netrc_tokens(text).into_iter();
        while let Some(token) = tokens.next() {
            match token {
                "machine" => entries.push(NetrcEntry {
                    machine: tokens.next().map(str::to_string),
                    ..NetrcEntry::default()
                }),
                "default" => entries.push(NetrcEntry::default()),
                "login" | "password" | "account" => {
                    let value = tokens.next();
                    if let (Some(entry), Some(value)) = (entries.last_mut(), value) {
                        set_netrc_field(entry, token, value);
                    }
                }
                _ => {}
            }
        }
        Netrc { entries }
    }

    /// The first `machine` entry for `host` (ignoring case) whose login is
    /// `user` or unset, else the first such `default` entry.
    pub fn find(&self, host: &str, user: Option<&str>) -> Option<&NetrcEntry> {
        let login_fits = |entry: &&NetrcEntry| match (user, &entry.login) {
            (Some(user), Some(login)) => user == login,
            _ => true,
        };
        let for_host = |entry: &&NetrcEntry| {
            entry
                .machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
        };
        let is_default = |entry: &&NetrcEntry| entry.machine.is_none();
        self.entries
            .iter()
            .filter(login_fits)
            .find(for_host)
            .or_else(|| self.entries.iter().filter(login_fits).find(is_default))
    }
}

fn set_netrc_field(entry: &mut NetrcEntry, field: &str, value: &str) {
    match field {
        "login" => entry.login = Some(value.to_string()),
        "password" => entry.password = Some(Password::new(value)),
        _ => {}
    }
}

fn netrc_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut in_macro = false;
    for line in text.lines() {
        if in_macro {
            in_macro = !line.trim().is_empty();
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in line.split_whitespace() {
            if word == "macdef" {
                in_macro = true;
                break;
            }
            tokens.push(word);
        }
    }
    tokens
}

/// Asks for the password on the terminal without echo; `None` when stdin is
/// not a terminal (a script, systemd, mount at boot).
pub fn prompt_on_terminal(question: &str) -> Option<io::Result<String>> {
    if !io::stdin().is_terminal() {
        return None;
    }
    Some(read_password_from_terminal(question))
}

fn read_password_from_terminal(question: &str) -> io::Result<String> {
    let mut stderr = io::stderr();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let typed = {
        let _quiet = QuietTerminal::enter(libc::STDIN_FILENO)?;
        read_typed_password(&mut io::stdin().lock())
    };
    // The Enter key was not echoed either.
    let _ = writeln!(stderr);
    String::from_utf8(typed?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the password typed is not valid UTF-8",
        )
    })
}

const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const DELETE: u8 = 0x7f;

/// Reads keys up to Enter with the line editing a password prompt needs.
/// Ctrl-C arrives here as a byte because the terminal's signals are off while
/// prompting: a SIGINT would end the process with echo still off.
pub fn read_typed_password(keys: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut key = [0u8; 1];
    loop {
        if keys.read(&mut key)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no password typed",
            ));
        }
        match key[0] {
            b'\n' | b'\r' => return Ok(line),
            CTRL_C => return Err(io::Error::other("password prompt cancelled")),
            CTRL_D if line.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "no password typed",
                ))
            }
            BACKSPACE | DELETE => remove_last_char(&mut line),
            CTRL_U => line.clear(),
            byte => line.push(byte),
        }
    }
}

/// Removes the last UTF-8 character, not just its last byte.
fn remove_last_char(line: &mut Vec<u8>) {
    while let Some(byte) = line.pop() {
        let is_continuation_byte = byte & 0b1100_0000 == 0b1000_0000;
        if !is_continuation_byte {
            break;
        }
    }
}

/// Echo, line buffering and signal keys off while it lives; the saved mode
/// is put back on drop, so every return path (and a panic) restores it.
struct QuietTerminal {
    fd: libc::c_int,
    saved: libc::termios,
}

impl QuietTerminal {
    fn enter(fd: libc::c_int) -> io::Result<QuietTerminal> {
        // SAFETY: termios is a plain C struct of integers, for which all-zero
        // is a valid value; tcgetattr overwrites it before it is read.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable termios; tcgetattr only writes
        // into it and reports a bad or non-terminal fd as -1.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ICANON | libc::ISIG);
        quiet.c_cc[libc::VMIN] = 1;
        quiet.c_cc[libc::VTIME] = 0;
        // SAFETY: `quiet` is a fully initialised termios read by tcsetattr;
        // errors are reported as -1.
        if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(QuietTerminal { fd, saved })
    }
}

impl Drop for QuietTerminal {
    fn drop(&mut self) {
        // SAFETY: `saved` is the termios tcgetattr filled in for this fd.
        // Nothing useful can be done if restoring fails, so the result is ignored.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_password_supports_backspace_and_kill_line() {
        let typed = |keys: &[u8]| read_typed_password(&mut &keys[..]);
        assert_eq!(typed(b"secret\n").unwrap(), b"secret");
        assert_eq!(typed(b"secrex\x7ft\r").unwrap(), b"secret");
        assert_eq!(typed("pä\x08ss\n".as_bytes()).unwrap(), b"pss");
        assert_eq!(typed(b"junk\x15ok\n").unwrap(), b"ok");
        assert_eq!(typed(b"\n").unwrap(), b"");
    }

    #[test]
    fn typed_password_can_be_cancelled() {
        let typed = |keys: &[u8]| read_typed_password(&mut &keys[..]);
        assert!(typed(b"sec\x03ret\n").is_err());
        assert!(typed(b"\x04").is_err());
        assert!(typed(b"no enter").is_err());
    }

    #[test]
    fn first_line_strips_line_ending() {
        assert_eq!(first_line(b"pw\nsecond\n"), b"pw");
        assert_eq!(first_line(b"pw\r\n"), b"pw");
        assert_eq!(first_line(b"pw"), b"pw");
        assert_eq!(first_line(b""), b"");
    }

    #[test]
    fn netrc_macros_and_comments_are_skipped() {
        let netrc = Netrc::parse(
            "# machine comment login no\n\
             macdef init\nmachine inside login no\n\n\
             machine h account acct login u password p\n",
        );
        assert_eq!(netrc.entries.len(), 1);
        let entry = netrc.find("h", None).unwrap();
        assert_eq!(entry.login.as_deref(), Some("u"));
        assert_eq!(entry.password.as_ref().unwrap().expose(), "p");
    }
}
