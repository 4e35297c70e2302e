//! The command line as scripts, fstab and mount(8) use it: URL forms, password
//! sources and their order, `-o` options, validation errors, warnings, and the
//! man page kept in sync with the options.
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::CommandFactory;
use ftpsfs::cli::{
    mount_option_names, parse_args_with, Args, CliError, CliErrorKind, Environment, Options,
    IGNORED_MOUNT_OPTIONS, IGNORED_MOUNT_OPTION_PREFIXES,
};
use ftpsfs::credentials::Netrc;
use ftpsfs::ftp::{DataMode, Security, TlsVersion};

/// Environment variables, uid and terminal of a test, without touching the
/// process's own (tests run in parallel threads).
#[derive(Default)]
struct FakeEnv {
    vars: HashMap<String, OsString>,
    root: bool,
    /// What a person at the terminal types; `None`: stdin is not a terminal.
    typed: Option<String>,
    prompts: Cell<usize>,
}

impl FakeEnv {
    fn new() -> FakeEnv {
        FakeEnv::default().var("HOME", "/nonexistent-home")
    }
    fn var(mut self, name: &str, value: impl Into<OsString>) -> FakeEnv {
        self.vars.insert(name.to_string(), value.into());
        self
    }
    fn without(mut self, name: &str) -> FakeEnv {
        self.vars.remove(name);
        self
    }
    fn password(self, secret: &str) -> FakeEnv {
        self.var("FTPSFS_PASSWORD", secret)
    }
    fn terminal(mut self, typed: &str) -> FakeEnv {
        self.typed = Some(typed.to_string());
        self
    }
    fn root(mut self) -> FakeEnv {
        self.root = true;
        self
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<OsString> {
        self.vars.get(name).cloned()
    }
    fn is_root(&self) -> bool {
        self.root
    }
    fn prompt_password(&self, _question: &str) -> Option<io::Result<String>> {
        self.prompts.set(self.prompts.get() + 1);
        self.typed.clone().map(Ok)
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ftpsfs-cli-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("ftpsfs")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

fn parse_in(env: &FakeEnv, args: &[&str]) -> Result<Options, CliError> {
    parse_args_with(argv(args), env)
}

/// Parses with a password in the environment, so no other source is needed.
fn parse(args: &[&str]) -> Options {
    let env = FakeEnv::new().password("pw");
    parse_in(&env, args).unwrap_or_else(|err| panic!("{args:?}: {err}"))
}

fn error(env: &FakeEnv, args: &[&str]) -> CliError {
    match parse_in(env, args) {
        Ok(options) => panic!("{args:?} parsed: {options:?}"),
        Err(err) => err,
    }
}

fn error_text(args: &[&str]) -> String {
    let text = error(&FakeEnv::new().password("pw"), args).to_string();
    assert!(!text.contains('\n'), "not one line: {text:?}");
    text
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

// URL forms

#[test]
fn ftpes_is_explicit_tls_on_port_21() {
    let options = parse(&["ftpes://alice@example.com/data", "/mnt/ftp"]);
    assert_eq!(options.ftp.host, "example.com");
    assert_eq!(options.ftp.port, 21);
    assert_eq!(options.ftp.security, Security::Explicit);
    assert_eq!(options.ftp.credentials.user, "alice");
    assert_eq!(options.remote_root, b"data");
    assert_eq!(options.mountpoint, PathBuf::from("/mnt/ftp"));
}

#[test]
fn ftp_still_requires_tls() {
    let options = parse(&["ftp://example.com", "/mnt"]);
    assert_eq!(options.ftp.security, Security::Explicit);
    assert_eq!(options.ftp.port, 21);
    assert!(options.warnings.is_empty(), "{:?}", options.warnings);
}

#[test]
fn ftps_is_implicit_tls_on_port_990() {
    let options = parse(&["FTPS://example.com", "/mnt"]);
    assert_eq!(options.ftp.security, Security::Implicit);
    assert_eq!(options.ftp.port, 990);
}

#[test]
fn explicit_ports_override_the_scheme_default() {
    assert_eq!(parse(&["ftpes://h:2121", "/mnt"]).ftp.port, 2121);
    assert_eq!(parse(&["ftps://h:2990/x", "/mnt"]).ftp.port, 2990);
}

#[test]
fn ipv6_literals_go_in_brackets() {
    let options = parse(&["ftpes://u@[::1]:2121/dir", "/mnt"]);
    assert_eq!(options.ftp.host, "::1");
    assert_eq!(options.ftp.port, 2121);
    assert_eq!(options.ftp.address(), "[::1]:2121");
    assert_eq!(options.remote_root, b"dir");

    let options = parse(&["ftps://[2001:db8::7]", "/mnt"]);
    assert_eq!(options.ftp.host, "2001:db8::7");
    assert_eq!(options.ftp.port, 990);
}

#[test]
fn path_and_user_are_percent_decoded() {
    let options = parse(&["ftpes://me%40example.org@h/my%20files/caf%C3%A9/", "/mnt"]);
    assert_eq!(options.ftp.credentials.user, "me@example.org");
    assert_eq!(options.remote_root, "my files/café".as_bytes());
}

#[test]
fn path_is_relative_to_the_login_directory_unless_it_starts_with_2f() {
    assert_eq!(parse(&["ftpes://h", "/mnt"]).remote_root, b"");
    assert_eq!(parse(&["ftpes://h/", "/mnt"]).remote_root, b"");
    assert_eq!(parse(&["ftpes://h/a/b", "/mnt"]).remote_root, b"a/b");
    assert_eq!(
        parse(&["ftpes://h/%2Fsrv/ftp", "/mnt"]).remote_root,
        b"/srv/ftp"
    );
    assert_eq!(parse(&["ftpes://h/%2F", "/mnt"]).remote_root, b"/");
}

#[test]
fn path_may_hold_bytes_that_are_not_utf8() {
    assert_eq!(parse(&["ftpes://h/%FF", "/mnt"]).remote_root, vec![0xff]);
}

#[test]
fn relative_mountpoint_becomes_absolute() {
    let options = parse(&["ftpes://h", "mnt"]);
    assert!(options.mountpoint.is_absolute());
    assert!(options.mountpoint.ends_with("mnt"));
}

#[test]
fn bad_urls_are_refused_with_one_line() {
    let cases = [
        ("http://h", "unsupported scheme \"http\""),
        ("sftp://h", "unsupported scheme \"sftp\""),
        ("example.com", "expected ftpes://"),
        ("ftpes://", "no host name"),
        ("ftpes:///dir", "no host name"),
        ("ftpes://user@", "no host name"),
        ("ftpes://h:", "invalid port \"\""),
        ("ftpes://h:0", "invalid port \"0\""),
        ("ftpes://h:65536", "invalid port \"65536\""),
        ("ftpes://h:2x", "invalid port \"2x\""),
        ("ftpes://[::1", "missing ']'"),
        ("ftpes://[not-v6]", "invalid IPv6 address"),
        ("ftpes://[::1]x", "expected ':PORT'"),
        ("ftpes://h h", "invalid host name"),
        ("ftpes://::1/x", "in brackets"),
        ("ftpes://bücher.example", "xn--"),
        ("ftpes://@h", "empty user name"),
        ("ftpes://h/a%2", "invalid percent-escape"),
        ("ftpes://h/a%0D%0ADELE%20x", "line break"),
        ("ftpes://u%0Ax@h", "line break"),
    ];
    for (url, expected) in cases {
        let text = error_text(&[url, "/mnt"]);
        assert!(text.starts_with("invalid URL"), "{url}: {text}");
        assert!(text.contains(expected), "{url}: {text}");
    }
}

// Password sources and their order

#[test]
fn url_password_is_used_and_warned_about() {
    let env = FakeEnv::new().password("from-env");
    let options = parse_in(&env, &["ftpes://u:p%3As%40ss@h", "/mnt"]).unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "p:s@ss");
    assert!(
        options.warnings.iter().any(|w| w.contains("ps")),
        "{:?}",
        options.warnings
    );
}

#[test]
fn password_with_unencoded_at_sign_in_url() {
    let options = parse(&["ftpes://u:p@ss@h/d", "/mnt"]);
    assert_eq!(options.ftp.credentials.password.expose(), "p@ss");
    assert_eq!(options.ftp.host, "h");
}

#[test]
fn environment_beats_password_file() {
    let dir = TempDir::new();
    let file = dir.file("pw", "from-file\n", 0o600);
    let env = FakeEnv::new().password("from-env");
    let options = parse_in(
        &env,
        &["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "from-env");
    assert!(options.warnings.is_empty(), "{:?}", options.warnings);
}

#[test]
fn empty_environment_variable_counts_as_unset() {
    let dir = TempDir::new();
    let file = dir.file("pw", "from-file\n", 0o600);
    let env = FakeEnv::new().password("");
    let options = parse_in(
        &env,
        &["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "from-file");
}

#[test]
fn password_file_gives_its_first_line() {
    let dir = TempDir::new();
    let env = FakeEnv::new();
    for (contents, expected) in [
        ("secret\n", "secret"),
        ("secret", "secret"),
        ("secret\r\n", "secret"),
        ("with space \nsecond line\n", "with space "),
    ] {
        let file = dir.file("pw", contents, 0o600);
        let options = parse_in(
            &env,
            &["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
        )
        .unwrap();
        assert_eq!(
            options.ftp.credentials.password.expose(),
            expected,
            "{contents:?}"
        );
    }
}

#[test]
fn password_file_beats_netrc() {
    let dir = TempDir::new();
    let file = dir.file("pw", "from-file", 0o600);
    let netrc = dir.file("netrc", "machine h login u password from-netrc", 0o600);
    let args = [
        "ftpes://u@h",
        "/mnt",
        "--password-file",
        path_arg(&file),
        "--netrc-file",
        path_arg(&netrc),
    ];
    let options = parse_in(&FakeEnv::new(), &args).unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "from-file");
}

#[test]
fn password_file_readable_by_everyone_is_refused() {
    let dir = TempDir::new();
    let file = dir.file("pw", "secret", 0o644);
    let err = error(
        &FakeEnv::new(),
        &["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
    );
    let text = err.to_string();
    assert!(text.contains("readable by every user"), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
    assert!(!text.contains("secret"));
}

#[test]
fn password_file_readable_by_group_is_warned_about() {
    let dir = TempDir::new();
    let file = dir.file("pw", "secret", 0o640);
    let options = parse_in(
        &FakeEnv::new(),
        &["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "secret");
    assert!(
        options
            .warnings
            .iter()
            .any(|w| w.contains("readable by its group")),
        "{:?}",
        options.warnings
    );
}

#[test]
fn missing_password_file_is_an_error() {
    let err = error(
        &FakeEnv::new(),
        &["ftpes://u@h", "/mnt", "--password-file", "/nonexistent/pw"],
    );
    assert!(
        err.to_string()
            .contains("cannot read password file /nonexistent/pw"),
        "{err}"
    );
    assert_eq!(err.kind(), CliErrorKind::Invalid);
}

#[test]
fn netrc_file_gives_login_and_password() {
    let dir = TempDir::new();
    let netrc = dir.file(
        "netrc",
        "machine other login x password y\n\
         machine\n  FTP.Example.com\nlogin bob\n   password\tnetrc-pw\n",
        0o600,
    );
    let options = parse_in(
        &FakeEnv::new(),
        &[
            "ftpes://ftp.example.com",
            "/mnt",
            "--netrc-file",
            path_arg(&netrc),
        ],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.user, "bob");
    assert_eq!(options.ftp.credentials.password.expose(), "netrc-pw");
}

#[test]
fn home_netrc_is_read_from_home() {
    let dir = TempDir::new();
    dir.file(".netrc", "default login d password default-pw", 0o600);
    let env = FakeEnv::new().var("HOME", dir.0.clone());
    let options = parse_in(&env, &["ftpes://h", "/mnt"]).unwrap();
    assert_eq!(options.ftp.credentials.user, "d");
    assert_eq!(options.ftp.credentials.password.expose(), "default-pw");
}

#[test]
fn netrc_entry_for_another_login_is_not_used() {
    let dir = TempDir::new();
    let netrc = dir.file("netrc", "machine h login alice password alice-pw", 0o600);
    let env = FakeEnv::new().terminal("typed");
    let options = parse_in(
        &env,
        &["ftpes://bob@h", "/mnt", "--netrc-file", path_arg(&netrc)],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.user, "bob");
    assert_eq!(options.ftp.credentials.password.expose(), "typed");
}

#[test]
fn netrc_readable_by_everyone_is_refused_when_its_password_is_needed() {
    let dir = TempDir::new();
    let netrc = dir.file("netrc", "machine h login u password pw", 0o644);
    let err = error(
        &FakeEnv::new(),
        &["ftpes://h", "/mnt", "--netrc-file", path_arg(&netrc)],
    );
    assert!(err.to_string().contains("readable by every user"), "{err}");

    let env = FakeEnv::new().password("env");
    let options = parse_in(
        &env,
        &["ftpes://h", "/mnt", "--netrc-file", path_arg(&netrc)],
    )
    .unwrap();
    assert_eq!(options.ftp.credentials.user, "u");
}

#[test]
fn missing_netrc_file_given_explicitly_is_an_error() {
    let err = error(
        &FakeEnv::new().password("x"),
        &["ftpes://u@h", "/mnt", "--netrc-file", "/nonexistent/netrc"],
    );
    assert!(err.to_string().contains("cannot read netrc file"), "{err}");
}

#[test]
fn prompt_is_the_last_resort() {
    let env = FakeEnv::new().terminal("typed");
    let options = parse_in(&env, &["ftpes://u@h", "/mnt"]).unwrap();
    assert_eq!(options.ftp.credentials.password.expose(), "typed");
    assert_eq!(env.prompts.get(), 1);

    let env = FakeEnv::new().terminal("typed").password("env");
    parse_in(&env, &["ftpes://u@h", "/mnt"]).unwrap();
    assert_eq!(env.prompts.get(), 0);
}

#[test]
fn without_a_terminal_a_missing_password_names_the_sources() {
    let err = error(&FakeEnv::new(), &["ftpes://u@h", "/mnt"]);
    let text = err.to_string();
    for source in ["FTPSFS_PASSWORD", "--password-file", "netrc", "terminal"] {
        assert!(text.contains(source), "{text}");
    }
}

#[test]
fn no_user_anywhere_means_anonymous_without_a_prompt() {
    let env = FakeEnv::new().terminal("typed").without("HOME");
    let options = parse_in(&env, &["ftpes://h", "/mnt", "--cache-dir", "/spool"]).unwrap();
    assert_eq!(options.ftp.credentials.user, "anonymous");
    assert_eq!(options.ftp.credentials.password.expose(), "anonymous@");
    assert_eq!(env.prompts.get(), 0);
}

#[test]
fn password_with_a_line_break_is_refused() {
    let env = FakeEnv::new().password("a\r\nDELE x");
    let err = error(&env, &["ftpes://u@h", "/mnt"]);
    assert!(err.to_string().contains("line break"), "{err}");
    assert!(!err.to_string().contains("DELE"));
}

#[test]
fn netrc_parsing() {
    let netrc = Netrc::parse(
        "machine a login la password pa\n\
         machine b\nlogin lb\npassword pb\n\
         default login ld password pd\n",
    );
    let login =
        |host: &str, user: Option<&str>| netrc.find(host, user).and_then(|e| e.login.clone());
    assert_eq!(login("a", None).as_deref(), Some("la"));
    assert_eq!(login("B", None).as_deref(), Some("lb"));
    assert_eq!(login("c", None).as_deref(), Some("ld"));
    assert_eq!(login("a", Some("ld")).as_deref(), Some("ld"));
    assert!(netrc.find("a", Some("nobody")).is_none());
    assert_eq!(
        netrc
            .find("b", None)
            .unwrap()
            .password
            .as_ref()
            .unwrap()
            .expose(),
        "pb"
    );
}

// -o mount options

#[test]
fn o_takes_long_options_by_name() {
    let dir = TempDir::new();
    let ca = dir.file("ca.pem", "", 0o644);
    let option = format!(
        "ca_file={},sessions=8,active,active-ports=40000-40010,connect_timeout=5,tls_max=1.2,uid=1000,gid=100,umask=027",
        ca.display()
    );
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "-o",
        &option,
        "-o",
        "ro,allow_other,default_permissions",
    ]);
    assert_eq!(options.ftp.tls.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(options.pool.max_sessions, 8);
    assert_eq!(options.ftp.timeouts.connect, Duration::from_secs(5));
    assert_eq!(options.ftp.tls.max_version, Some(TlsVersion::Tls12));
    match options.ftp.data_mode {
        DataMode::Active { ports, .. } => assert_eq!(ports, Some(40000..=40010)),
        other => panic!("{other:?}"),
    }
    let mount = &options.mount;
    assert!(mount.read_only && mount.allow_other && mount.default_permissions);
    assert_eq!(
        (mount.uid, mount.gid, mount.umask),
        (Some(1000), Some(100), Some(0o27))
    );
}

#[test]
fn patching_in_place_is_on_unless_never() {
    assert!(parse(&["ftpes://h", "/mnt"]).patch_in_place);
    assert!(!parse(&["ftpes://h", "/mnt", "--patch", "never"]).patch_in_place);
    assert!(!parse(&["ftpes://h", "/mnt", "-o", "patch=never"]).patch_in_place);
    assert!(parse(&["ftpes://h", "/mnt", "-o", "patch=auto"]).patch_in_place);
    let text = error_text(&["ftpes://h", "/mnt", "--patch", "always"]);
    assert!(text.contains("never"), "{text}");
}

#[test]
fn write_back_is_sync_unless_async_with_a_spool_limit() {
    use ftpsfs::cli::WriteBack;
    let default = parse(&["ftpes://h", "/mnt"]);
    assert_eq!(default.write_back, WriteBack::Sync);
    assert_eq!(
        default.write_back_spool_size,
        ftpsfs::fs::DEFAULT_SPOOL_LIMIT
    );
    let o = parse(&[
        "ftpes://h",
        "/mnt",
        "-o",
        "write_back=async,write_back_spool_size=2G",
    ]);
    assert_eq!(o.write_back, WriteBack::Async);
    assert_eq!(o.write_back_spool_size, 2 << 30);
    let long = parse(&["ftpes://h", "/mnt", "--write-back", "async"]);
    assert_eq!(long.write_back, WriteBack::Async);
    let text = error_text(&["ftpes://h", "/mnt", "--write-back", "later"]);
    assert!(text.contains("async"), "{text}");
}

#[test]
fn async_write_back_defaults_to_more_sessions_but_not_more_read_streams() {
    let sync = parse(&["ftpes://h", "/mnt"]);
    assert_eq!((sync.pool.max_sessions, sync.read_streams), (4, 3));
    let async_default = parse(&["ftpes://h", "/mnt", "--write-back", "async"]);
    assert_eq!(
        (async_default.pool.max_sessions, async_default.read_streams),
        (ftpsfs::cli::ASYNC_DEFAULT_SESSIONS, 3)
    );
    // Told, the number holds in either mode.
    let told = parse(&["ftpes://h", "/mnt", "-o", "write_back=async,sessions=2"]);
    assert_eq!((told.pool.max_sessions, told.read_streams), (2, 1));
    let many = parse(&[
        "ftpes://h",
        "/mnt",
        "--sessions",
        "8",
        "--read-streams",
        "7",
    ]);
    assert_eq!((many.pool.max_sessions, many.read_streams), (8, 7));
    let many_untold = parse(&["ftpes://h", "/mnt", "--sessions", "8"]);
    assert_eq!(many_untold.read_streams, 3);
}

#[test]
fn o_accepts_and_ignores_what_mount_passes() {
    let ignored = "rw,defaults,dev,suid,exec,auto,noauto,user,nouser,nofail,_netdev,\
                   x-systemd.automount,x-systemd.idle-timeout=60,nodev,nosuid";
    let options = parse(&["ftpes://h", "/mnt", "-o", ignored]);
    assert!(!options.mount.read_only);
    let plain = parse(&["ftpes://h", "/mnt"]);
    assert_eq!(format!("{options:?}"), format!("{plain:?}"));
}

#[test]
fn o_works_before_the_positional_arguments() {
    let options = parse(&["-o", "ro,sessions=2", "ftpes://h", "/mnt"]);
    assert!(options.mount.read_only);
    assert_eq!(options.pool.max_sessions, 2);
}

#[test]
fn unknown_o_option_is_named() {
    let text = error_text(&["ftpes://h", "/mnt", "-o", "ro,frobnicate=3"]);
    assert_eq!(text, "unknown mount option \"frobnicate\" in -o");
    let text = error_text(&["ftpes://h", "/mnt", "-o", "help"]);
    assert!(text.contains("\"help\""), "{text}");
}

#[test]
fn o_flags_take_no_value_and_value_options_need_one() {
    let text = error_text(&["ftpes://h", "/mnt", "-o", "insecure=yes"]);
    assert!(
        text.contains("\"insecure\"") && text.contains("takes no value"),
        "{text}"
    );
    let text = error_text(&["ftpes://h", "/mnt", "-o", "sessions"]);
    assert!(
        text.contains("\"sessions\"") && text.contains("needs a value"),
        "{text}"
    );
}

#[test]
fn o_values_are_validated_like_flags() {
    let text = error_text(&["ftpes://h", "/mnt", "-o", "sessions=lots"]);
    assert!(text.contains("--sessions"), "{text}");
}

#[test]
fn command_line_flags_beat_o() {
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "-o",
        "sessions=8,timeout=99",
        "--sessions",
        "2",
    ]);
    assert_eq!(options.pool.max_sessions, 2);
    assert_eq!(options.ftp.timeouts.reply, Duration::from_secs(99));
    let options = parse(&["--sessions", "2", "ftpes://h", "/mnt", "-o", "sessions=8"]);
    assert_eq!(options.pool.max_sessions, 2);
}

#[test]
fn later_o_beats_earlier_o() {
    let options = parse(&["ftpes://h", "/mnt", "-o", "sessions=8", "-o", "sessions=3"]);
    assert_eq!(options.pool.max_sessions, 3);
}

// Other options

#[test]
fn defaults() {
    let options = parse(&["ftpes://h", "/mnt"]);
    assert_eq!(options.pool.max_sessions, 4);
    assert_eq!(options.ftp.timeouts.connect, Duration::from_secs(15));
    assert_eq!(options.ftp.timeouts.reply, Duration::from_secs(30));
    assert_eq!(options.ftp.timeouts.data_idle, Duration::from_secs(60));
    assert_eq!(options.ftp.keepalive.noop_after, Duration::from_secs(60));
    assert_eq!(options.ftp.keepalive.tcp_idle, Duration::from_secs(15));
    assert_eq!(options.attr_ttl, Duration::from_secs(60));
    assert_eq!(options.dir_ttl, Duration::from_secs(60));
    assert_eq!(options.log.level, log::LevelFilter::Warn);
    assert_eq!(options.log.file, None);
    assert!(!options.foreground);
    assert!(!options.ftp.tls.insecure);
    assert_eq!(options.mount, Default::default());
    match options.ftp.data_mode {
        DataMode::Passive {
            trust_pasv_address,
            epsv,
        } => assert!(!trust_pasv_address && epsv),
        other => panic!("{other:?}"),
    }
}

#[test]
fn timeouts_and_ttls() {
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "--connect-timeout",
        "3",
        "--timeout",
        "4",
        "--data-timeout",
        "5",
        "--keepalive",
        "6",
        "--attr-ttl",
        "0",
        "--dir-ttl",
        "8",
        "-f",
    ]);
    let secs = Duration::from_secs;
    assert_eq!(options.ftp.timeouts.connect, secs(3));
    assert_eq!(options.ftp.timeouts.reply, secs(4));
    assert_eq!(options.ftp.timeouts.data_idle, secs(5));
    assert_eq!(options.ftp.keepalive.noop_after, secs(6));
    assert_eq!(options.ftp.keepalive.tcp_idle, secs(6), "probes as soon");
    assert_eq!(options.ftp.keepalive.tcp_interval, secs(6));
    assert_eq!(options.attr_ttl, Duration::ZERO);
    assert_eq!(options.dir_ttl, secs(8));
    assert!(options.foreground);
}

#[test]
fn passive_mode_options() {
    let options = parse(&["ftpes://h", "/mnt", "--trust-pasv-address", "--no-epsv"]);
    match options.ftp.data_mode {
        DataMode::Passive {
            trust_pasv_address,
            epsv,
        } => assert!(trust_pasv_address && !epsv),
        other => panic!("{other:?}"),
    }
}

#[test]
fn active_mode_options() {
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "--active",
        "--active-address",
        "203.0.113.5",
    ]);
    match options.ftp.data_mode {
        DataMode::Active { ports, advertise } => {
            assert_eq!(ports, None);
            assert_eq!(advertise, Some("203.0.113.5".parse().unwrap()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tls_options() {
    let pin = "ab".repeat(32);
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "--pin-sha256",
        &pin,
        "--tls-max",
        "1.3",
    ]);
    assert_eq!(options.ftp.tls.pin_sha256, Some([0xab; 32]));
    assert_eq!(options.ftp.tls.max_version, Some(TlsVersion::Tls13));
}

/// A client certificate (PEM) and its key (PKCS#8 PEM).
fn client_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn client_certificate_from_flags_or_o() {
    let dir = TempDir::new();
    let (cert, key) = client_pair();
    let cert_file = dir.file("client.pem", &cert, 0o644);
    let key_file = dir.file("client.key", &key, 0o600);
    let both = dir.file("both.pem", &format!("{cert}{key}"), 0o600);
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "--client-cert",
        path_arg(&cert_file),
        "--client-key",
        path_arg(&key_file),
    ]);
    assert!(options.ftp.tls.client_identity.is_some());
    assert!(options.warnings.is_empty(), "{:?}", options.warnings);
    let o = format!(
        "client_cert={},client_key={}",
        cert_file.display(),
        key_file.display()
    );
    assert!(parse(&["ftpes://h", "/mnt", "-o", &o])
        .ftp
        .tls
        .client_identity
        .is_some());
    let options = parse(&["ftpes://h", "/mnt", "--client-cert", path_arg(&both)]);
    assert!(
        options.ftp.tls.client_identity.is_some(),
        "key from the same file"
    );
    assert!(parse(&["ftpes://h", "/mnt"])
        .ftp
        .tls
        .client_identity
        .is_none());
    let shown = format!("{options:?}");
    let secret: String = key.lines().nth(1).unwrap().chars().take(24).collect();
    assert!(!shown.contains(&secret), "the key is never shown");
}

#[test]
fn client_certificate_errors_are_one_line_naming_the_file() {
    let dir = TempDir::new();
    let (cert, key) = client_pair();
    let (_, other_key) = client_pair();
    let cert_file = dir.file("client.pem", &cert, 0o644);
    let other_key = dir.file("other.key", &other_key, 0o600);
    let text = error_text(&[
        "ftpes://h",
        "/mnt",
        "--client-cert",
        path_arg(&cert_file),
        "--client-key",
        path_arg(&other_key),
    ]);
    assert!(
        text.contains(&format!(
            "the client key in {} does not match",
            other_key.display()
        )),
        "{text}"
    );
    let text = error_text(&["ftpes://h", "/mnt", "--client-cert", path_arg(&cert_file)]);
    assert!(
        text.contains("give the key file with --client-key"),
        "{text}"
    );
    let missing = dir.0.join("missing.pem");
    let text = error_text(&["ftpes://h", "/mnt", "--client-cert", path_arg(&missing)]);
    assert!(
        text.contains(&format!(
            "cannot read client certificate file {}",
            missing.display()
        )),
        "{text}"
    );
    let key_file = dir.file("client.key", &key, 0o600);
    let text = error_text(&["ftpes://h", "/mnt", "--client-key", path_arg(&key_file)]);
    assert!(
        text.contains("--client-cert"),
        "needs a certificate: {text}"
    );
    let text = error_text(&[
        "ftp://h",
        "/mnt",
        "--insecure-plain-ftp",
        "--client-cert",
        path_arg(&cert_file),
    ]);
    assert!(text.contains("cannot be used with"), "{text}");
}

#[test]
fn a_client_key_others_can_read_is_warned_about() {
    let dir = TempDir::new();
    let (cert, key) = client_pair();
    let cert_file = dir.file("client.pem", &cert, 0o644);
    let key_file = dir.file("client.key", &key, 0o644);
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "--client-cert",
        path_arg(&cert_file),
        "--client-key",
        path_arg(&key_file),
    ]);
    assert_eq!(
        options.warnings,
        vec![format!(
            "the client key file {} is accessible by others (mode 644); run chmod 600 on it",
            key_file.display()
        )]
    );
}

#[test]
fn log_level_from_verbose_or_log_level() {
    let level = |args: &[&str]| {
        let mut all = vec!["ftpes://h", "/mnt"];
        all.extend_from_slice(args);
        parse(&all).log.level
    };
    assert_eq!(level(&["-v"]), log::LevelFilter::Info);
    assert_eq!(level(&["-vv"]), log::LevelFilter::Debug);
    assert_eq!(
        level(&["-v", "--verbose", "-v", "-v"]),
        log::LevelFilter::Trace
    );
    assert_eq!(
        level(&["--log-level", "error", "-vv"]),
        log::LevelFilter::Error
    );
    assert_eq!(level(&["-o", "verbose"]), log::LevelFilter::Info);
    let options = parse(&["ftpes://h", "/mnt", "--log-file", "ftpsfs.log"]);
    assert!(options.log.file.unwrap().is_absolute());
}

#[test]
fn cache_dir_defaults() {
    let cache_dir =
        |env: FakeEnv| parse_in(&env.password("x"), &["ftpes://h", "/mnt"]).map(|o| o.cache_dir);
    assert_eq!(
        cache_dir(FakeEnv::new().root().var("XDG_CACHE_HOME", "/x")).unwrap(),
        PathBuf::from("/var/cache/ftpsfs")
    );
    assert_eq!(
        cache_dir(FakeEnv::new().var("XDG_CACHE_HOME", "/x")).unwrap(),
        PathBuf::from("/x/ftpsfs")
    );
    assert_eq!(
        cache_dir(
            FakeEnv::new()
                .var("XDG_CACHE_HOME", "relative")
                .var("HOME", "/home/u")
        )
        .unwrap(),
        PathBuf::from("/home/u/.cache/ftpsfs")
    );
    let err = cache_dir(FakeEnv::new().without("HOME")).unwrap_err();
    assert!(err.to_string().contains("--cache-dir"), "{err}");
    let options = parse_in(
        &FakeEnv::new().without("HOME").password("x"),
        &["ftpes://h", "/mnt", "--cache-dir", "/spool"],
    )
    .unwrap();
    assert_eq!(options.cache_dir, PathBuf::from("/spool"));
}

// Validation errors

#[test]
fn invalid_values_are_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--active", "--active-ports", "5-1"], "invalid value '5-1' for '--active-ports <LOW-HIGH>': expected LOW-HIGH with 0 < LOW <= HIGH"),
        (&["--sessions", "0"], "--sessions"),
        (&["--sessions", "65"], "--sessions"),
        (&["--pin-sha256", "abc"], "expected 64 hex digits"),
        (&["--tls-max", "1.1"], "--tls-max"),
        (&["--umask", "999"], "expected an octal mask"),
        (&["--timeout", "0"], "expected whole seconds from 1"),
        (&["--attr-ttl=-1"], "--attr-ttl"),
        (&["--log-level", "loud"], "--log-level"),
        (&["--active-address", "nowhere"], "--active-address"),
        (&["--uid=-1"], "--uid"),
        (&["--bogus"], "--bogus"),
        (&["--active-ports", "1-5"], "--active"),
        (&["--insecure", "--pin-sha256", &"00".repeat(32)], "cannot be used with"),
        (&["--insecure-plain-ftp", "--insecure"], "cannot be used with"),
        (&["--active", "--no-epsv"], "cannot be used with"),
        (&["--ca-file", "/nonexistent/ca.pem"], "cannot read --ca-file /nonexistent/ca.pem"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["ftpes://h", "/mnt"];
        args.extend_from_slice(extra);
        let text = error_text(&args);
        assert!(text.contains(expected), "{extra:?}: {text}");
    }
}

#[test]
fn missing_arguments_are_usage_errors() {
    let err = error(&FakeEnv::new(), &["ftpes://h"]);
    assert_eq!(err.kind(), CliErrorKind::Usage);
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("<MOUNTPOINT>"), "{err}");
}

#[test]
fn help_and_version_are_not_failures() {
    for flag in ["--help", "-h", "--version", "-V"] {
        let err = error(&FakeEnv::new(), &[flag]);
        assert!(err.is_info(), "{flag}");
        assert_eq!(err.exit_code(), 0);
    }
    assert!(error(&FakeEnv::new(), &["--help"])
        .to_string()
        .contains("--password-file"));
}

#[test]
fn plain_ftp_cannot_be_combined_with_implicit_tls() {
    let text = error_text(&["ftps://h", "/mnt", "--insecure-plain-ftp"]);
    assert!(text.contains("ftps://"), "{text}");
}

// Warnings

#[test]
fn insecure_warns() {
    let options = parse(&["ftpes://h", "/mnt", "--insecure"]);
    assert!(options.ftp.tls.insecure);
    assert_eq!(options.warnings.len(), 1);
    assert!(options.warnings[0].contains("--insecure"));
}

#[test]
fn plain_ftp_warns() {
    let options = parse(&["ftp://h", "/mnt", "-o", "insecure_plain_ftp"]);
    assert_eq!(options.ftp.security, Security::InsecurePlain);
    assert_eq!(options.ftp.port, 21);
    assert_eq!(options.warnings.len(), 1);
    assert!(options.warnings[0].contains("clear text"));
}

// The password stays secret

#[test]
fn debug_output_never_contains_the_password() {
    let dir = TempDir::new();
    let file = dir.file("pw", "file-Secret1", 0o600);
    let netrc = dir.file("netrc", "machine h login u password netrc-Secret2", 0o600);
    let cases = [
        (FakeEnv::new(), vec!["ftpes://u:url-Secret3@h", "/mnt"]),
        (
            FakeEnv::new().password("env-Secret4"),
            vec!["ftpes://u@h", "/mnt"],
        ),
        (
            FakeEnv::new(),
            vec!["ftpes://u@h", "/mnt", "--password-file", path_arg(&file)],
        ),
        (
            FakeEnv::new(),
            vec!["ftpes://h", "/mnt", "--netrc-file", path_arg(&netrc)],
        ),
        (
            FakeEnv::new().terminal("typed-Secret5"),
            vec!["ftpes://u@h", "/mnt"],
        ),
    ];
    for (env, args) in cases {
        let options = parse_in(&env, &args).unwrap();
        let debug = format!("{options:?} {options:#?}");
        assert!(!debug.contains("Secret"), "{debug}");
        assert!(options.ftp.credentials.password.expose().contains("Secret"));
    }
}

#[test]
fn errors_never_contain_the_url_password() {
    let env = FakeEnv::new();
    let cases: &[&[&str]] = &[
        &["ftpes://u:Secret@h:99999", "/mnt"],
        &[
            "ftpes://u:Secret@h",
            "/mnt",
            "--sessions",
            "ftpes://u:Secret@h",
        ],
        &["ftpes://u:Secret@h", "/mnt", "extra"],
        &["ftpes://u:Secret@h", "/mnt", "-o", "nope"],
        &["http://u:Secret@h", "/mnt"],
    ];
    for args in cases {
        let err = error(&env, args);
        let text = format!("{err} {err:?}");
        assert!(!text.contains("Secret"), "{text}");
    }
}

// The man page documents every option

fn man_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/ftpsfs.1");
    let roff = fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    ["\\fB", "\\fI", "\\fR", "\\fP", "\\&"]
        .iter()
        .fold(roff.replace("\\-", "-"), |text, escape| {
            text.replace(escape, "")
        })
}

#[test]
fn man_page_documents_every_option() {
    let man = man_page();
    let command = Args::command();
    let mut missing = Vec::new();
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            let flag = format!("--{long}");
            if !man.contains(&flag) {
                missing.push(flag);
            }
        }
        if let Some(short) = arg.get_short() {
            let flag = format!("-{short}");
            if !man.contains(&flag) {
                missing.push(flag);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "man/ftpsfs.1 does not document {missing:?}"
    );
}

#[test]
fn man_page_documents_every_o_name() {
    let man = man_page();
    let names = mount_option_names();
    assert!(names.len() >= 30, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|name| !man.contains(&format!("-o {name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "man/ftpsfs.1 does not show \"-o NAME\" for {missing:?}"
    );
    let ignored = IGNORED_MOUNT_OPTIONS
        .iter()
        .chain(IGNORED_MOUNT_OPTION_PREFIXES);
    let missing: Vec<_> = ignored.filter(|name| !man.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "man/ftpsfs.1 does not list the ignored {missing:?}"
    );
}

#[test]
fn every_long_option_is_accepted_in_o() {
    let names = mount_option_names();
    for name in [
        "password_file",
        "ca_file",
        "insecure_plain_ftp",
        "log_level",
        "ro",
        "uid",
        "foreground",
    ] {
        assert!(names.iter().any(|n| n == name), "{name}");
    }
    assert!(!names.iter().any(|n| n == "help" || n == "version"));
}

#[test]
fn close_to_open_consistency_by_either_name() {
    assert!(!parse(&["ftpes://u@h/", "/mnt"]).revalidate_on_open);
    for args in [
        &["--revalidate-on-open", "ftpes://u@h/", "/mnt"][..],
        &["--cto", "ftpes://u@h/", "/mnt"],
        &["-o", "cto", "ftpes://u@h/", "/mnt"],
        &["-o", "revalidate_on_open", "ftpes://u@h/", "/mnt"],
    ] {
        assert!(parse(args).revalidate_on_open, "{args:?}");
    }
}

// SOCKS5 proxy

#[test]
fn proxy_from_flag_or_o() {
    let options = parse(&["ftpes://h", "/mnt", "--proxy", "socks5://127.0.0.1:1080"]);
    let proxy = options.ftp.proxy.expect("a proxy");
    assert_eq!((proxy.host.as_str(), proxy.port), ("127.0.0.1", 1080));
    assert!(!proxy.remote_dns && proxy.auth.is_none());
    let options = parse(&[
        "-o",
        "proxy=socks5h://gate.example:9050",
        "ftpes://h",
        "/mnt",
    ]);
    let proxy = options.ftp.proxy.expect("a proxy");
    assert_eq!(
        (proxy.host.as_str(), proxy.remote_dns),
        ("gate.example", true)
    );
    assert!(parse(&["ftpes://h", "/mnt"]).ftp.proxy.is_none());
}

#[test]
fn proxy_password_from_environment_or_file() {
    let env = FakeEnv::new()
        .password("pw")
        .var("FTPSFS_PROXY_PASSWORD", "proxy-secret");
    let options = parse_in(
        &env,
        &["ftpes://h", "/mnt", "--proxy", "socks5://bob@p:1080"],
    )
    .unwrap();
    let auth = options.ftp.proxy.unwrap().auth.unwrap();
    assert_eq!(
        (auth.user.as_str(), auth.password.expose()),
        ("bob", "proxy-secret")
    );

    let dir = TempDir::new();
    let file = dir.file("proxy-pw", "from-file\n", 0o600);
    let options = parse(&[
        "ftpes://h",
        "/mnt",
        "-o",
        &format!(
            "proxy=socks5://bob@p:1080,proxy_password_file={}",
            path_arg(&file)
        ),
    ]);
    let auth = options.ftp.proxy.unwrap().auth.unwrap();
    assert_eq!(auth.password.expose(), "from-file");
    // The login password is not the proxy's.
    assert_ne!(options.ftp.credentials.password.expose(), "from-file");
}

#[test]
fn proxy_password_on_the_command_line_is_refused() {
    for args in [
        &[
            "ftpes://h",
            "/mnt",
            "--proxy",
            "socks5://bob:hunter2@p:1080",
        ][..],
        &[
            "ftpes://h",
            "/mnt",
            "-o",
            "proxy=socks5://bob:hunter2@p:1080",
        ][..],
    ] {
        let text = error_text(args);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("FTPSFS_PROXY_PASSWORD") && text.contains("--proxy-password-file"),
            "{text}"
        );
    }
}

#[test]
fn proxy_errors_are_one_line() {
    let text = error_text(&["ftpes://h", "/mnt", "--proxy", "socks5://bob@p:1080"]);
    assert!(
        text.contains("no password for the proxy user bob"),
        "{text}"
    );
    let text = error_text(&["ftpes://h", "/mnt", "--proxy", "http://p:3128"]);
    assert!(text.contains("socks5h://"), "{text}");
    let text = error_text(&["ftpes://h", "/mnt", "--proxy", "socks5://p"]);
    assert!(text.contains("host:port"), "{text}");
    let dir = TempDir::new();
    let file = dir.file("pw", "x", 0o600);
    let text = error_text(&[
        "ftpes://h",
        "/mnt",
        "--proxy",
        "socks5://p:1",
        "--proxy-password-file",
        path_arg(&file),
    ]);
    assert!(text.contains("needs a proxy user"), "{text}");
    let text = error_text(&[
        "ftpes://h",
        "/mnt",
        "--active",
        "--active-ports",
        "40000-40010",
        "--proxy",
        "socks5://p:1",
    ]);
    assert!(text.contains("--proxy"), "{text}");
}

#[test]
fn clear_control_after_login_is_opt_in_and_warned_about() {
    assert!(!parse(&["ftpes://h", "/mnt"]).ftp.clear_control_after_login);
    for args in [
        &["ftpes://h", "/mnt", "--clear-control-after-login"][..],
        &["ftpes://h", "/mnt", "-o", "clear_control_after_login"][..],
    ] {
        let options = parse(args);
        assert!(options.ftp.clear_control_after_login);
        assert!(
            options
                .warnings
                .iter()
                .any(|w| w.starts_with("--clear-control-after-login: after login")),
            "{:?}",
            options.warnings
        );
    }
    let text = error_text(&[
        "ftp://h",
        "/mnt",
        "--insecure-plain-ftp",
        "--clear-control-after-login",
    ]);
    assert!(text.contains("--clear-control-after-login"), "{text}");
}
