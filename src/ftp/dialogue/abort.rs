//! Abandoning a transfer whose data connection is already closed.
//!
//! Servers answer ABOR in several orders, and the client cannot tell from
//! one reply whether more will follow:
//!
//! | server                      | replies after ABOR, NOOP      |
//! |-----------------------------|-------------------------------|
//! | RFC 959 (vsftpd, ProFTPD)   | 426 (transfer), 226 (ABOR), 200 |
//! | transfer already over       | 226 (or 225), 200             |
//! | local error                 | 451, 226, 200                 |
//! | asynchronous (libunftp)     | 226, 200, then the transfer's 426 |
//!
//! So ABOR and a NOOP are sent together, and replies are collected until the
//! NOOP's 200: everything before it belongs to the transfer and the ABOR.
//! When the transfer's own reply was not among them (fewer than two replies,
//! none 4xx), it may still come: one reply is waited for briefly and
//! consumed, or it would be taken as the answer to the next command. A
//! session that says 421, or more than six things before the 200, is out of
//! step.
use super::{unexpected, Action, Command, Conversation, Input, ReadReply, Step, Wait};
use crate::ftp::error::{Error, Result};

/// Most replies accepted before the NOOP's 200.
const MAX_REPLIES_BEFORE_NOOP: usize = 6;

pub struct Abort {
    state: AbortState,
    /// Codes received before the NOOP's 200.
    before_noop: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbortState {
    SendingAbor,
    SendingNoop,
    Collecting,
    AwaitingLateReply,
}

impl Default for Abort {
    fn default() -> Abort {
        Abort::new()
    }
}

impl Abort {
    pub fn new() -> Abort {
        Abort {
            state: AbortState::SendingAbor,
            before_noop: Vec::new(),
        }
    }

    fn read(&mut self, state: AbortState) -> Result<Step<()>> {
        self.state = state;
        let (phase, wait) = match state {
            AbortState::AwaitingLateReply => ("late reply after ABOR", Wait::MaybeLate),
            _ => ("reading replies after ABOR", Wait::AfterAbort),
        };
        Ok(Step::Do(Action::Read(ReadReply {
            phase: phase.into(),
            wait,
        })))
    }

    fn transfer_answered(&self) -> bool {
        self.before_noop.len() >= 2 || self.before_noop.iter().any(|c| (400..500).contains(c))
    }
}

impl Conversation for Abort {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        self.state = AbortState::SendingAbor;
        Ok(Step::Do(Action::SendAhead(Command::new("ABOR"))))
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        match (self.state, input) {
            (AbortState::SendingAbor, Input::Done) => {
                self.state = AbortState::SendingNoop;
                Ok(Step::Do(Action::SendAhead(Command::new("NOOP"))))
            }
            (AbortState::SendingNoop, Input::Done) => self.read(AbortState::Collecting),
            (AbortState::Collecting, Input::Reply(reply)) => match reply.code {
                200 if self.transfer_answered() => Ok(Step::Finished(())),
                200 => self.read(AbortState::AwaitingLateReply),
                421 => Err(Error::protocol("ABOR", "the server closed the session")),
                code if self.before_noop.len() >= MAX_REPLIES_BEFORE_NOOP => {
                    Err(Error::protocol("ABOR", format!("unexpected reply {code}")))
                }
                code => {
                    self.before_noop.push(code);
                    self.read(AbortState::Collecting)
                }
            },
            (AbortState::AwaitingLateReply, Input::Reply(reply)) => {
                log::debug!("consumed a late reply after ABOR: {}", reply.code);
                Ok(Step::Finished(()))
            }
            (AbortState::AwaitingLateReply, Input::Silence) => Ok(Step::Finished(())),
            (_, input) => unexpected("ABOR", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{run, Expected, Lines};
    use super::*;

    const SENT: [&str; 2] = ["ABOR (ahead)", "NOOP (ahead)"];

    #[test]
    fn the_orders_of_abor_replies() {
        #[rustfmt::skip]
        let table: &[(&str, Lines, Expected<()>)] = &[
            ("RFC 959: transfer, then ABOR", &["426 Failure writing network stream.", "226 ABOR successful.", "200 NOOP ok."], Ok(())),
            ("the transfer had ended", &["226 ABOR ok", "200 ok", "silence"], Ok(())),
            ("no transfer to abort", &["225 No transfer to ABOR.", "200 ok", "silence"], Ok(())),
            ("local error", &["451 local error", "226 ABOR ok", "200 ok"], Ok(())),
            ("426 then 225", &["426 aborted", "225 ABOR ok", "200 ok"], Ok(())),
            ("the transfer's 226, then ABOR's 225", &["226 Transfer complete.", "225 ABOR ok", "200 ok"], Ok(())),
            ("a lone 4xx answers for the transfer", &["426 aborted", "200 ok"], Ok(())),
            ("asynchronous: the transfer's reply last", &["226 ABOR ok", "200 ok", "426 aborted"], Ok(())),
            ("only the NOOP answered", &["200 ok", "silence"], Ok(())),
            ("multi-line replies", &["426-Transfer aborted.\r\n426 Data connection closed.", "226-ABOR\r\n226 ok", "200 ok"], Ok(())),
            ("the server is going away", &["426 aborted", "421 Timeout."], Err("protocol error: ABOR: the server closed the session")),
            ("chatter without end", &["226 a", "226 b", "226 c", "226 d", "226 e", "226 f", "226 g"],
                Err("protocol error: ABOR: unexpected reply 226")),
        ];
        for (case, replies, outcome) in table {
            let (sent, actual) = run(Abort::new(), replies);
            assert_eq!(sent, SENT, "{case}");
            assert_eq!(actual, outcome.map_err(String::from), "{case}");
        }
    }

    #[test]
    fn waits_briefly_only_when_the_transfer_reply_is_missing() {
        let mut abort = Abort::new();
        abort.start().unwrap();
        abort.next(Input::Done).unwrap();
        abort.next(Input::Done).unwrap();
        let parse = super::super::script::parse;
        abort.next(Input::Reply(parse("226 ok"))).unwrap();
        let step = abort.next(Input::Reply(parse("200 ok"))).unwrap();
        assert_eq!(
            step,
            Step::Do(Action::Read(ReadReply {
                phase: "late reply after ABOR".into(),
                wait: Wait::MaybeLate
            }))
        );
    }
}
