//! What a client needs to reach a test server, whichever kind it is.
use std::path::PathBuf;
use std::time::Duration;

use ftpsfs::ftp::config::{Keepalive, Timeouts};
use ftpsfs::ftp::{Credentials, FtpConfig, Password, Security, TlsOptions};

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub host: String,
    pub port: u16,
    pub implicit_port: Option<u16>,
    pub user: String,
    pub password: String,
    pub ca_file: PathBuf,
    pub wrong_ca_file: PathBuf,
    /// The server's own certificate (PEM), for pinning tests.
    pub server_cert: Option<PathBuf>,
    /// The user's home on disk: what the server holds.
    pub root: PathBuf,
    /// The server's protocol log, when it keeps one.
    pub log: Option<PathBuf>,
}

impl ServerInfo {
    /// Explicit FTPS with the test CA and timeouts short enough that a test
    /// never hangs for long.
    pub fn config(&self) -> FtpConfig {
        let mut config = FtpConfig::new(
            self.host.clone(),
            self.port,
            Credentials {
                user: self.user.clone(),
                password: Password::new(self.password.clone()),
            },
        );
        config.security = Security::Explicit;
        config.tls = TlsOptions {
            ca_file: Some(self.ca_file.clone()),
            ..TlsOptions::default()
        };
        config.timeouts = Timeouts {
            connect: Duration::from_secs(10),
            reply: Duration::from_secs(20),
            data_idle: Duration::from_secs(20),
        };
        config.keepalive = Keepalive::default();
        config
    }

    pub fn implicit_config(&self) -> Option<FtpConfig> {
        let mut config = self.config();
        config.port = self.implicit_port?;
        config.security = Security::Implicit;
        Some(config)
    }

    /// The host as it goes into a URL: an IPv6 address in brackets.
    pub fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The server's protocol log as text (empty when it keeps none).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}
