//! vsftpd (or another script server) behind the fault proxy: the proxy
//! listens on 127.0.0.2 on the server's control port and passive ports and
//! forwards to 127.0.0.1, and mounts go through it. The certificate names 127.0.0.1, not the proxy's
//! address, so mounts pin it instead.
use std::borrow::Borrow;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::mount::{ok, Mount};
use super::proxy::FaultProxy;
use super::script_server::ScriptServer;
use super::vsftpd::Vsftpd;
use super::ServerInfo;

pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
pub const PROXY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

pub struct Proxied<S = Vsftpd> {
    pub proxy: FaultProxy,
    /// Host and port of the proxy; root and log of the real server.
    pub info: ServerInfo,
    /// The server certificate's SHA-256 fingerprint, for --pin-sha256.
    pub pin: String,
    pub server: S,
}

impl Proxied {
    /// vsftpd with the script's `server_options`, behind the proxy.
    pub fn start(server_options: &[&str]) -> Proxied {
        Proxied::around(Vsftpd::start(server_options))
    }
}

impl<S: Borrow<ScriptServer>> Proxied<S> {
    /// Puts the proxy in front of `server`.
    pub fn around(server: S) -> Proxied<S> {
        let script: &ScriptServer = server.borrow();
        let port = |key: &str| -> u16 {
            script.env[key]
                .parse()
                .unwrap_or_else(|_| panic!("{key} is not a port"))
        };
        let data_ports = port("FTPS_PASV_MIN")..=port("FTPS_PASV_MAX");
        let proxy = FaultProxy::start(PROXY_IP, SERVER_IP, script.info.port, data_ports);
        let mut info = script.info.clone();
        info.host = PROXY_IP.to_string();
        let pin = fingerprint(info.server_cert.as_deref().expect("server certificate"));
        Proxied {
            proxy,
            info,
            pin,
            server,
        }
    }

    /// Mounts through the proxy with `extra` options.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        let mut args = vec!["--pin-sha256", self.pin.as_str()];
        args.extend_from_slice(extra);
        Mount::start(&self.info, &args)
    }
}

/// The SHA-256 fingerprint of a PEM certificate, for --pin-sha256.
pub fn fingerprint(pem: &Path) -> String {
    super::require::program("openssl", "openssl");
    let out = ok(
        "openssl",
        &[
            "x509",
            "-in",
            &pem.to_string_lossy(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        10,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit('=')
        .next()
        .expect("openssl printed a fingerprint")
        .to_string()
}
