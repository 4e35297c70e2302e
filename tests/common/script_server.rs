//! A test FTPS server started by one of the `scripts/*-test-server` scripts
//! (vsftpd, ProFTPD, Pure-FTPd, pyftpdlib), which all print the same
//! `FTPS_*=value` lines; stopped (`stop --dir`) when the handle is dropped.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use super::ServerInfo;

pub struct ScriptServer {
    pub info: ServerInfo,
    /// Every `KEY=value` line the script printed.
    pub env: HashMap<String, String>,
    pub state_dir: PathBuf,
    script: PathBuf,
}

impl ScriptServer {
    /// Runs `scripts/<script> start <options>` and waits for its `FTPS_*`
    /// lines. A script that fails (server not installed, not coming up)
    /// fails the test with the script's own message, which names the
    /// package to install: the matrix never passes by testing nothing.
    pub fn start(script: &str, options: &[&str]) -> ScriptServer {
        super::require::root(script);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(script);
        let output = Command::new("timeout")
            .arg("300")
            .arg(&script)
            .arg("start")
            .args(options)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} start {options:?} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let env = parse_env(&String::from_utf8_lossy(&output.stdout));
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{} did not print {key}", script.display()))
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
        ScriptServer {
            state_dir: get("FTPS_STATE_DIR").into(),
            info,
            env,
            script,
        }
    }
}

/// `KEY=value` lines, as the scripts print them (values have no spaces).
fn parse_env(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl ScriptServer {
    /// Stops the server (its sessions too) before the test ends, as a
    /// server that went down does.
    #[allow(dead_code)] // not every test file stops its server
    pub fn stop(&self) {
        self.run_stop();
    }

    fn run_stop(&self) {
        let _ = Command::new("timeout")
            .arg("60")
            .arg(&self.script)
            .arg("stop")
            .arg("--dir")
            .arg(&self.state_dir)
            .output();
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.run_stop();
    }
}
