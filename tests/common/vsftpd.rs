//! vsftpd as configured in the field, started by `scripts/ftps-test-server`
//! for one test and stopped when the handle is dropped.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use super::ServerInfo;

pub struct Vsftpd {
    pub info: ServerInfo,
    pub env: HashMap<String, String>,
    state_dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ftps-test-server")
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
        let output = Command::new("timeout")
            .arg("120")
            .arg(script())
            .arg("start")
            .args(options)
            .output()
            .expect("run scripts/ftps-test-server");
        assert!(
            output.status.success(),
            "scripts/ftps-test-server start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env: HashMap<String, String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .unwrap_or_else(|| panic!("ftps-test-server did not print {key}"))
        };
        let info = ServerInfo {
            host: get("FTPS_HOST"),
            port: get("FTPS_PORT").parse().expect("FTPS_PORT"),
            implicit_port: env.get("FTPS_IMPLICIT_PORT").and_then(|p| p.parse().ok()),
            user: get("FTPS_USER"),
            password: get("FTPS_PASSWORD"),
            ca_file: get("FTPS_CA_FILE").into(),
            wrong_ca_file: get("FTPS_WRONG_CA_FILE").into(),
            server_cert: env.get("FTPS_SERVER_CERT").map(PathBuf::from),
            root: get("FTPS_ROOT").into(),
            log: env.get("FTPS_LOG").map(PathBuf::from),
        };
        Vsftpd {
            state_dir: get("FTPS_STATE_DIR").into(),
            info,
            env,
        }
    }

    /// Kills every session process (each session is a privileged parent and
    /// an unprivileged child) but not the listener: every control connection
    /// drops, as when a server restarts.
    pub fn kill_sessions(&self) {
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
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = Command::new("timeout")
            .arg("60")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(&self.state_dir)
            .output();
    }
}
