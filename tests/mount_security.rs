//! What the mount lets through, against vsftpd: no command injection through
//! names, the password nowhere a user of the machine could see it, a
//! private spool, and only the mounting user in the mount unless
//! `allow_other` says otherwise (and then the modes count only with
//! `default_permissions`).
mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::mount::{ok, Mount};
use common::vsftpd::Vsftpd;

/// Runs a command as `nobody`.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("timeout")
        .args([
            "30",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(args)
        .output()
        .expect("setpriv")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_name_with_cr_or_lf_is_refused_before_anything_is_sent() {
    let server = Vsftpd::start(&[]);
    std::fs::write(server.info.root.join("victim"), b"keep me").unwrap();
    let mount = Mount::start(&server.info, &[]);
    ok("ls", &[&mount.path_str("")], 30);
    let before = server.commands().len();
    for name in ["a\r\nDELE victim", "b\nDELE victim", "c\rx"] {
        let path = mount.dir.join(name);
        let err = std::fs::write(&path, b"x").expect_err("refused");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{name:?}: {err}");
        let err = std::fs::create_dir(&path).expect_err("refused");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{name:?}: {err}");
    }
    assert_eq!(server.commands()[before..].to_vec(), Vec::<String>::new());
    assert_eq!(
        std::fs::read(server.info.root.join("victim")).unwrap(),
        b"keep me"
    );
}

#[test]
fn the_password_is_not_in_the_log_the_command_line_or_the_cache() {
    // The test user's password is random (kept by the script); setting one
    // here would change it under the other servers running at the time.
    let server = Vsftpd::start(&[]);
    let secret = server.info.password.as_bytes();
    assert!(secret.len() >= 12, "a password long enough to search for");
    let mount = Mount::start(&server.info, &[]);
    ok("cp", &["/etc/hostname", &mount.path_str("h")], 30);
    ok("cat", &[&mount.path_str("h")], 30);
    let pid = mount.pid().expect("ftpsfs runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.windows(secret.len()).any(|w| w == secret));
    let log = mount.log_text();
    assert!(log.contains("PASS"), "the log is at debug level: {log}");
    assert!(!log.contains(&server.info.password));
    let cache = mount.dir.parent().unwrap().join("cache");
    for entry in walk(&cache) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_spool_directory_is_private() {
    let server = Vsftpd::start(&[]);
    let mount = Mount::start(&server.info, &[]);
    ok("cp", &["/etc/hostname", &mount.path_str("h")], 30);
    let cache = mount.dir.parent().unwrap().join("cache");
    let spools: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("spool"))
        .collect();
    assert_eq!(spools.len(), 1, "one spool directory per mount");
    let mode = spools[0].metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn other_users_need_allow_other_and_default_permissions_checks_modes() {
    let server = Vsftpd::start(&[]);
    let shared = server.info.root.join("shared.txt");
    std::fs::write(&shared, b"for everyone to read\n").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(
        "chown",
        &[&format!("{}:", server.info.user), &shared.to_string_lossy()],
        10,
    );

    // Default: only the user who mounted (root here) gets in.
    let mount = Mount::start(&server.info, &[]);
    let out = as_nobody(&["cat", &mount.path_str("shared.txt")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    drop(mount);

    // allow_other without default_permissions: anyone may do anything the
    // FTP account may (the modes are shown, not enforced).
    let mount = Mount::start(&server.info, &["-o", "allow_other"]);
    let out = as_nobody(&["cat", &mount.path_str("shared.txt")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_nobody(&[
        "sh",
        "-c",
        &format!("echo more >> '{}'", mount.path_str("shared.txt")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(mount);

    // With default_permissions the kernel checks the modes shown: the file
    // is root's (the mounting user's) and 0644, so nobody reads but may
    // not write.
    let mount = Mount::start(&server.info, &["-o", "allow_other,default_permissions"]);
    let out = as_nobody(&["cat", &mount.path_str("shared.txt")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_nobody(&[
        "sh",
        "-c",
        &format!("echo again >> '{}'", mount.path_str("shared.txt")),
    ]);
    assert!(!out.status.success(), "a write against the mode must fail");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&shared).unwrap(),
        b"for everyone to read\nmore\n",
        "only the write allowed by the mode options reached the server"
    );
}

/// Mutual TLS against vsftpd with ssl_request_cert, require_cert,
/// validate_cert and a client CA: with the right certificate the mount
/// lists, reads and writes over TLS 1.3 and 1.2, passive and active. Every
/// data connection presents the certificate and resumes its control
/// connection's session, or vsftpd would refuse it with 522; the key never
/// reaches the log.
#[test]
fn mutual_tls_mounts_lists_reads_and_writes_over_tls_1_2_and_1_3() {
    let server = Vsftpd::start(&["--require-client-cert"]);
    let cert = server.env["FTPS_CLIENT_CERT"].clone();
    let key = server.env["FTPS_CLIENT_KEY"].clone();
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_line = key_text.lines().nth(1).expect("a PEM body").to_string();
    let from_o = format!("client_cert={cert},client_key={key}");
    let cases: [(&str, Vec<&str>); 4] = [
        ("1.3", vec!["--client-cert", &cert, "--client-key", &key]),
        ("1.2", vec!["-o", &from_o]),
        (
            "1.3",
            vec!["--active", "--client-cert", &cert, "--client-key", &key],
        ),
        ("1.2", vec!["--active", "-o", &from_o]),
    ];
    for (n, (tls, options)) in cases.iter().enumerate() {
        let mut extra = vec!["--tls-max", tls, "--sessions", "2"];
        extra.extend(options.iter().copied());
        let dir = format!("case{n}");
        std::fs::create_dir(server.info.root.join(&dir)).unwrap();
        ok(
            "chown",
            &[
                &format!("{}:", server.info.user),
                &server.info.root.join(&dir).to_string_lossy(),
            ],
            10,
        );
        std::fs::write(
            server.info.root.join(&dir).join("there.txt"),
            b"from the server",
        )
        .unwrap();
        let mount = Mount::start(&server.info, &extra);
        assert_eq!(
            std::fs::read(mount.path(&format!("{dir}/there.txt"))).unwrap(),
            b"from the server",
            "{extra:?}"
        );
        // More data connections than a login's TLS 1.3 tickets.
        for i in 0..6 {
            let name = format!("{dir}/f{i}.txt");
            std::fs::write(mount.path(&name), format!("file {i} {extra:?}")).unwrap();
            assert_eq!(
                std::fs::read_to_string(server.info.root.join(&name)).unwrap(),
                format!("file {i} {extra:?}")
            );
        }
        let listed = ok("ls", &[&mount.path_str(&dir)], 30);
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).lines().count(),
            7,
            "{extra:?}"
        );
        ok("cat", &[&mount.path_str(&format!("{dir}/f5.txt"))], 30);
        let log = mount.log_text();
        assert!(log.contains("STOR"), "the log is at debug level: {log}");
        assert!(!log.contains(&key_line), "the key is not in the log");
    }
    let server_log = server.info.log_text();
    assert!(
        !server_log.contains("\"522"),
        "no data connection was refused for not resuming: {server_log}"
    );
    assert!(
        server
            .commands()
            .iter()
            .filter(|c| c.starts_with("STOR"))
            .count()
            >= 24,
        "every upload went through"
    );
}
