//! What a server does that the standard leaves open, told by its greeting,
//! and the rules that follow from it. One family is told apart so far:
//! vsftpd (its default banner is "(vsFTPd 3.0.3)"); a server whose banner
//! hides its name gets the rules every server takes.
//!
//! **When our TLS close_notify goes out on a download's data connection.**
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
//! Either way the client still reads to the server's close_notify and
//! waits for the final reply before a download counts as complete: the
//! order changes when the server hears from us, not what we accept.
//!
//! **Commands during a transfer.** vsftpd reads no command until a
//! transfer's reply is sent, so an upload may send EPSV with the end of its
//! bytes (`Session::ask_next_data_with_end`): it is answered after the 226.
//! pyftpdlib reads commands while it receives and, given EPSV before it has
//! seen an upload's end, closes the upload's data connection and never
//! answers the upload.

/// The server families whose behaviour the client relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerFamily {
    /// vsftpd: holds a download's final reply until it has our
    /// close_notify, and reads no command during a transfer.
    Vsftpd,
    /// Any other server, or one whose greeting does not say: only what
    /// every server takes.
    #[default]
    Other,
}

impl ServerFamily {
    /// The family of the server that greeted us with `greeting`.
    pub fn for_greeting(greeting: &str) -> ServerFamily {
        if greeting.to_ascii_lowercase().contains("vsftpd") {
            ServerFamily::Vsftpd
        } else {
            ServerFamily::Other
        }
    }

    /// Whether our close_notify goes out right behind a download's
    /// handshake (otherwise after the server's).
    pub fn close_notify_with_handshake(self) -> bool {
        self == ServerFamily::Vsftpd
    }

    /// Whether the server holds its final reply until it has our
    /// close_notify: then sending it late costs a round trip (counted in
    /// `Stats::round_trips`).
    pub fn waits_for_our_close_notify(self) -> bool {
        self == ServerFamily::Vsftpd
    }

    /// Whether the server reads no command until a transfer's reply is
    /// sent, so one sent with an upload's end is answered after it.
    pub fn reads_no_commands_during_transfers(self) -> bool {
        self == ServerFamily::Vsftpd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vsftpd_gets_its_rules() {
        for (greeting, family) in [
            ("(vsFTPd 3.0.3)", ServerFamily::Vsftpd),
            ("Welcome (vsftpd)", ServerFamily::Vsftpd),
            ("pyftpdlib 1.5.7 ready.", ServerFamily::Other),
            (
                "ProFTPD Server (Debian) [::ffff:127.0.0.1]",
                ServerFamily::Other,
            ),
            (
                "---------- Welcome to Pure-FTPd [privsep] [TLS] ----------",
                ServerFamily::Other,
            ),
            ("", ServerFamily::Other),
        ] {
            assert_eq!(ServerFamily::for_greeting(greeting), family, "{greeting}");
            let vsftpd = family == ServerFamily::Vsftpd;
            assert_eq!(family.close_notify_with_handshake(), vsftpd);
            assert_eq!(family.waits_for_our_close_notify(), vsftpd);
            assert_eq!(family.reads_no_commands_during_transfers(), vsftpd);
        }
    }
}
