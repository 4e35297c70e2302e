//! Opening a transfer (RETR, STOR, APPE, LIST, MLSD) once the data port is
//! chosen, and the reply that ends it.
//!
//! `REST n` (350) first when reading from an offset. Then the transfer
//! command, and two things must happen in some order: the data connection
//! opens, and the server accepts with 150/125. In passive mode the client
//! connected before sending the command, so the connection comes first. In
//! active mode the server connects to us before or after its 1xx, depending
//! on the server; a reply after the 1xx but before the connection is the
//! server giving up (425 "can't open data connection").
//!
//! The end of a transfer: one more reply, 226 or 250 for complete; any other
//! is the server's verdict on this transfer (426 aborted, 451 local error,
//! 552 quota), which leaves the session in step.
use super::{
    finished, send, unexpected, Action, Command, Conversation, Input, ReadReply, Step, Wait,
};
use crate::ftp::error::Result;

pub struct OpenTransfer {
    command: Command,
    offset: u64,
    state: OpenState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenState {
    Rest,
    /// The transfer command is sent; neither connection nor reply yet.
    Requested,
    /// The data connection is open; waiting for the 1xx.
    Connected,
    /// The 1xx came first (active mode); waiting for the connection.
    Accepted,
}

impl OpenTransfer {
    /// `verb` with `argument`, from byte `offset` (0: no REST).
    pub fn new(verb: &str, argument: Option<&[u8]>, offset: u64) -> OpenTransfer {
        OpenTransfer {
            command: Command {
                verb: verb.to_string(),
                argument: argument.map(<[u8]>::to_vec),
            },
            offset,
            state: OpenState::Rest,
        }
    }

    fn request(&mut self) -> Result<Step<()>> {
        self.state = OpenState::Requested;
        Ok(Step::Do(Action::OpenData(self.command.clone())))
    }

    fn refused(&self, reply: &crate::ftp::reply::Reply) -> crate::ftp::error::Error {
        super::refused(self.command.shown(), reply)
    }
}

impl Conversation for OpenTransfer {
    /// The server accepted the command and the data connection is open.
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        if self.offset > 0 {
            self.state = OpenState::Rest;
            return send(Command::with("REST", self.offset.to_string()));
        }
        self.request()
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        match (self.state, input) {
            (OpenState::Rest, Input::Reply(reply)) if reply.code == 350 => self.request(),
            (OpenState::Rest, Input::Reply(reply)) => {
                Err(super::refused(format!("REST {}", self.offset), &reply))
            }
            (OpenState::Requested, Input::DataConnected) => {
                self.state = OpenState::Connected;
                Ok(Step::Do(Action::Read(ReadReply {
                    phase: self.command.shown(),
                    wait: Wait::Reply,
                })))
            }
            (OpenState::Requested, Input::Reply(reply)) if reply.is_preliminary() => {
                self.state = OpenState::Accepted;
                Ok(Step::Do(Action::AwaitData))
            }
            (OpenState::Connected, Input::Reply(reply)) if reply.is_preliminary() => finished(()),
            (OpenState::Requested | OpenState::Connected, Input::Reply(reply)) => {
                Err(self.refused(&reply))
            }
            (OpenState::Accepted, Input::DataConnected) => finished(()),
            // Accepted, then given up before connecting (425).
            (OpenState::Accepted, Input::Reply(reply)) => Err(self.refused(&reply)),
            (_, input) => unexpected("opening a transfer", &input),
        }
    }
}

/// The reply after the data of a transfer.
pub struct TransferEnd {
    /// What the transfer is called in errors, e.g. "download (RETR/LIST)".
    what: String,
}

impl TransferEnd {
    pub fn new(what: &str) -> TransferEnd {
        TransferEnd {
            what: what.to_string(),
        }
    }
}

impl Conversation for TransferEnd {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        Ok(Step::Do(Action::Read(ReadReply {
            phase: self.what.clone(),
            wait: Wait::Reply,
        })))
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        match input {
            Input::Reply(reply) if reply.code == 226 || reply.code == 250 => finished(()),
            Input::Reply(reply) => Err(super::refused(self.what.clone(), &reply)),
            input => unexpected(&self.what, &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{error_of, run, Expected, Lines};
    use super::*;
    use crate::ftp::error::Kind;

    #[test]
    fn opening_transfers() {
        #[rustfmt::skip]
        let table: &[(&str, u64, Lines, Lines, Expected<()>)] = &[
            // Passive: connected before the command.
            ("RETR", 0, &["data", "150 Opening BINARY mode data connection"], &["RETR f"], Ok(())),
            ("RETR", 0, &["data", "125 Data connection already open"], &["RETR f"], Ok(())),
            ("RETR", 100, &["350 Restart position accepted (100).", "data", "150 ok"], &["REST 100", "RETR f"], Ok(())),
            ("STOR", 0, &["data", "150 Ok to send data."], &["STOR f"], Ok(())),
            ("APPE", 0, &["data", "150 ok"], &["APPE f"], Ok(())),
            // Active: the server connects before or after its 150.
            ("RETR", 0, &["150 ok", "data"], &["RETR f"], Ok(())),
            ("STOR", 0, &["150 ok", "425 Failed to establish connection."], &["STOR f"],
                Err("server refused STOR f: Failed to establish connection. (425) — the data connection could not be opened: a firewall or NAT between client and server may block passive ports; try --active")),
            ("RETR", 0, &["550 Failed to open file."], &["RETR f"], Err("server refused RETR f: Failed to open file. (550)")),
            ("RETR", 0, &["data", "550 Failed to open file."], &["RETR f"], Err("server refused RETR f: Failed to open file. (550)")),
            ("STOR", 0, &["data", "553 Could not create file."], &["STOR f"], Err("server refused STOR f: Could not create file. (553)")),
            ("RETR", 0, &["data", "226 Transfer done (but failed to open directory)."], &["RETR f"],
                Err("server refused RETR f: Transfer done (but failed to open directory). (226)")),
            ("RETR", 5, &["502 REST not implemented"], &["REST 5"], Err("server refused REST 5: REST not implemented (502)")),
            ("RETR", 5, &["350 ok", "data", "451 Requested action aborted"], &["REST 5", "RETR f"],
                Err("server refused RETR f: Requested action aborted (451)")),
        ];
        for (verb, offset, events, sent, outcome) in table {
            let (actual_sent, actual) = run(OpenTransfer::new(verb, Some(b"f"), *offset), events);
            assert_eq!(&actual_sent, sent, "{events:?}");
            assert_eq!(actual, outcome.map_err(String::from), "{events:?}");
        }
    }

    #[test]
    fn a_listing_of_the_current_directory_has_no_argument() {
        let (sent, outcome) = run(OpenTransfer::new("MLSD", None, 0), &["data", "150 ok"]);
        assert_eq!(sent, ["MLSD"]);
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn ends_of_transfers() {
        #[rustfmt::skip]
        let table: &[(Lines, Expected<()>)] = &[
            (&["226 Transfer complete."], Ok(())),
            (&["250 Requested file action okay, completed."], Ok(())),
            (&["426 Failure writing network stream."], Err("server refused upload (STOR/APPE): Failure writing network stream. (426)")),
            (&["425 Unable to build data connection: session reuse required"],
                Err("server refused upload (STOR/APPE): Unable to build data connection: session reuse required (425) — the server requires the data connection to resume the control connection's TLS session")),
            (&["451 Local error"], Err("server refused upload (STOR/APPE): Local error (451)")),
            (&["552 Quota exceeded"], Err("server refused upload (STOR/APPE): Quota exceeded (552) — the server is out of space or the account is over quota")),
            (&["226-File successfully transferred\r\n226 0.001 seconds"], Ok(())),
        ];
        for (replies, outcome) in table {
            let (sent, actual) = run(TransferEnd::new("upload (STOR/APPE)"), replies);
            assert!(sent.is_empty());
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }

    #[test]
    fn error_kinds_of_transfers() {
        let err = error_of(TransferEnd::new("download (RETR/LIST)"), &["426 aborted"]);
        assert!(err.is_transient() && !err.breaks_session(), "{err}");
        let err = error_of(
            OpenTransfer::new("RETR", Some(b"f"), 0),
            &["data", "550 No such file"],
        );
        assert_eq!(err.kind(), Kind::NotFound, "{err}");
    }
}
