//! vsftpd as configured in the field, started by `scripts/ftps-test-server`
//! for one test and stopped when the handle is dropped.
use std::ops::Deref;
use std::process::Command;

use super::script_server::ScriptServer;

/// A vsftpd [`ScriptServer`] (its `info` and `env` through `Deref`), with
/// what only vsftpd tests need.
pub struct Vsftpd {
    server: ScriptServer,
}

impl Deref for Vsftpd {
    type Target = ScriptServer;
    fn deref(&self) -> &ScriptServer {
        &self.server
    }
}

impl std::borrow::Borrow<ScriptServer> for Vsftpd {
    fn borrow(&self) -> &ScriptServer {
        &self.server
    }
}

impl Vsftpd {
    /// Starts a server with the script's options (e.g. `--tls12-only`). The
    /// vsftpd tests never skip: a machine without vsftpd fails them, so a CI
    /// that forgot to install it cannot pass by testing nothing.
    pub fn start(options: &[&str]) -> Vsftpd {
        assert!(
            std::path::Path::new("/usr/sbin/vsftpd").exists(),
            "vsftpd is not installed: run `apt-get install -y vsftpd` (.ci/run does)"
        );
        Vsftpd {
            server: ScriptServer::start("ftps-test-server", options),
        }
    }

    /// Every FTP command the explicit-TLS server logged, in order (vsftpd's
    /// `log_ftp_protocol`), e.g. `"STOR /a.txt"`; the password is logged as
    /// `<password>`.
    pub fn commands(&self) -> Vec<String> {
        const MARK: &str = "FTP command: Client \"";
        self.info
            .log_text()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find(MARK)? + MARK.len()..];
                let cmd = &rest[rest.find("\", \"")? + 4..];
                Some(cmd.strip_suffix('"').unwrap_or(cmd).to_string())
            })
            .collect()
    }

    /// Logins the server accepted so far (`PASS` commands answered 230 are
    /// not told apart in the log; the tests' passwords are right, so every
    /// PASS is one).
    pub fn logins(&self) -> usize {
        self.commands()
            .iter()
            .filter(|c| c.starts_with("PASS"))
            .count()
    }

    /// Kills every session process (each session is a privileged parent and
    /// an unprivileged child) but not the listener: every control connection
    /// drops, as when a server restarts. Returns how many processes it
    /// killed, so that a test can check it dropped something.
    pub fn kill_sessions(&self) -> usize {
        let pid_file = self.state_dir.join("explicit.pid");
        let listener = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let listener = listener.trim().to_string();
        assert!(!listener.is_empty(), "no pid in {}", pid_file.display());
        let children = |pid: &str| -> Vec<String> {
            let out = Command::new("pgrep")
                .args(["-P", pid])
                .output()
                .expect("pgrep");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        let mut doomed = children(&listener);
        let grandchildren: Vec<String> = doomed.iter().flat_map(|p| children(p)).collect();
        doomed.extend(grandchildren);
        if !doomed.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&doomed).status();
        }
        doomed.len()
    }
}
