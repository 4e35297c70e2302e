//! The rules of the FTP control conversation, as state machines with no I/O.
//!
//! Each conversation (logging in, choosing a passive or active data port,
//! opening a transfer, ending one, abandoning one with ABOR) is a type that is
//! told what happened so far (`Input`: a reply, the data connection being
//! there, silence, or "done") and answers with the next `Step`: an `Action`
//! for the driver to perform, or the outcome. `Session` is the driver: it owns
//! the sockets, TLS, timeouts and counters, and does exactly what the steps
//! say. Keeping the rules here lets them be read in one place and tested as
//! tables of reply sequences, without a server (the style of `reply.rs` and of
//! ureq-proto).
//!
//! The machines, their states and transitions (`--reply-->`):
//!
//! - `login::Greeting`: [implicit: StartTls] → ReadingGreeting --120--> same,
//!   --220--> [explicit: AuthTls --234--> StartTls] → done; any other reply
//!   fails (a refused AUTH TLS never falls back to plaintext).
//! - `login::Credentials`: User --230--> done, --331/332--> Pass
//!   --230/202--> done; anything else fails as a login refusal.
//! - `login::Setup`: [TLS: Pbsz --200--> Prot --200-->] Type --200--> Feat
//!   --any--> [UTF8 offered: OptsUtf8 --any-->] done with the features.
//! - `login::ClearControl`: Ccc --200--> EndTls → done (cleared); --4xx/5xx-->
//!   done (refused, TLS kept); anything else fails.
//! - `endpoint::Passive`: [Epsv --229--> done; --500/502/504/522 (IPv4)-->
//!   learn "EPSV refused"] → Pasv --227--> done with the address to connect to.
//! - `endpoint::Active`: Eprt --200--> done; --500/502/504/522 (IPv4)--> Port
//!   --200--> done.
//! - `transfer::OpenTransfer`: [REST sent ahead] Requested: the data
//!   connection and the 1xx reply may come in either order (active mode);
//!   both make it done, a negative reply before either fails. REST's reply
//!   comes first: 350 goes on; anything else fails after the transfer
//!   command's reply, abandoning (ABOR) a transfer that it started.
//! - `transfer::TransferEnd`: the final reply, 226/250 done, else fails;
//!   with EPSV sent ahead, a 229 before it is EPSV's, kept for the next
//!   transfer.
//! - `digest::Hash`: [OPTS HASH name --200-->] [RANG s e --350-->] HASH
//!   path --213 (checked: algorithm, range, length, hex)--> [RANG 1 0 --350,
//!   anything else drops the session-->] done with the digest.
//! - `abort::Abort`: ABOR and NOOP sent together, then replies are collected
//!   until NOOP's 200; when the transfer's own reply was not among them, one
//!   late reply is waited for briefly (asynchronous servers send it last).
use super::error::{Error, Result};
use super::reply::Reply;

pub mod abort;
pub mod digest;
pub mod endpoint;
pub mod login;
pub mod transfer;

/// One command line, as the machines ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub verb: String,
    pub argument: Option<Vec<u8>>,
}

impl Command {
    pub fn new(verb: &str) -> Command {
        Command {
            verb: verb.to_string(),
            argument: None,
        }
    }

    pub fn with(verb: &str, argument: impl Into<Vec<u8>>) -> Command {
        Command {
            verb: verb.to_string(),
            argument: Some(argument.into()),
        }
    }

    fn is_secret(&self) -> bool {
        self.verb == "PASS"
    }

    /// What logs and errors show of the command (never a password).
    pub fn shown(&self) -> String {
        if self.is_secret() {
            return "PASS ****".to_string();
        }
        shown_command(&self.verb, self.argument.as_deref())
    }

    /// The bytes to send, without the line ending; refuses arguments that
    /// would inject a second command.
    pub fn line(&self) -> Result<Vec<u8>> {
        let mut line = self.verb.as_bytes().to_vec();
        if let Some(argument) = &self.argument {
            let what = if self.is_secret() {
                "password"
            } else {
                "file name"
            };
            check_argument(argument, what)?;
            line.push(b' ');
            line.extend_from_slice(argument);
        }
        Ok(line)
    }
}

/// What the driver does next, then tells the machine about with an `Input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the command and read its reply (`Input::Reply`).
    Send(Command),
    /// Send the command without waiting for its reply (`Input::Done`); a
    /// later `Read` reads the replies.
    SendAhead(Command),
    /// Read the next reply without sending anything (`Input::Reply`).
    Read(ReadReply),
    /// Switch the control connection to TLS (`Input::Done`).
    StartTls,
    /// End TLS on the control connection, close_notify both ways, and go
    /// on in clear text (`Input::Done`).
    EndTls,
    /// Remember a fact about the server for all its sessions (`Input::Done`).
    Learn(Fact),
    /// Send the transfer command, then tell whichever comes first: the data
    /// connection (`Input::DataConnected`; in passive mode it is there
    /// already) or a reply (`Input::Reply`).
    OpenData(Command),
    /// The transfer command was accepted; wait for the server to connect
    /// (`Input::DataConnected`) or to say something (`Input::Reply`).
    AwaitData,
    /// Close the data connection of the transfer being opened and abandon
    /// the transfer (ABOR, see `abort`); `Input::Done`.
    AbandonData,
}

/// A reply to read without sending anything, and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReply {
    /// What errors and timeouts say was being waited for.
    pub phase: String,
    pub wait: Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The control connection's reply timeout.
    Reply,
    /// The bound on replies after ABOR (at most 10 s, however long the reply
    /// timeout is: a session that does not answer is given up).
    AfterAbort,
    /// A short wait for a reply that may never come: silence is an answer
    /// (`Input::Silence`), not an error.
    MaybeLate,
}

/// What one session learns about the server that all its sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The server does not know EPSV: later transfers go straight to PASV.
    EpsvRefused,
}

/// What happened, told to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Reply(Reply),
    /// The action that gave no reply is done (sent, TLS started, learnt).
    Done,
    /// The data connection of the transfer is open.
    DataConnected,
    /// A `Wait::MaybeLate` read ran out without a reply.
    Silence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    Do(Action),
    /// The conversation is over.
    Finished(T),
}

/// A conversation the driver can run: `start`, then `next` with the input for
/// each action until the step is `Finished`. An `Err` ends it as well.
pub trait Conversation {
    type Outcome;
    fn start(&mut self) -> Result<Step<Self::Outcome>>;
    fn next(&mut self, input: Input) -> Result<Step<Self::Outcome>>;
}

/// A machine run by reference, to read what it kept after its end.
impl<C: Conversation> Conversation for &mut C {
    type Outcome = C::Outcome;
    fn start(&mut self) -> Result<Step<Self::Outcome>> {
        (**self).start()
    }
    fn next(&mut self, input: Input) -> Result<Step<Self::Outcome>> {
        (**self).next(input)
    }
}

fn send<T>(command: Command) -> Result<Step<T>> {
    Ok(Step::Do(Action::Send(command)))
}

fn finished<T>(outcome: T) -> Result<Step<T>> {
    Ok(Step::Finished(outcome))
}

/// An input that the machine did not ask for: a driver bug, reported rather
/// than guessed around.
fn unexpected<T>(conversation: &str, input: &Input) -> Result<T> {
    let what = match input {
        Input::Reply(reply) => format!("reply {} {}", reply.code, reply.text()),
        Input::Done => "an action's end".to_string(),
        Input::DataConnected => "a data connection".to_string(),
        Input::Silence => "silence".to_string(),
    };
    Err(Error::protocol(
        conversation,
        format!("{what} arrived where nothing was expected"),
    ))
}

/// The server answered `command` with something other than what it needed.
pub fn refused(command: impl Into<String>, reply: &Reply) -> Error {
    Error::Reply {
        command: command.into(),
        code: reply.code,
        text: reply.text(),
    }
}

/// Refuses bytes that would end the command line early and inject a command.
pub fn check_argument(arg: &[u8], what: &str) -> Result<()> {
    if arg.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Error::InvalidInput(format!(
            "{what} contains CR, LF or NUL, which would inject FTP commands"
        )));
    }
    Ok(())
}

/// What logs and errors show of a command.
pub fn shown_command(verb: &str, argument: Option<&[u8]>) -> String {
    match argument {
        Some(arg) => format!("{verb} {}", String::from_utf8_lossy(arg)),
        None => verb.to_string(),
    }
}

/// Runs machines against scripted replies, for the tables of the tests.
#[cfg(test)]
pub(crate) mod script {
    use super::*;
    use crate::ftp::reply::parse_reply;

    /// Events of a script, or commands sent, as `run` shows them.
    pub type Lines = &'static [&'static str];
    /// An expected outcome, or the expected error's message.
    pub type Expected<T> = std::result::Result<T, &'static str>;

    /// Runs `talk`, answering from `events`: a reply's lines (CRLF between
    /// lines of a multi-line reply, none at the end), `"data"` for the data
    /// connection arriving, `"silence"` for a late read that runs out.
    /// Returns what was sent (as shown; `(ahead)` marks pipelined commands,
    /// `TLS` a switch to TLS, `learn ...` a fact) and the outcome, or the
    /// error's message. Every scripted event must be used.
    pub fn run<C: Conversation>(
        talk: C,
        events: &[&str],
    ) -> (Vec<String>, std::result::Result<C::Outcome, String>) {
        let (sent, outcome) = run_to_error(talk, events);
        (sent, outcome.map_err(|e| e.to_string()))
    }

    /// The error that ends the script, for checking its kind.
    pub fn error_of<C: Conversation>(talk: C, events: &[&str]) -> Error {
        match run_to_error(talk, events).1 {
            Ok(_) => panic!("the script {events:?} succeeded"),
            Err(e) => e,
        }
    }

    fn run_to_error<C: Conversation>(
        mut talk: C,
        events: &[&str],
    ) -> (Vec<String>, Result<C::Outcome>) {
        let mut sent = Vec::new();
        let mut events = events.iter();
        let mut step = talk.start();
        loop {
            let action = match step {
                Err(e) => break (sent, Err(e)),
                Ok(Step::Finished(outcome)) => {
                    let left: Vec<_> = events.collect();
                    assert!(left.is_empty(), "events left unused: {left:?}");
                    break (sent, Ok(outcome));
                }
                Ok(Step::Do(action)) => action,
            };
            let next_event = |events: &mut std::slice::Iter<&str>| -> Input {
                let event = events.next().expect("the script ran out of events");
                match *event {
                    "data" => Input::DataConnected,
                    "silence" => Input::Silence,
                    text => Input::Reply(parse(text)),
                }
            };
            let input = match action {
                Action::Send(command) => {
                    sent.push(command.shown());
                    next_event(&mut events)
                }
                Action::SendAhead(command) => {
                    sent.push(format!("{} (ahead)", command.shown()));
                    Input::Done
                }
                Action::Read(_) | Action::AwaitData => next_event(&mut events),
                Action::AbandonData => {
                    sent.push("abandon".to_string());
                    Input::Done
                }
                Action::OpenData(command) => {
                    sent.push(command.shown());
                    next_event(&mut events)
                }
                Action::StartTls => {
                    sent.push("TLS".to_string());
                    Input::Done
                }
                Action::EndTls => {
                    sent.push("end TLS".to_string());
                    Input::Done
                }
                Action::Learn(fact) => {
                    sent.push(format!("learn {fact:?}"));
                    Input::Done
                }
            };
            step = talk.next(input);
        }
    }

    pub fn parse(text: &str) -> Reply {
        let bytes = format!("{text}\r\n");
        let (reply, used) = parse_reply(bytes.as_bytes())
            .expect("a scripted reply parses")
            .expect("a scripted reply is complete");
        assert_eq!(used, bytes.len(), "one reply per event: {text:?}");
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_line_breaks_in_arguments() {
        assert!(check_argument(b"a\r\nDELE b", "file name").is_err());
        assert!(check_argument(b"a\nb", "file name").is_err());
        assert!(check_argument(b"a\0b", "file name").is_err());
        assert!(check_argument("naïve name with spaces".as_bytes(), "file name").is_ok());
    }

    #[test]
    fn commands_as_sent_and_as_shown() {
        let retr = Command::with("RETR", "a b");
        assert_eq!(retr.line().unwrap(), b"RETR a b");
        assert_eq!(retr.shown(), "RETR a b");
        assert_eq!(Command::new("NOOP").line().unwrap(), b"NOOP");
        let pass = Command::with("PASS", "s3cret");
        assert_eq!(pass.line().unwrap(), b"PASS s3cret");
        assert_eq!(pass.shown(), "PASS ****");
    }

    #[test]
    fn an_input_out_of_turn_is_an_error_not_a_guess() {
        let mut greeting = login::Greeting::new(crate::ftp::config::Security::Explicit);
        assert!(greeting.start().is_ok());
        let err = greeting.next(Input::DataConnected).unwrap_err();
        assert_eq!(err.kind(), crate::ftp::error::Kind::Protocol, "{err}");
        let mut abort = abort::Abort::new();
        assert!(abort.start().is_ok());
        let err = abort.next(Input::Silence).unwrap_err();
        assert_eq!(err.kind(), crate::ftp::error::Kind::Protocol, "{err}");
    }

    #[test]
    fn injected_lines_are_named_by_what_they_are() {
        let err = Command::with("DELE", "a\r\nRMD b").line().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid request: file name contains CR, LF or NUL, which would inject FTP commands"
        );
        let err = Command::with("PASS", "a\nb").line().unwrap_err();
        assert!(err.to_string().contains("password contains CR"), "{err}");
        assert!(!err.to_string().contains("a\nb"), "{err}");
    }
}
