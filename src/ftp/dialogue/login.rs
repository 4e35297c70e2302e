//! Logging in, as three conversations: the driver holds the login gate (one
//! session at a time tries credentials the server has not accepted yet)
//! between the first and the second, and settles it with the second's
//! outcome.
//!
//! 1. `Greeting`: TLS first for implicit FTPS, the 220 greeting (after any
//!    120 "ready in n minutes"), then `AUTH TLS` and TLS for explicit FTPS.
//! 2. `Credentials`: `USER`, then `PASS` when asked for.
//! 3. `Setup`: `PBSZ 0` and `PROT P` on TLS (refused is an error: data never
//!    goes in plaintext), `TYPE I`, `FEAT`, and `OPTS UTF8 ON` where FEAT
//!    lists UTF8.
use super::{
    finished, send, unexpected, Action, Command, Conversation, Input, ReadReply, Step, Wait,
};
use crate::ftp::config::Security;
use crate::ftp::error::{Error, Result};
use crate::ftp::features::Features;
use crate::ftp::reply::Reply;

pub struct Greeting {
    security: Security,
    state: GreetingState,
    /// The 220's text, once read (see `ftp::server_family`).
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GreetingState {
    ImplicitTls,
    ReadingGreeting,
    AuthTls,
    ExplicitTls,
}

impl Greeting {
    pub fn new(security: Security) -> Greeting {
        Greeting {
            security,
            state: GreetingState::ReadingGreeting,
            text: String::new(),
        }
    }

    /// The greeting's text ("(vsFTPd 3.0.3)"), empty before it came.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn read_greeting(&mut self) -> Result<Step<()>> {
        self.state = GreetingState::ReadingGreeting;
        Ok(Step::Do(Action::Read(ReadReply {
            phase: "waiting for the server's greeting".into(),
            wait: Wait::Reply,
        })))
    }
}

impl Conversation for Greeting {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        if self.security == Security::Implicit {
            self.state = GreetingState::ImplicitTls;
            return Ok(Step::Do(Action::StartTls));
        }
        self.read_greeting()
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        match (self.state, input) {
            (GreetingState::ImplicitTls, Input::Done) => self.read_greeting(),
            (GreetingState::ReadingGreeting, Input::Reply(reply)) => match reply.code {
                220 => {
                    self.text = reply.text();
                    if self.security == Security::Explicit {
                        self.state = GreetingState::AuthTls;
                        send(Command::new("AUTH TLS"))
                    } else {
                        finished(())
                    }
                }
                // "Service ready in nnn minutes": the real greeting follows.
                120 => self.read_greeting(),
                _ => Err(super::refused("connect (greeting)", &reply)),
            },
            (GreetingState::AuthTls, Input::Reply(reply)) => {
                if reply.code != 234 {
                    return Err(Error::Tls {
                        phase: "AUTH TLS".into(),
                        reason: format!(
                            "the server does not offer TLS ({} {}); refusing to continue in plaintext",
                            reply.code,
                            reply.text()
                        ),
                    });
                }
                self.state = GreetingState::ExplicitTls;
                Ok(Step::Do(Action::StartTls))
            }
            (GreetingState::ExplicitTls, Input::Done) => finished(()),
            (_, input) => unexpected("login", &input),
        }
    }
}

pub struct Credentials {
    user: String,
    password: String,
    state: CredentialsState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CredentialsState {
    User,
    Pass,
}

impl Credentials {
    pub fn new(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.to_string(),
            password: password.to_string(),
            state: CredentialsState::User,
        }
    }
}

impl Conversation for Credentials {
    type Outcome = ();

    fn start(&mut self) -> Result<Step<()>> {
        self.state = CredentialsState::User;
        send(Command::with("USER", self.user.as_bytes()))
    }

    fn next(&mut self, input: Input) -> Result<Step<()>> {
        let Input::Reply(reply) = input else {
            return unexpected("login", &input);
        };
        match (self.state, reply.code) {
            (CredentialsState::User, 230) => finished(()),
            (CredentialsState::User, 331 | 332) => {
                self.state = CredentialsState::Pass;
                send(Command::with("PASS", self.password.as_bytes()))
            }
            (CredentialsState::User, _) => Err(login_refused("USER", &reply)),
            (CredentialsState::Pass, 230 | 202) => finished(()),
            (CredentialsState::Pass, _) => Err(login_refused("PASS", &reply)),
        }
    }
}

fn login_refused(command: &str, reply: &Reply) -> Error {
    super::refused(format!("login ({command})"), reply)
}

pub struct Setup {
    state: SetupState,
    features: Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetupState {
    Pbsz,
    Prot,
    Type,
    Feat,
    OptsUtf8,
}

impl Setup {
    /// `tls`: the control connection is TLS, so data connections must be.
    pub fn new(tls: bool) -> Setup {
        Setup {
            state: if tls {
                SetupState::Pbsz
            } else {
                SetupState::Type
            },
            features: Features::default(),
        }
    }

    fn command(&self) -> Command {
        match self.state {
            SetupState::Pbsz => Command::with("PBSZ", "0"),
            SetupState::Prot => Command::with("PROT", "P"),
            SetupState::Type => Command::with("TYPE", "I"),
            SetupState::Feat => Command::new("FEAT"),
            SetupState::OptsUtf8 => Command::with("OPTS", "UTF8 ON"),
        }
    }

    fn go(&mut self, state: SetupState) -> Result<Step<Features>> {
        self.state = state;
        send(self.command())
    }
}

impl Conversation for Setup {
    type Outcome = Features;

    fn start(&mut self) -> Result<Step<Features>> {
        send(self.command())
    }

    fn next(&mut self, input: Input) -> Result<Step<Features>> {
        let Input::Reply(reply) = input else {
            return unexpected("login", &input);
        };
        let required_200 = matches!(
            self.state,
            SetupState::Pbsz | SetupState::Prot | SetupState::Type
        );
        if required_200 && reply.code != 200 {
            return Err(super::refused(self.command().shown(), &reply));
        }
        match self.state {
            SetupState::Pbsz => self.go(SetupState::Prot),
            SetupState::Prot => self.go(SetupState::Type),
            SetupState::Type => self.go(SetupState::Feat),
            SetupState::Feat => {
                self.features = Features::from_reply(Some(&reply));
                if self.features.utf8 {
                    return self.go(SetupState::OptsUtf8);
                }
                finished(std::mem::take(&mut self.features))
            }
            // Best effort: the names are bytes to us either way.
            SetupState::OptsUtf8 => finished(std::mem::take(&mut self.features)),
        }
    }
}

/// `CCC` (RFC 4217 section 12.3), asked for with
/// `--clear-control-after-login`: after login and `PROT P`, the control
/// connection goes on in clear text so that firewalls and NAT devices can
/// read PASV/PORT replies; the password was sent encrypted and the data
/// stays encrypted. A server may refuse (vsftpd does not know CCC; ProFTPD
/// refuses it while `TLSRequired` covers the control connection).
pub struct ClearControl {
    state: ClearState,
}

/// What came of CCC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// The control connection is in clear text now.
    Yes,
    /// The server refused (its reply); TLS stays on.
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClearState {
    Ccc,
    EndingTls,
}

impl ClearControl {
    #[allow(clippy::new_without_default)]
    pub fn new() -> ClearControl {
        ClearControl {
            state: ClearState::Ccc,
        }
    }
}

impl Conversation for ClearControl {
    type Outcome = Cleared;

    fn start(&mut self) -> Result<Step<Cleared>> {
        send(Command::new("CCC"))
    }

    fn next(&mut self, input: Input) -> Result<Step<Cleared>> {
        match (self.state, input) {
            (ClearState::Ccc, Input::Reply(reply)) if reply.code == 200 => {
                self.state = ClearState::EndingTls;
                Ok(Step::Do(Action::EndTls))
            }
            (ClearState::Ccc, Input::Reply(reply)) if reply.code >= 400 => {
                finished(Cleared::Refused(format!("{} {}", reply.code, reply.text())))
            }
            (ClearState::Ccc, Input::Reply(reply)) => Err(super::refused("CCC", &reply)),
            (ClearState::EndingTls, Input::Done) => finished(Cleared::Yes),
            (_, input) => unexpected("CCC", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{error_of, run, Expected, Lines};
    use super::*;
    use crate::ftp::error::Kind;

    const VSFTPD_FEAT: &str =
        "211-Features:\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n211 End";
    const PROFTPD_FEAT: &str =
        "211-Features:\r\n MFMT\r\n MLST type*;size*;modify*;\r\n UTF8\r\n REST STREAM\r\n211 End";

    #[test]
    fn greetings() {
        use Security::*;
        #[rustfmt::skip]
        let table: &[(Security, Lines, Lines, Expected<()>)] = &[
            (Explicit, &["220 vsftpd", "234 Proceed"], &["AUTH TLS", "TLS"], Ok(())),
            (Explicit, &["120 ready in 2 minutes", "220 hi", "234 ok"], &["AUTH TLS", "TLS"], Ok(())),
            (Explicit, &["220-Welcome\r\n to the server\r\n220 ready", "234 ok"], &["AUTH TLS", "TLS"], Ok(())),
            (Implicit, &["220 hi"], &["TLS"], Ok(())),
            (InsecurePlain, &["220 hi"], &[], Ok(())),
            (Explicit, &["421 Too many users"], &[],
                Err("server refused connect (greeting): Too many users (421) — the server closed the session (too many connections, idle timeout or restart)")),
            (Explicit, &["220 hi", "500 AUTH not understood"], &["AUTH TLS"],
                Err("TLS failed: AUTH TLS: the server does not offer TLS (500 AUTH not understood); refusing to continue in plaintext")),
            (Explicit, &["220 hi", "534 Policy requires SSL"], &["AUTH TLS"],
                Err("TLS failed: AUTH TLS: the server does not offer TLS (534 Policy requires SSL); refusing to continue in plaintext")),
            (Explicit, &["220 hi", "431 TLS unavailable"], &["AUTH TLS"],
                Err("TLS failed: AUTH TLS: the server does not offer TLS (431 TLS unavailable); refusing to continue in plaintext")),
        ];
        for (security, replies, sent, outcome) in table {
            let (actual_sent, actual) = run(Greeting::new(*security), replies);
            assert_eq!(&actual_sent, sent, "{security:?} {replies:?}");
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }

    #[test]
    fn credentials() {
        #[rustfmt::skip]
        let table: &[(Lines, Lines, Expected<()>)] = &[
            (&["331 Please specify the password.", "230 Login successful."], &["USER u", "PASS ****"], Ok(())),
            (&["332 Need account", "202 Superfluous"], &["USER u", "PASS ****"], Ok(())),
            (&["230 No password needed"], &["USER u"], Ok(())),
            (&["331 ok", "530 Login incorrect."], &["USER u", "PASS ****"],
                Err("server refused login (PASS): Login incorrect. (530) — check the user name and password")),
            (&["530 This FTP server is anonymous only."], &["USER u"],
                Err("server refused login (USER): This FTP server is anonymous only. (530) — check the user name and password")),
            (&["331 ok", "421 Too many failures"], &["USER u", "PASS ****"],
                Err("server refused login (PASS): Too many failures (421) — the server closed the session (too many connections, idle timeout or restart)")),
        ];
        for (replies, sent, outcome) in table {
            let (actual_sent, actual) = run(Credentials::new("u", "p"), replies);
            assert_eq!(&actual_sent, sent, "{replies:?}");
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }

    #[test]
    fn a_refused_password_is_a_login_failure() {
        let err = error_of(Credentials::new("u", "p"), &["331 ok", "530 no"]);
        assert_eq!(err.kind(), Kind::LoginFailed);
        let err = error_of(Greeting::new(Security::Explicit), &["220 hi", "500 no"]);
        assert_eq!(err.kind(), Kind::Tls, "never retried in plaintext");
    }

    #[test]
    fn clear_control() {
        #[rustfmt::skip]
        let table: &[(Lines, Lines, Expected<Cleared>)] = &[
            (&["200 Clearing control channel protection"], &["CCC", "end TLS"], Ok(Cleared::Yes)),
            (&["534 Unwilling to accept security parameters"], &["CCC"],
                Ok(Cleared::Refused("534 Unwilling to accept security parameters".into()))),
            (&["500 Unknown command."], &["CCC"], Ok(Cleared::Refused("500 Unknown command.".into()))),
            (&["421 Timeout"], &["CCC"], Ok(Cleared::Refused("421 Timeout".into()))),
            (&["250 what"], &["CCC"], Err("server refused CCC: what (250)")),
        ];
        for (replies, sent, outcome) in table {
            let (actual_sent, actual) = run(ClearControl::new(), replies);
            assert_eq!(&actual_sent, sent, "{replies:?}");
            assert_eq!(actual, outcome.clone().map_err(String::from), "{replies:?}");
        }
    }

    /// Whether the features say MLSD and UTF8.
    type MlsdUtf8 = (bool, bool);

    #[test]
    fn setups() {
        #[rustfmt::skip]
        let table: &[(bool, Lines, Lines, Expected<MlsdUtf8>)] = &[
            (true, &["200 PBSZ=0", "200 PROT now Private.", "200 Binary", VSFTPD_FEAT],
                &["PBSZ 0", "PROT P", "TYPE I", "FEAT"], Ok((false, false))),
            (true, &["200 ok", "200 ok", "200 ok", PROFTPD_FEAT, "200 UTF8 set to on"],
                &["PBSZ 0", "PROT P", "TYPE I", "FEAT", "OPTS UTF8 ON"], Ok((true, true))),
            // OPTS refused: best effort, the names are bytes either way.
            (true, &["200 ok", "200 ok", "200 ok", PROFTPD_FEAT, "501 no"],
                &["PBSZ 0", "PROT P", "TYPE I", "FEAT", "OPTS UTF8 ON"], Ok((true, true))),
            (false, &["200 ok", "500 FEAT not understood"], &["TYPE I", "FEAT"], Ok((false, false))),
            (true, &["200 ok", "536 PROT P not supported"], &["PBSZ 0", "PROT P"],
                Err("server refused PROT P: PROT P not supported (536)")),
            (true, &["503 PBSZ first"], &["PBSZ 0"], Err("server refused PBSZ 0: PBSZ first (503)")),
            (false, &["504 no binary"], &["TYPE I"], Err("server refused TYPE I: no binary (504)")),
        ];
        for (tls, replies, sent, outcome) in table {
            let (actual_sent, actual) = run(Setup::new(*tls), replies);
            assert_eq!(&actual_sent, sent, "{replies:?}");
            let actual = actual.map(|f| (f.mlsd, f.utf8));
            assert_eq!(actual, outcome.map_err(String::from), "{replies:?}");
        }
    }

    /// The whole login of an explicit FTPS session, in the order servers see.
    #[test]
    fn a_whole_explicit_login() {
        let (mut sent, greeting) = run(Greeting::new(Security::Explicit), &["220 hi", "234 ok"]);
        assert!(greeting.is_ok());
        let (more, credentials) = run(Credentials::new("u", "p"), &["331 ok", "230 ok"]);
        assert!(credentials.is_ok());
        sent.extend(more);
        let (more, features) = run(
            Setup::new(true),
            &["200 ok", "200 ok", "200 ok", PROFTPD_FEAT, "200 ok"],
        );
        assert!(features.is_ok_and(|f| f.mfmt && f.rest_stream));
        sent.extend(more);
        assert_eq!(
            sent,
            [
                "AUTH TLS",
                "TLS",
                "USER u",
                "PASS ****",
                "PBSZ 0",
                "PROT P",
                "TYPE I",
                "FEAT",
                "OPTS UTF8 ON"
            ]
        );
    }
}
