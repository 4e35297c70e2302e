//! When our TLS close_notify goes out on a download's data connection.
//!
//! TLS lets each side close its own direction whenever it is done sending,
//! and a downloading client sends nothing after its handshake. But servers
//! differ in what they do with a close_notify that arrives while they send:
//! - vsftpd reads nothing on the data connection while it sends, and after
//!   its own close_notify it waits for the client's (its second
//!   `SSL_shutdown`) before it sends the final reply (226). A client that
//!   sends its close_notify only once the server's arrived pays a round
//!   trip per download for it; one sent with the end of the handshake is
//!   already there when vsftpd looks, and the 226 follows the data at once.
//! - pyftpdlib reads while it sends and ends the transfer at the client's
//!   close_notify: sent early, the download breaks off (a reset, measured
//!   with pyftpdlib 1.5.7; an earlier try saw it stall until a timeout).
//! - Others (ProFTPD, Pure-FTPd, libunftp) send the 226 without waiting.
//!
//! So the early order is taken only for servers known to take it, told by
//! their greeting (vsftpd's default banner is "(vsFTPd 3.0.3)"; a server
//! whose banner hides its name gets the order every server takes). Either
//! way the client still reads to the server's close_notify and waits for
//! the final reply before a download counts as complete: the order changes
//! when the server hears from us, not what we accept.
//!
//! The same greeting tells that the server reads no command during a
//! transfer, so an upload may send EPSV with the end of its bytes
//! (`Session::ask_next_data_with_end`).

/// The order of the two close_notify of a download's data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownloadEnd {
    /// Ours after the server's: the order every server takes.
    #[default]
    AfterServers,
    /// Ours right after the handshake, for a server that holds its final
    /// reply until it has it and reads nothing while it sends (vsftpd).
    WithHandshake,
}

impl DownloadEnd {
    /// The order for the server that greeted us with `greeting`.
    pub fn for_greeting(greeting: &str) -> DownloadEnd {
        if greeting.to_ascii_lowercase().contains("vsftpd") {
            DownloadEnd::WithHandshake
        } else {
            DownloadEnd::AfterServers
        }
    }

    /// Whether the server holds its final reply until it has our
    /// close_notify: then sending it late costs a round trip (counted in
    /// `Stats::round_trips`).
    pub fn server_waits_for_ours(self) -> bool {
        self == DownloadEnd::WithHandshake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vsftpd_gets_the_early_close_notify() {
        for (greeting, end) in [
            ("(vsFTPd 3.0.3)", DownloadEnd::WithHandshake),
            ("Welcome (vsftpd)", DownloadEnd::WithHandshake),
            ("pyftpdlib 1.5.7 ready.", DownloadEnd::AfterServers),
            (
                "ProFTPD Server (Debian) [::ffff:127.0.0.1]",
                DownloadEnd::AfterServers,
            ),
            (
                "---------- Welcome to Pure-FTPd [privsep] [TLS] ----------",
                DownloadEnd::AfterServers,
            ),
            ("", DownloadEnd::AfterServers),
        ] {
            assert_eq!(DownloadEnd::for_greeting(greeting), end, "{greeting}");
        }
    }
}
