//! Opening a transfer (RETR, STOR, APPE, LIST, MLSD) once the data port is
//! chosen, and the reply that ends it.
//!
//! `REST n` first when reading from an offset, sent ahead: the transfer
//! command follows at once, without waiting for the 350 (one round trip
//! fewer per ranged read; RFC 959 servers read commands in order). Then two
//! things must happen in some order: the data connection opens, and the
//! server accepts with 150/125. In passive mode the client connected before
//! sending the command, so the connection comes first. In active mode the
//! server connects to us before or after its 1xx, depending on the server;
//! a reply after the 1xx but before the connection is the server giving up
//! (425 "can't open data connection").
//!
//! Where a transfer starts (`Start`) goes ahead of its command, in the same
//! flight: `REST offset`, or for a range of a download `RANG first last`
//! (draft-bryan-ftp-range, where FEAT lists `RANG STREAM`: ProFTPD), after
//! which the server ends the transfer at the range's end, cleanly, with no
//! ABOR. Both are answered 350 and refused alike.
//!
//! A refused REST with the transfer command already sent: the server goes
//! on with the command, from byte 0. Its reply is read; when it accepted
//! (1xx), the transfer is abandoned (`Action::AbandonData`) and never
//! handed out, because its bytes are not the range that was asked for. The
//! outcome is the REST refusal either way.
//!
//! The end of a transfer: one more reply, 226 or 250 for complete; any other
//! is the server's verdict on this transfer (426 aborted, 451 local error,
//! 552 quota), which leaves the session in step. When EPSV was sent ahead
//! for the next transfer (see `data::NextData`), a server that reads
//! commands while a transfer ends (libunftp) answers it first: a 229 before
//! the transfer's reply is the EPSV's (no transfer ends with 229), kept as
//! `ahead`, and the transfer's reply is read after it.
//!
//! An upload may send `SIZE path` with the end of its bytes (the check of
//! `--verify`, without a round trip of its own). Then two replies come, in
//! an order that depends on the server: the transfer's and SIZE's, told
//! apart by their codes (no transfer ends with 213; SIZE never answers
//! 226/250). The size is taken only from a 213 that came after the
//! transfer's 226/250: a server that answers commands during a transfer
//! (ProFTPD dispatches them, libunftp runs them beside it) may have
//! measured a file not yet complete. Anything else leaves the size unknown,
//! and the caller asks again.
use super::{finished, unexpected, Action, Command, Conversation, Input, ReadReply, Step, Wait};
use crate::ftp::error::Result;

/// Where a transfer starts: from a byte (0: the start, no REST), or a
/// range of a download, `end` exclusive (RANG; never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    At(u64),
    Range { start: u64, end: u64 },
}

impl Start {
    /// The command that goes ahead of the transfer's, if any.
    fn command(self) -> Option<Command> {
        match self {
            Start::At(0) => None,
            Start::At(offset) => Some(Command::with("REST", offset.to_string())),
            Start::Range { start, end } => Some(Command::with(
                "RANG",
                format!("{start} {}", end.max(start + 1) - 1),
            )),
        }
    }

    /// The first byte of the transfer.
    pub fn offset(self) -> u64 {
        match self {
            Start::At(offset) | Start::Range { start: offset, .. } => offset,
        }
    }

    /// The bytes the transfer may carry at most (a range's length).
    pub fn length(self) -> Option<u64> {
        match self {
            Start::At(_) => None,
            Start::Range { start, end } => Some(end.saturating_sub(start)),
        }
    }
}

impl From<u64> for Start {
    fn from(offset: u64) -> Start {
        Start::At(offset)
    }
}

pub struct OpenTransfer {
    command: Command,
    /// REST or RANG, sent ahead of `command`.
    ahead: Option<Command>,
    /// Whether REST's reply was read (true when no REST was sent).
    rest_answered: bool,
    state: OpenState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenState {
    /// REST is sent ahead; the transfer command goes next.
    RestAhead,
    /// The transfer command is sent; neither connection nor reply yet.
    Requested,
    /// The data connection is open; waiting for the 1xx.
    Connected,
    /// The 1xx came first (active mode); waiting for the connection.
    Accepted,
    /// REST was refused (this reply) after the transfer command went out:
    /// waiting for that command's reply.
    RestRefused(crate::ftp::reply::Reply),
    /// The transfer from byte 0 that a refused REST left is being
    /// abandoned.
    Abandoning(crate::ftp::reply::Reply),
}

impl OpenTransfer {
    /// `verb` with `argument`, from `start` (`Start::At(0)`: no REST).
    pub fn new(verb: &str, argument: Option<&[u8]>, start: impl Into<Start>) -> OpenTransfer {
        let ahead = start.into().command();
        OpenTransfer {
            command: Command {
                verb: verb.to_string(),
                argument: argument.map(<[u8]>::to_vec),
            },
            rest_answered: ahead.is_none(),
            ahead,
            state: OpenState::RestAhead,
        }
    }

    fn request(&mut self) -> Result<Step<()>> {
        self.state = OpenState::Requested;
        Ok(Step::Do(Action::OpenData(self.command.clone())))
    }

    fn refused(&self, reply: &crate::ftp::reply::Reply) -> crate::ftp::error::Error {
        super::refused(self.command.shown(), reply)
    }

    fn rest_refused(&self, reply: &crate::ftp::reply::Reply) -> crate::ftp::error::Error {
        let ahead = self.ahead.as_ref().map_or_else(String::new, Command::shown);
        super::refused(ahead, reply)
    }

    /// REST's reply, which comes before anything of the transfer command:
    /// 350 goes on waiting for what `state` waited for; anything else is a
    /// refusal, and the transfer command's reply is read next.
    fn rest_reply(&mut self, reply: crate::ftp::reply::Reply) -> Result<Step<()>> {
        self.rest_answered = true;
        if reply.code != 350 {
            self.state = OpenState::RestRefused(reply);
            return read(&self.command);
        }
        match self.state {
            // Active mode: the server connects once it reads the command.
            OpenState::Requested => Ok(Step::Do(Action::AwaitData)),
            _ => read(&self.command),
        }
    }
}

fn read(command: &Command) -> Result<Step<()>> {
    Ok(Step::Do(Action::Read(ReadReply {
        phase: command.shown(),
        wait: Wait::Reply,
    })))
}

impl Conversation for OpenTransfer {
    /// The server accepted the command and the data connection is open.
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        if let Some(ahead) = self.ahead.clone() {
            self.state = OpenState::RestAhead;
            return Ok(Step::Do(Action::SendAhead(ahead)));
        }
        self.request()
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        let state = self.state.clone();
        match (state, input) {
            (OpenState::RestAhead, Input::Done) => self.request(),
            (OpenState::RestRefused(rest), Input::Reply(reply)) if reply.is_preliminary() => {
                // A transfer from byte 0 started: never the range asked for.
                self.state = OpenState::Abandoning(rest);
                Ok(Step::Do(Action::AbandonData))
            }
            (OpenState::RestRefused(rest), Input::Reply(_))
            | (OpenState::Abandoning(rest), Input::Done) => Err(self.rest_refused(&rest)),
            (OpenState::Requested | OpenState::Connected, Input::Reply(reply))
                if !self.rest_answered =>
            {
                self.rest_reply(reply)
            }
            (OpenState::Requested, Input::DataConnected) => {
                self.state = OpenState::Connected;
                read(&self.command)
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
    ahead: Ahead,
    /// Whether SIZE was sent with the end of the bytes.
    size_asked: bool,
    /// The transfer's reply and SIZE's, in the order they came.
    replies: Vec<crate::ftp::reply::Reply>,
    size: Option<u64>,
    /// The EPSV sent ahead was refused before the transfer's reply.
    epsv_refused_early: bool,
}

/// The reply to an EPSV sent ahead of a transfer's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// None was sent.
    Nothing,
    /// Sent; its reply comes after the transfer's.
    Unanswered,
    /// Its 229 came first, with this port.
    Port(u16),
    /// Its 229 came first, with no port in it.
    NoPort,
}

impl TransferEnd {
    /// `epsv_ahead`: an EPSV was sent after the transfer's data.
    pub fn new(what: &str, epsv_ahead: bool) -> TransferEnd {
        TransferEnd {
            what: what.to_string(),
            ahead: if epsv_ahead {
                Ahead::Unanswered
            } else {
                Ahead::Nothing
            },
            size_asked: false,
            replies: Vec::new(),
            size: None,
            epsv_refused_early: false,
        }
    }

    /// SIZE was sent with the end of the bytes; its reply comes too.
    pub fn with_size_asked(mut self) -> TransferEnd {
        self.size_asked = true;
        self
    }

    /// The size SIZE gave after the transfer's end (see the module comment).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Whether SIZE's reply came before the transfer's end: the server
    /// reads commands during transfers.
    pub fn size_answered_early(&self) -> bool {
        let ended = |r: &crate::ftp::reply::Reply| r.code == 226 || r.code == 250;
        match self.replies.as_slice() {
            [first, _] => self.size_asked && !ended(first) && self.replies.iter().any(ended),
            _ => false,
        }
    }

    /// Whether SIZE's reply came after the transfer's end (226/250): the
    /// server reads commands only between transfers.
    pub fn size_answered_late(&self) -> bool {
        let ended = |r: &crate::ftp::reply::Reply| r.code == 226 || r.code == 250;
        match self.replies.as_slice() {
            [first, second] => self.size_asked && ended(first) && !ended(second),
            _ => false,
        }
    }

    /// Whether the EPSV sent ahead was refused as a command (500-504)
    /// before the transfer's reply: the server reads commands during
    /// transfers.
    pub fn epsv_refused_early(&self) -> bool {
        self.epsv_refused_early
    }

    /// What became of the EPSV sent ahead (also after a failed transfer).
    pub fn ahead(&self) -> Ahead {
        self.ahead
    }

    /// Whether SIZE, sent with the end of the bytes, was answered already
    /// (a 213, a 550, or a refusal of the command).
    fn size_answered(&self) -> bool {
        self.size_asked
            && self
                .replies
                .iter()
                .any(|r| r.code == 213 || r.code == 550 || refuses_command(r.code))
    }

    fn read(&self) -> Result<Step<()>> {
        Ok(Step::Do(Action::Read(ReadReply {
            phase: self.what.clone(),
            wait: Wait::Reply,
        })))
    }
}

impl Conversation for TransferEnd {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        self.read()
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        let Input::Reply(reply) = input else {
            return unexpected(&self.what, &input);
        };
        if reply.code == 229 && self.ahead == Ahead::Unanswered {
            self.ahead = match crate::ftp::address::parse_epsv(reply.first_line()) {
                Some(port) => Ahead::Port(port),
                None => Ahead::NoPort,
            };
            return self.read();
        }
        // A command refused as such is no transfer's verdict (that comes
        // after the 150): it answers a command sent with the end of the
        // bytes, SIZE first, then EPSV. Pure-FTPd, when they arrive while
        // it still receives, answers both "500 Unknown command" before its
        // 226.
        if refuses_command(reply.code)
            && self.ahead == Ahead::Unanswered
            && (!self.size_asked || self.size_answered())
        {
            self.ahead = Ahead::NoPort;
            self.epsv_refused_early = true;
            return self.read();
        }
        self.replies.push(reply);
        if self.replies.len() < 1 + usize::from(self.size_asked) {
            return self.read();
        }
        let ended = |r: &crate::ftp::reply::Reply| r.code == 226 || r.code == 250;
        if let [first, second] = self.replies.as_slice() {
            if ended(first) && second.code == 213 {
                self.size = super::digest::parse_size_reply(second).ok();
            }
        }
        if self.replies.iter().any(ended) {
            return finished(());
        }
        // Failed: the verdict is the reply that is not SIZE's 213.
        let verdict = self.replies.iter().find(|r| r.code != 213);
        let verdict = verdict.unwrap_or(&self.replies[0]);
        Err(super::refused(self.what.clone(), verdict))
    }
}

/// Replies that refuse a command as such (syntax, not implemented, bad
/// sequence), never a transfer's verdict.
fn refuses_command(code: u16) -> bool {
    (500..=504).contains(&code)
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
            // REST goes ahead of the transfer command; its 350 comes first.
            ("RETR", 100, &["data", "350 Restart position accepted (100).", "150 ok"], &["REST 100 (ahead)", "RETR f"], Ok(())),
            ("RETR", 100, &["350 ok", "150 ok", "data"], &["REST 100 (ahead)", "RETR f"], Ok(())),
            ("RETR", 100, &["350 ok", "data", "150 ok"], &["REST 100 (ahead)", "RETR f"], Ok(())),
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
            // REST refused, RETR already sent: the server reads the whole
            // file; that transfer is abandoned, never taken as the range.
            ("RETR", 5, &["data", "502 REST not implemented", "150 ok"], &["REST 5 (ahead)", "RETR f", "abandon"],
                Err("server refused REST 5: REST not implemented (502)")),
            ("RETR", 5, &["502 REST not implemented", "150 ok"], &["REST 5 (ahead)", "RETR f", "abandon"],
                Err("server refused REST 5: REST not implemented (502)")),
            ("RETR", 5, &["data", "502 REST not implemented", "550 no"], &["REST 5 (ahead)", "RETR f"],
                Err("server refused REST 5: REST not implemented (502)")),
            ("RETR", 5, &["data", "350 ok", "451 Requested action aborted"], &["REST 5 (ahead)", "RETR f"],
                Err("server refused RETR f: Requested action aborted (451)")),
        ];
        for (verb, offset, events, sent, outcome) in table {
            let (actual_sent, actual) = run(OpenTransfer::new(verb, Some(b"f"), *offset), events);
            assert_eq!(&actual_sent, sent, "{events:?}");
            assert_eq!(actual, outcome.map_err(String::from), "{events:?}");
        }
    }

    /// A range goes ahead as RANG with its last byte (inclusive), answered
    /// and refused as REST is.
    #[test]
    fn a_range_goes_ahead_as_rang() {
        let range = Start::Range {
            start: 1000,
            end: 2000,
        };
        assert_eq!((range.offset(), range.length()), (1000, Some(1000)));
        #[rustfmt::skip]
        let table: &[(Lines, Lines, Expected<()>)] = &[
            (&["data", "350 Transferring byte range of 1000 bytes starting from 1000", "150 ok"],
                &["RANG 1000 1999 (ahead)", "RETR f"], Ok(())),
            (&["data", "500 RANG not understood", "150 ok"], &["RANG 1000 1999 (ahead)", "RETR f", "abandon"],
                Err("server refused RANG 1000 1999: RANG not understood (500)")),
        ];
        for (events, sent, outcome) in table {
            let (actual_sent, actual) = run(OpenTransfer::new("RETR", Some(b"f"), range), events);
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
            let (sent, actual) = run(TransferEnd::new("upload (STOR/APPE)", false), replies);
            assert!(sent.is_empty());
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }

    #[test]
    fn error_kinds_of_transfers() {
        let err = error_of(
            TransferEnd::new("download (RETR/LIST)", false),
            &["426 aborted"],
        );
        assert!(err.is_transient() && !err.breaks_session(), "{err}");
        let err = error_of(
            OpenTransfer::new("RETR", Some(b"f"), 0),
            &["data", "550 No such file"],
        );
        assert_eq!(err.kind(), Kind::NotFound, "{err}");
    }

    #[test]
    fn the_reply_to_an_epsv_sent_ahead_may_come_first() {
        #[rustfmt::skip]
        let table: &[(bool, Lines, Expected<()>, Ahead)] = &[
            // In order (vsftpd): the transfer's reply; EPSV's comes later.
            (true, &["226 Transfer complete."], Ok(()), Ahead::Unanswered),
            // Out of order (libunftp answers commands while a transfer ends).
            (true, &["229 Entering Extended Passive Mode (|||6446|)", "226 ok"], Ok(()), Ahead::Port(6446)),
            (true, &["229 ok (|||0|)", "226 ok"], Ok(()), Ahead::NoPort),
            (true, &["229 ok (|||6446|)", "451 Local error"],
                Err("server refused upload (STOR/APPE): Local error (451)"), Ahead::Port(6446)),
            // Refused while the transfer still ran (Pure-FTPd).
            (true, &["500 Unknown command", "226 ok"], Ok(()), Ahead::NoPort),
            // Without EPSV ahead a 229 is no end of a transfer.
            (false, &["229 ok (|||6446|)"],
                Err("server refused upload (STOR/APPE): ok (|||6446|) (229)"), Ahead::Nothing),
        ];
        for (epsv_ahead, replies, outcome, ahead) in table {
            let mut end = TransferEnd::new("upload (STOR/APPE)", *epsv_ahead);
            let (sent, actual) = run(&mut end, replies);
            assert!(sent.is_empty());
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
            assert_eq!(end.ahead(), *ahead, "{replies:?}");
        }
    }

    #[test]
    fn the_size_sent_with_the_end_of_an_upload_counts_only_after_its_226() {
        #[rustfmt::skip]
        let table: &[(Lines, Expected<()>, Option<u64>)] = &[
            (&["226 Transfer complete.", "213 4096"], Ok(()), Some(4096)),
            // Measured during the transfer: maybe not the whole file.
            (&["213 1000", "226 Transfer complete."], Ok(()), None),
            (&["550 No such file (yet)", "226 Transfer complete."], Ok(()), None),
            (&["226 ok", "550 gone already"], Ok(()), None),
            (&["226 ok", "213 not a number"], Ok(()), None),
            (&["226 ok", "229 ok (|||6446|)", "213 10"], Ok(()), Some(10)),
            (&["229 ok (|||6446|)", "226 ok", "213 10"], Ok(()), Some(10)),
            (&["552 Quota exceeded", "213 0"],
                Err("server refused upload (STOR/APPE): Quota exceeded (552) — the server is out of space or the account is over quota"), None),
            (&["213 0", "451 Local error"], Err("server refused upload (STOR/APPE): Local error (451)"), None),
            (&["451 Local error", "550 no file"], Err("server refused upload (STOR/APPE): Local error (451)"), None),
            // Pure-FTPd, still receiving when SIZE and EPSV came: both
            // refused before the 226.
            (&["500 Unknown command", "500 Unknown command", "226 ok"], Ok(()), None),
            (&["550 No such file (yet)", "500 Unknown command", "226 ok"], Ok(()), None),
            (&["552 Quota exceeded", "500 Unknown command"],
                Err("server refused upload (STOR/APPE): Quota exceeded (552) — the server is out of space or the account is over quota"), None),
        ];
        for (replies, outcome, size) in table {
            let mut end = TransferEnd::new("upload (STOR/APPE)", true).with_size_asked();
            let (sent, actual) = run(&mut end, replies);
            assert!(sent.is_empty());
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
            assert_eq!(end.size(), *size, "{replies:?}");
            let early = replies
                .iter()
                .position(|r| r.starts_with("213") || r.starts_with("550") || r.starts_with("500"))
                < replies.iter().position(|r| r.starts_with("226"));
            assert_eq!(end.size_answered_early(), early, "{replies:?}");
            let refused = replies.iter().filter(|r| r.starts_with("500")).count();
            let epsv_refused = refused == 2 || replies[0].starts_with("550") && refused == 1;
            assert_eq!(end.epsv_refused_early(), epsv_refused, "{replies:?}");
            if epsv_refused {
                assert_eq!(end.ahead(), Ahead::NoPort, "{replies:?}");
            }
        }
    }
}
