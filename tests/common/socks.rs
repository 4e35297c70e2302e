//! Real SOCKS5 servers from Debian on loopback, for the proxy tests:
//! microsocks (CONNECT, user name and password) and dante (rules, BIND).
//! Each listens on 127.0.0.1 on a port of its own and opens its outgoing
//! connections from `OUTGOING_IP`, so the FTP server's log shows which
//! connections came through the proxy. Killed when dropped.
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::mount::wait_until;
use super::require;
use super::scratch::Scratch;

/// Where the proxies' connections to the server come from.
pub const OUTGOING_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

pub struct SocksServer {
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// dante's configuration and log.
    scratch: Scratch,
}

impl SocksServer {
    /// microsocks, asking for `user`/`password` when given.
    pub fn microsocks(auth: Option<(&str, &str)>) -> SocksServer {
        let program = require::program("microsocks", "microsocks");
        let port = free_port();
        let mut args = vec![
            "-i".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-b".into(),
            OUTGOING_IP.to_string(),
        ];
        if let Some((user, password)) = auth {
            args.extend(["-u".into(), user.into(), "-P".into(), password.into()]);
        }
        SocksServer::start(program, args, port, Scratch::new("microsocks"))
    }

    /// dante with `rules` (its `socks pass/block { … }` lines); no
    /// authentication.
    pub fn dante(rules: &str) -> SocksServer {
        require::root("dante (danted)");
        let program = require::program("danted", "dante-server");
        let port = free_port();
        let scratch = Scratch::new("danted");
        let config = format!(
            "logoutput: {log}\n\
             internal: 127.0.0.1 port = {port}\n\
             external: {OUTGOING_IP}\n\
             clientmethod: none\n\
             socksmethod: none\n\
             user.privileged: root\n\
             user.unprivileged: nobody\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
             {rules}\n",
            log = scratch.str("danted.log"),
        );
        std::fs::write(scratch.path("danted.conf"), config).unwrap();
        let args = vec![
            "-f".to_string(),
            scratch.str("danted.conf"),
            "-p".into(),
            scratch.str("danted.pid"),
        ];
        SocksServer::start(program, args, port, scratch)
    }

    fn start(program: PathBuf, args: Vec<String>, port: u16, scratch: Scratch) -> SocksServer {
        let mut server = SocksServer {
            port,
            program,
            args,
            child: None,
            scratch,
        };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.program)
            .args(&self.args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        self.child = Some(child);
        assert!(
            wait_until(20, || TcpStream::connect(("127.0.0.1", self.port)).is_ok()),
            "{} does not listen on port {}",
            self.program.display(),
            self.port
        );
    }

    /// Kills the server at once: every connection through it drops. dante
    /// runs several processes, all in the group the server was started in.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = child.id() as i32;
            // SAFETY: kill(2) on the process group of a child we started in
            // a group of its own; no memory is involved.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// `scheme://[user@]127.0.0.1:port`.
    pub fn url(&self, scheme: &str, user: Option<&str>) -> String {
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.scratch.path("danted.log")).unwrap_or_default()
    }
}

impl Drop for SocksServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}
