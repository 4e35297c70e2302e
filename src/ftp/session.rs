//! One logged-in control session and the commands it can run.
//!
//! `Connector` holds what all sessions to one server share (configuration, TLS
//! roots, what we learnt about the server, counters); `Session` is one control
//! connection with its own TLS session store, which its data connections
//! resume.
//!
//! The rules of the conversation (what to send after which reply) live in
//! `dialogue`, as machines with no I/O; a `Session` drives them: it sends,
//! reads with its timeouts, opens data connections, and keeps the counters
//! and the session's health (`broken`, `error_seen`).
use std::io::Read;
use std::net::SocketAddr;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion};

use super::config::{DataMode, FtpConfig, Security};
use super::control::Control;
use super::data::{self, Endpoint, NextData, Ready};
use super::dialogue::abort::Abort;
use super::dialogue::digest::{self as digest_dialogue, Hash, Hashed};
use super::dialogue::endpoint::{Active, Passive, PassiveAddress};
use super::dialogue::login::{ClearControl, Cleared, Credentials, Greeting, Setup};
use super::dialogue::transfer::{Ahead, OpenTransfer, Start, TransferEnd};
use super::dialogue::{self, Action, Command, Conversation, Fact, Input, ReadReply, Step, Wait};
use super::error::{Error, Result};
use super::features::Features;
use super::listing::{self, Entry};
use super::login_gate::LoginGate;
use super::net;
use super::reply::Reply;
use super::server_family::ServerFamily;
use super::socks::{self, Address};
use super::stream::Stream;
use super::time;
use super::tls::SessionStore;
use super::transfer::{Download, Upload};
use crate::digest::DigestAlgorithm;

/// How long to wait after an ABOR for a transfer reply that an asynchronous
/// server sends late.
const LATE_REPLY_WAIT: Duration = Duration::from_millis(250);

/// How long to wait for the refusal behind a data connection that failed
/// as it opened (see `Session::refusal_behind`).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// The longest wait for replies after an ABOR, however long the reply
/// timeout is: a session that does not answer is given up, not waited for.
const ABORT_REPLY_WAIT: Duration = Duration::from_secs(10);

/// Largest directory listing we accept, so a hostile server cannot exhaust memory.
const MAX_LISTING: u64 = 256 * 1024 * 1024;

/// Counters over all sessions of a connector; tests and benchmarks read them.
#[derive(Debug, Default)]
pub struct Stats {
    pub logins: AtomicU64,
    pub commands: AtomicU64,
    pub data_connections: AtomicU64,
    pub full_handshakes: AtomicU64,
    pub resumed_handshakes: AtomicU64,
    /// Round trips the callers waited for: each wait for the server after
    /// sending it something it answers (commands, a TLS handshake's
    /// messages, an upload's end), a TCP connect. Things sent together
    /// before one wait (pipelined) count once; waits of the pool's
    /// preparing thread (see `data::NextData`) are off the callers' path
    /// and not counted. Tests and benchmarks compare it per file.
    pub round_trips: AtomicU64,
    /// Transfers that went out on a data connection set up ahead.
    pub data_set_up_ahead: AtomicU64,
    /// The TLS version of the latest login (a `rustls::ProtocolVersion` as
    /// u16; 0 before the first), for `ftpsfs status`.
    pub tls_version: std::sync::atomic::AtomicU16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub logins: u64,
    pub commands: u64,
    pub data_connections: u64,
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
    pub round_trips: u64,
    pub data_set_up_ahead: u64,
}

impl Stats {
    /// "TLSv1.3" and the like, once a session logged in.
    pub fn tls_version(&self) -> Option<String> {
        match self.tls_version.load(Ordering::Relaxed) {
            0 => None,
            n => Some(match rustls::ProtocolVersion::from(n) {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            }),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            logins: self.logins.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            data_connections: self.data_connections.load(Ordering::Relaxed),
            full_handshakes: self.full_handshakes.load(Ordering::Relaxed),
            resumed_handshakes: self.resumed_handshakes.load(Ordering::Relaxed),
            round_trips: self.round_trips.load(Ordering::Relaxed),
            data_set_up_ahead: self.data_set_up_ahead.load(Ordering::Relaxed),
        }
    }
}

/// Makes sessions to one server.
pub struct Connector {
    config: FtpConfig,
    tls_base: Option<Arc<ClientConfig>>,
    /// `tls_base` capped at TLS 1.2, used by new sessions once
    /// `tls12_for_data_reuse` is set.
    tls12_base: Option<Arc<ClientConfig>>,
    /// Set once a TLS 1.3 session ran out of tickets for its data connections
    /// (see `Session::keep_data_resumable`).
    tls12_for_data_reuse: AtomicBool,
    /// Set when logging in with TLS 1.2 failed: the server is TLS 1.3 only,
    /// and data connections make full handshakes when out of tickets.
    tls12_refused: AtomicBool,
    server_name: ServerName<'static>,
    /// Set once the server refused EPSV, so later transfers go straight to PASV.
    epsv_refused: AtomicBool,
    /// Set once the server refused `LIST -a`, so later listings use plain LIST.
    list_a_refused: AtomicBool,
    /// Set once the server refused CCC, which is then logged at debug level.
    ccc_refused: AtomicBool,
    /// Set once the server answered a SIZE sent with the end of an upload
    /// before the upload's own reply (it reads commands during transfers):
    /// that size cannot be trusted, so SIZE is no longer sent that way.
    answers_during_transfers: AtomicBool,
    /// Set once a SIZE sent with the end of an upload was answered after
    /// the upload's own reply (the server reads commands only between
    /// transfers): then EPSV goes with the end of an upload's bytes too
    /// (`ask_next_data_with_end`).
    answers_after_transfers: AtomicBool,
    /// Until the credentials were accepted once, one session sends them.
    login_gate: LoginGate,
    stats: Stats,
}

impl Connector {
    pub fn new(config: FtpConfig) -> Result<Arc<Connector>> {
        let (tls_base, tls12_base) = match config.security {
            Security::InsecurePlain => (None, None),
            Security::Explicit | Security::Implicit => (
                Some(super::tls::client_config(&config.tls)?),
                Some(super::tls::capped_at_tls12(&config.tls)?),
            ),
        };
        let bare_host = config.host.trim_start_matches('[').trim_end_matches(']');
        let name = config.tls.server_name.as_deref().unwrap_or(bare_host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| Error::Config(format!("invalid TLS server name {name:?}")))?;
        Ok(Arc::new(Connector {
            config,
            tls_base,
            tls12_base,
            tls12_for_data_reuse: AtomicBool::new(false),
            tls12_refused: AtomicBool::new(false),
            server_name,
            epsv_refused: AtomicBool::new(false),
            list_a_refused: AtomicBool::new(false),
            ccc_refused: AtomicBool::new(false),
            answers_during_transfers: AtomicBool::new(false),
            answers_after_transfers: AtomicBool::new(false),
            login_gate: LoginGate::default(),
            stats: Stats::default(),
        }))
    }

    pub fn config(&self) -> &FtpConfig {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Opens a control connection and logs in.
    pub fn connect(self: &Arc<Self>) -> Result<Session> {
        // Taken before connecting: a refusal that comes while this session
        // connects ends it too, instead of letting it try the password again.
        let refusals_before = self.login_gate.refusals();
        let config = &self.config;
        let timeouts = config.timeouts;
        let (tcp, server) = self.open_control_tcp()?;
        net::tune(&tcp, timeouts.connect, &config.keepalive)?;
        let base = if self.tls12_for_data_reuse.load(Ordering::Relaxed) {
            &self.tls12_base
        } else {
            &self.tls_base
        };
        let (tls, tickets) = base.as_ref().map(super::tls::for_session).unzip();
        let mut session = Session {
            control: Control::new(tcp, timeouts.connect)?,
            server,
            connector: Arc::clone(self),
            tls,
            tickets,
            features: Features::default(),
            hash_selected: None,
            broken: false,
            error_seen: false,
            last_used: Instant::now(),
            next_data: NextData::None,
            awaiting: false,
            family: ServerFamily::default(),
        };
        session.log_in(refusals_before)?;
        self.stats.logins.fetch_add(1, Ordering::Relaxed);
        if let Some(version) = session.control.tls_version() {
            self.stats
                .tls_version
                .store(u16::from(version), Ordering::Relaxed);
        }
        Ok(session)
    }

    /// The control connection's socket, straight to the server or through
    /// the proxy, and the server's address as it was reached.
    fn open_control_tcp(&self) -> Result<(std::net::TcpStream, Address)> {
        let config = &self.config;
        let timeout = config.timeouts.connect;
        match &config.proxy {
            Some(proxy) => socks::connect(
                proxy,
                "control connection",
                &config.host,
                config.port,
                timeout,
            ),
            None => {
                let tcp = net::connect("control connection", &config.address(), timeout)?;
                let peer = tcp.peer_addr().map_err(|source| Error::Io {
                    phase: "reading the server's address".into(),
                    source,
                })?;
                Ok((tcp, Address::Ip(peer)))
            }
        }
    }
}

pub struct Session {
    control: Control,
    /// The server as the control connection reached it: its address, or
    /// through a proxy the host as given. Data connections go here by
    /// default, whatever a PASV reply says.
    server: Address,
    connector: Arc<Connector>,
    /// This session's TLS configuration, with its own resumption store.
    tls: Option<Arc<ClientConfig>>,
    /// That store, which counts the TLS 1.3 tickets left.
    tickets: Option<Arc<SessionStore>>,
    features: Features,
    /// The algorithm `HASH` uses on this session, when known: FEAT's `*`,
    /// then what `OPTS HASH` chose; `None` after a failed HASH conversation.
    hash_selected: Option<DigestAlgorithm>,
    broken: bool,
    /// Set by any failed command; the pool probes such a session before reuse.
    error_seen: bool,
    last_used: Instant,
    /// The data connection of the next transfer, set up ahead.
    next_data: NextData,
    /// Something the server answers was sent and not waited for yet: the
    /// next wait is a round trip (`Stats::round_trips`).
    awaiting: bool,
    /// What the server is known to do where the standard leaves it open
    /// (close_notify order, commands during transfers), from its greeting.
    family: ServerFamily,
}

impl Session {
    /// Whether a command failed since the last call; resets the flag.
    pub fn take_error_seen(&mut self) -> bool {
        std::mem::take(&mut self.error_seen)
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    /// True after an error that leaves the session out of step with the server.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    pub fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }

    fn config(&self) -> &FtpConfig {
        &self.connector.config
    }

    // ---- login -------------------------------------------------------------

    fn log_in(&mut self, refusals_before: u64) -> Result<()> {
        let timeouts = self.config().timeouts;
        let mut greeting = Greeting::new(self.config().security);
        self.converse(&mut greeting)?;
        self.family = ServerFamily::for_greeting(greeting.text());
        self.control.set_reply_timeout(timeouts.reply)?;
        // USER and PASS each wait at most one reply timeout.
        let connector = Arc::clone(&self.connector);
        let pass = connector
            .login_gate
            .enter(refusals_before, timeouts.reply * 2)?;
        let credentials = &self.config().credentials;
        let credentials = Credentials::new(&credentials.user, credentials.password.expose());
        let outcome = self.converse(credentials);
        pass.settle(&outcome);
        outcome?;
        self.features = self.converse(Setup::new(self.tls.is_some()))?;
        self.hash_selected = self.features.hash_selected;
        if self.config().clear_control_after_login && self.control.is_tls() {
            self.clear_control()?;
        }
        Ok(())
    }

    /// CCC, on every new or reconnected session; a refusal keeps TLS and
    /// is said once per mount (then at debug level).
    fn clear_control(&mut self) -> Result<()> {
        match self.converse(ClearControl::new())? {
            Cleared::Yes => log::debug!("CCC: the control connection is in clear text now"),
            Cleared::Refused(reply) => {
                if !self.connector.ccc_refused.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "the server refused CCC ({reply}); the control connection stays encrypted"
                    );
                } else {
                    log::debug!("CCC refused again ({reply}); staying with TLS");
                }
            }
        }
        Ok(())
    }

    fn start_tls(&mut self) -> Result<()> {
        let Some(tls) = self.tls.clone() else {
            return Ok(());
        };
        let name = self.connector.server_name.clone();
        self.control
            .upgrade_to_tls(tls, name, self.config().timeouts.connect)?;
        self.connector
            .stats
            .full_handshakes
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    // ---- commands ----------------------------------------------------------

    /// Sends a command and returns whatever the server answered (negative
    /// replies included); only the connection failing is an error.
    pub fn command(&mut self, verb: &str, argument: Option<&[u8]>) -> Result<Reply> {
        let command = Command {
            verb: verb.to_string(),
            argument: argument.map(<[u8]>::to_vec),
        };
        let result = self
            .send(&command)
            .and_then(|()| self.read_reply(&command.shown()));
        self.note(result)
    }

    /// Sends a command and requires a reply code for which `ok` holds.
    pub fn expect(
        &mut self,
        verb: &str,
        argument: Option<&[u8]>,
        ok: impl Fn(u16) -> bool,
    ) -> Result<Reply> {
        let reply = self.command(verb, argument)?;
        if ok(reply.code) {
            Ok(reply)
        } else {
            let err = dialogue::refused(dialogue::shown_command(verb, argument), &reply);
            self.note(Err(err))
        }
    }

    fn send(&mut self, command: &Command) -> Result<()> {
        // The reply to the EPSV sent ahead comes before this one's.
        if self.next_data.is_asked() {
            self.settle_next_data(true);
        }
        self.send_line(command)?;
        self.awaiting = true;
        Ok(())
    }

    fn send_line(&mut self, command: &Command) -> Result<()> {
        let line = command.line()?;
        self.connector
            .stats
            .commands
            .fetch_add(1, Ordering::Relaxed);
        self.last_used = Instant::now();
        self.control.send(&line, &command.shown())
    }

    /// Counts a wait for the server as a round trip when something it
    /// answers was sent since the last wait.
    pub(super) fn note_wait(&mut self) {
        if std::mem::take(&mut self.awaiting) {
            self.count_round_trip();
        }
    }

    fn count_round_trip(&self) {
        self.connector
            .stats
            .round_trips
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Marks that the server was sent something it answers.
    pub(super) fn note_request(&mut self) {
        self.awaiting = true;
    }

    fn read_reply(&mut self, phase: &str) -> Result<Reply> {
        self.note_wait();
        let reply = self.control.read_reply(phase)?;
        if reply.code == 421 {
            // The server is closing the session; nothing after this will work.
            self.broken = true;
        }
        Ok(reply)
    }

    /// Runs a conversation of `dialogue` to its end.
    fn converse<C: Conversation>(&mut self, talk: C) -> Result<C::Outcome> {
        self.converse_with(talk, Session::perform)
    }

    /// Runs a conversation, doing its actions with `perform` (which handles
    /// the data connection where there is one, and calls `Session::perform`
    /// for the rest).
    fn converse_with<C: Conversation>(
        &mut self,
        mut talk: C,
        mut perform: impl FnMut(&mut Session, Action) -> Result<Input>,
    ) -> Result<C::Outcome> {
        let mut step = talk.start()?;
        loop {
            match step {
                Step::Finished(outcome) => return Ok(outcome),
                Step::Do(action) => {
                    let input = perform(self, action)?;
                    step = talk.next(input)?;
                }
            }
        }
    }

    /// Does what a conversation asks on the control connection.
    fn perform(&mut self, action: Action) -> Result<Input> {
        match action {
            Action::Send(command) => {
                self.send(&command)?;
                Ok(Input::Reply(self.read_reply(&command.shown())?))
            }
            Action::SendAhead(command) => self.send(&command).map(|()| Input::Done),
            Action::Read(read) => self.read_for(&read),
            Action::StartTls => self.start_tls().map(|()| Input::Done),
            Action::EndTls => {
                let timeout = self.config().timeouts.reply;
                self.control.end_tls(timeout).map(|()| Input::Done)
            }
            Action::Learn(Fact::EpsvRefused) => {
                self.connector.epsv_refused.store(true, Ordering::Relaxed);
                Ok(Input::Done)
            }
            Action::OpenData(command) => Err(Error::protocol(
                command.shown(),
                "a data connection was asked for outside a transfer",
            )),
            Action::AwaitData | Action::AbandonData => Err(Error::protocol(
                "data connection",
                "a data connection was awaited outside a transfer",
            )),
        }
    }

    fn read_for(&mut self, read: &ReadReply) -> Result<Input> {
        self.note_wait();
        match read.wait {
            Wait::Reply => self.read_reply(&read.phase).map(Input::Reply),
            Wait::AfterAbort => {
                let timeout = self.config().timeouts.reply.min(ABORT_REPLY_WAIT);
                self.control
                    .read_reply_within(&read.phase, timeout)
                    .map(Input::Reply)
            }
            Wait::MaybeLate => match self.control.read_reply_within(&read.phase, LATE_REPLY_WAIT) {
                Ok(reply) => Ok(Input::Reply(reply)),
                Err(Error::Timeout { .. }) => Ok(Input::Silence),
                Err(e) => Err(e),
            },
        }
    }

    /// Marks the session broken when an error leaves it out of step.
    fn note<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.error_seen = true;
            if e.breaks_session() {
                self.broken = true;
            }
        }
        result
    }

    pub fn noop(&mut self) -> Result<()> {
        self.expect("NOOP", None, |c| c == 200).map(drop)
    }

    /// Ends the session politely; used when it leaves the pool.
    pub fn quit(mut self) {
        // A reply to an EPSV sent ahead may come before QUIT's: unread, as
        // the rest of what the server says now.
        self.next_data = NextData::None;
        if !self.broken {
            let _ = self.control.set_reply_timeout(Duration::from_secs(2));
            let _ = self.command("QUIT", None);
        }
        self.control.close();
    }

    /// The free space the server tells (AVBL); see `avbl`.
    pub fn available_space(&mut self) -> Result<super::avbl::Available> {
        let reply = self.command("AVBL", None)?;
        Ok(super::avbl::Available::from_reply(&reply))
    }

    pub fn pwd(&mut self) -> Result<Vec<u8>> {
        let reply = self.expect("PWD", None, |c| c == 257)?;
        parse_quoted_path(reply.first_line())
            .ok_or_else(|| Error::protocol("PWD", format!("no quoted path in {:?}", reply.text())))
    }

    /// The size of a file now (SIZE; the session is in TYPE I, so it is the
    /// size in bytes). A reply that is not a plain number is an error.
    pub fn size(&mut self, path: &[u8]) -> Result<u64> {
        let reply = self.expect("SIZE", Some(path), |c| c == 213)?;
        let size = digest_dialogue::parse_size_reply(&reply);
        self.note(size)
    }

    /// The digest of a file, or of the bytes `[start, end)` of it, by `HASH`
    /// (see `dialogue::digest`), or word that the server hashed the whole
    /// file instead of the range. The caller checks that the server offers
    /// HASH with `algorithm` (and RANG for a range), and that a range is not
    /// empty.
    pub fn hash(
        &mut self,
        algorithm: DigestAlgorithm,
        path: &[u8],
        range: Option<(u64, u64)>,
    ) -> Result<Hashed> {
        let selected = self.hash_selected.take();
        let digest = self.converse(Hash::new(algorithm, path, range, selected));
        if digest.is_ok() {
            self.hash_selected = Some(algorithm);
        }
        self.note(digest)
    }

    /// The digest of a file, or of the bytes `[start, end)` of it, by
    /// `XSHA256` and its kin (`XSHA256 path start end`).
    pub fn x_digest(
        &mut self,
        algorithm: DigestAlgorithm,
        path: &[u8],
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let mut arg = path.to_vec();
        if let Some((start, end)) = range {
            arg.extend_from_slice(format!(" {start} {end}").as_bytes());
        }
        let reply = self.expect(algorithm.x_command(), Some(&arg), |c| c == 213 || c == 250)?;
        let digest = digest_dialogue::parse_x_reply(&reply, algorithm);
        self.note(digest)
    }

    pub fn mdtm(&mut self, path: &[u8]) -> Result<SystemTime> {
        let reply = self.expect("MDTM", Some(path), |c| c == 213)?;
        time::parse_ftp_timestamp(trim(reply.first_line()))
            .ok_or_else(|| Error::protocol("MDTM", format!("not a time: {:?}", reply.text())))
    }

    /// Sets the modification time: MFMT where offered, else the two-argument
    /// `MDTM time path` that vsftpd and others understand.
    pub fn set_mtime(&mut self, path: &[u8], mtime: SystemTime) -> Result<()> {
        let mut arg = time::format_ftp_timestamp(mtime).into_bytes();
        arg.push(b' ');
        arg.extend_from_slice(path);
        let verb = if self.features.mfmt { "MFMT" } else { "MDTM" };
        self.expect(verb, Some(&arg), |c| c == 213 || c == 253 || c == 250)
            .map(drop)
    }

    pub fn delete(&mut self, path: &[u8]) -> Result<()> {
        self.expect("DELE", Some(path), |c| c == 250).map(drop)
    }

    pub fn mkdir(&mut self, path: &[u8]) -> Result<()> {
        self.expect("MKD", Some(path), |c| c == 257 || c == 250)
            .map(drop)
    }

    pub fn rmdir(&mut self, path: &[u8]) -> Result<()> {
        self.expect("RMD", Some(path), |c| c == 250).map(drop)
    }

    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        self.expect("RNFR", Some(from), |c| c == 350)?;
        self.expect("RNTO", Some(to), |c| c == 250).map(drop)
    }

    pub fn chmod(&mut self, path: &[u8], mode: u32) -> Result<()> {
        let mut arg = format!("CHMOD {:o} ", mode & 0o7777).into_bytes();
        arg.extend_from_slice(path);
        self.expect("SITE", Some(&arg), |c| c == 200).map(drop)
    }

    /// Facts of one path (MLST), for servers that offer MLSD/MLST.
    pub fn mlst(&mut self, path: &[u8]) -> Result<Entry> {
        let reply = self.expect("MLST", Some(path), |c| c == 250)?;
        reply
            .inner_lines()
            .iter()
            .find_map(|line| listing::mlsd::parse_mlst_fact_line(line))
            .ok_or_else(|| Error::protocol("MLST", format!("no facts in {:?}", reply.text())))
    }

    /// Lists a directory: MLSD where offered, LIST otherwise.
    pub fn list_dir(&mut self, path: &[u8]) -> Result<Vec<Entry>> {
        if self.features.mlsd {
            let body = self.read_listing("MLSD", path)?;
            return Ok(listing::mlsd::parse_mlsd(&body));
        }
        // A plain LIST hides dot files on many servers (vsftpd's default);
        // `LIST -a` shows them where understood. A server that refuses it is
        // remembered and gets plain LIST.
        if !self.connector.list_a_refused.load(Ordering::Relaxed) {
            let mut arg = b"-a".to_vec();
            if !path.is_empty() {
                arg.push(b' ');
                arg.extend_from_slice(path);
            }
            match self.read_listing("LIST", &arg) {
                Ok(body) => return Ok(listing::list::parse_list(&body, SystemTime::now())),
                Err(e) if e.code().is_some_and(|c| (500..=504).contains(&c)) => {
                    log::info!("server refused LIST -a ({e}); dot files may not be listed");
                    self.connector.list_a_refused.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let body = self.read_listing("LIST", path)?;
        Ok(listing::list::parse_list(&body, SystemTime::now()))
    }

    /// The raw body of a listing command (`arg` empty: the current directory).
    fn read_listing(&mut self, verb: &str, arg: &[u8]) -> Result<Vec<u8>> {
        let arg = (!arg.is_empty()).then_some(arg);
        let mut body = Vec::new();
        let stream = self.open_transfer(verb, arg, Start::At(0))?;
        let mut download = Download::new(&mut *self, stream, None);
        let read = (&mut download).take(MAX_LISTING + 1).read_to_end(&mut body);
        if let Err(e) = read {
            let timeout = download.session_timeouts().data_idle;
            return Err(Error::io(format!("reading the {verb} listing"), e, timeout));
        }
        if body.len() as u64 > MAX_LISTING {
            return Err(Error::protocol(verb, "listing larger than 256 MiB"));
        }
        download.finish()?;
        Ok(body)
    }

    /// Starts reading `path` from byte `offset` (REST + RETR). `expected_size`,
    /// when known, lets the download tell a short transfer from a complete one.
    pub fn retr(
        &mut self,
        path: &[u8],
        offset: u64,
        expected_size: Option<u64>,
    ) -> Result<Download<&mut Session>> {
        retr_on(self, path, offset, expected_size)
    }

    /// Starts uploading to `path`, replacing it (STOR).
    pub fn stor(&mut self, path: &[u8]) -> Result<Upload<&mut Session>> {
        upload_on(self, "STOR", path)
    }

    /// Starts appending to `path` (APPE).
    pub fn appe(&mut self, path: &[u8]) -> Result<Upload<&mut Session>> {
        upload_on(self, "APPE", path)
    }

    // ---- data connections --------------------------------------------------

    /// Opens the data connection for one transfer command and returns it once
    /// the server has accepted the command and the TLS handshake is done.
    fn open_transfer(&mut self, verb: &str, arg: Option<&[u8]>, start: Start) -> Result<Stream> {
        if let Some(arg) = arg {
            dialogue::check_argument(arg, "file name")?;
        }
        let result = self.open_transfer_inner(verb, arg, start);
        self.note(result)
    }

    /// On the data connection set up ahead when there is one (a transient
    /// failure there, such as 425 when the server forgot the port, is tried
    /// once more on a new one), else on a new one.
    fn open_transfer_inner(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        start: Start,
    ) -> Result<Stream> {
        self.keep_data_resumable()?;
        self.settle_next_data(true);
        if let Some(tcp) = self.next_data.take() {
            self.connector
                .stats
                .data_set_up_ahead
                .fetch_add(1, Ordering::Relaxed);
            match self.open_transfer_on(verb, arg, start, Endpoint::Connected(tcp)) {
                // A refusal (425) leaves the session in step; a timeout or
                // a lost connection does not, and is the caller's to retry.
                Err(e) if e.is_transient() && !e.breaks_session() && !self.broken => log::debug!(
                    "{}: the data connection set up ahead failed ({e}); opening a new one",
                    dialogue::shown_command(verb, arg)
                ),
                opened => return opened,
            }
        }
        let endpoint = self.open_endpoint()?;
        self.open_transfer_on(verb, arg, start, endpoint)
    }

    fn open_transfer_on(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        start: Start,
        endpoint: Endpoint,
    ) -> Result<Stream> {
        let (mut passive, mut waiting) = match endpoint {
            Endpoint::Connected(tcp) => (Some(tcp), None),
            waiting => (None, Some(waiting)),
        };
        let shown = dialogue::shown_command(verb, arg);
        let timeouts = self.config().timeouts;
        let phase = format!("data connection for {shown}");
        let mut stream = None;
        let open = OpenTransfer::new(verb, arg, start);
        self.converse_with(open, |session, action| match action {
            Action::OpenData(command) => {
                session.send(&command)?;
                // Passive: connected already. Active: the server connects
                // to us before or after its 150 reply, depending on the server.
                match passive.take() {
                    Some(tcp) => match session.wrap_data(tcp, &phase) {
                        Ok(wrapped) => {
                            // Its ClientHello went out with the command.
                            stream = Some(wrapped);
                            Ok(Input::DataConnected)
                        }
                        Err(e) => Err(session.refusal_behind(e, &shown)),
                    },
                    None => session.await_active(&mut waiting, &phase, &shown, &mut stream),
                }
            }
            Action::AwaitData => session.await_active(&mut waiting, &phase, &shown, &mut stream),
            Action::AbandonData => {
                // Closed without close_notify: the server sees a cut.
                if let Some(opened) = stream.take() {
                    let _ = opened.tcp().shutdown(std::net::Shutdown::Both);
                }
                session.abort_transfer();
                Ok(Input::Done)
            }
            action => session.perform(action),
        })?;
        let mut stream =
            stream.ok_or_else(|| Error::protocol(phase.clone(), "no data connection"))?;
        stream.set_timeout(timeouts.connect)?;
        let handshake =
            stream.finish_handshake(&format!("TLS handshake on the {phase}"), timeouts.connect)?;
        // The server answers our last handshake message: with the data of a
        // download, or (after the bytes of an upload) with its end.
        self.note_request();
        stream.set_timeout(timeouts.data_idle)?;
        if stream.is_tls() {
            self.count_handshake(handshake, &shown);
        }
        self.connector
            .stats
            .data_connections
            .fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// A server that refuses a transfer command may reset the data
    /// connection that was opened for it (ProFTPD refusing a STOR after
    /// REST with 451), so that starting TLS on it fails before the refusal
    /// is read. The refusal, when it came, says more than the reset: it is
    /// reported instead (and the session stays in step for a retry).
    fn refusal_behind(&mut self, err: Error, shown: &str) -> Error {
        let mut reply = self.control.read_reply_within(shown, REFUSAL_WAIT);
        if matches!(&reply, Ok(r) if r.code == 350) {
            // REST's, sent ahead of the command: the verdict comes next.
            reply = self.control.read_reply_within(shown, REFUSAL_WAIT);
        }
        match reply {
            Ok(reply) if reply.code >= 400 => {
                log::debug!("{shown}: the data connection failed ({err}) as the server refused");
                dialogue::refused(shown.to_string(), &reply)
            }
            _ => err,
        }
    }

    /// In active mode: the server's connection to our listener (wrapped in
    /// TLS into `stream`), or its reply if it says something first.
    /// `waiting` is the listener, or the proxy's bind, which stays there
    /// while the control connection speaks first.
    fn await_active(
        &mut self,
        waiting: &mut Option<Endpoint>,
        phase: &str,
        shown: &str,
        stream: &mut Option<Stream>,
    ) -> Result<Input> {
        let ready = match waiting.take() {
            Some(Endpoint::Listening(listener)) => {
                let ready = self.wait_for_active(&listener, phase);
                *waiting = Some(Endpoint::Listening(listener));
                ready?
            }
            Some(Endpoint::Bound(bind)) => match self.wait_for_bind(bind, phase)? {
                data::BindReady::Connection(tcp) => Ready::Connection(tcp),
                data::BindReady::Control(bind) => {
                    *waiting = Some(Endpoint::Bound(bind));
                    Ready::Control
                }
            },
            _ => return Err(Error::protocol(phase.to_string(), "no data connection")),
        };
        match ready {
            Ready::Connection(tcp) => {
                *stream = Some(self.wrap_data(tcp, phase)?);
                Ok(Input::DataConnected)
            }
            Ready::Control => Ok(Input::Reply(self.read_reply(shown)?)),
        }
    }

    /// Through a proxy: waits for the server to connect to the proxy's BIND
    /// port, or to say something on the control connection first.
    fn wait_for_bind(&self, bind: Box<socks::Bind>, phase: &str) -> Result<data::BindReady> {
        let control_tcp = self.control.tcp().ok_or_else(|| Error::Closed {
            phase: phase.to_string(),
        })?;
        data::bound_or_reply(bind, control_tcp, self.config().timeouts.connect)
    }

    /// Waits for the server to connect to our active-mode listener, or to say
    /// something on the control connection first.
    fn wait_for_active(&self, listener: &std::net::TcpListener, phase: &str) -> Result<Ready> {
        let control_tcp = self.control.tcp().ok_or_else(|| Error::Closed {
            phase: phase.to_string(),
        })?;
        let server = self.control.peer().ip();
        data::accept_or_reply(
            listener,
            server,
            control_tcp,
            self.config().timeouts.connect,
        )
    }

    /// Makes sure the next data connection can resume this session's TLS
    /// session. Under TLS 1.3 each data connection uses up one ticket; when
    /// none is left (ProFTPD gives two per login and none on data
    /// connections, see `SessionStore`), the next one would be a full
    /// handshake, which servers requiring session reuse refuse. Then this
    /// session logs in again, and it and all later sessions use TLS 1.2,
    /// whose session any number of data connections resume.
    fn keep_data_resumable(&mut self) -> Result<()> {
        let out_of_tickets = self.control.tls_version() == Some(ProtocolVersion::TLSv1_3)
            && self
                .tickets
                .as_ref()
                .is_some_and(|store| store.tls13_tickets() == 0);
        let connector = Arc::clone(&self.connector);
        if !out_of_tickets || connector.tls12_refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        let first = !connector.tls12_for_data_reuse.swap(true, Ordering::Relaxed);
        match connector.connect() {
            Ok(fresh) => {
                if first {
                    log::info!(
                        "the server gives no new TLS 1.3 session tickets on data connections, \
                         so they could not resume the control connection's session; using \
                         TLS 1.2 with this server"
                    );
                }
                std::mem::replace(self, fresh).quit();
            }
            Err(e @ Error::Tls { .. }) => {
                log::info!(
                    "logging in with TLS 1.2 failed ({e}); staying with TLS 1.3, where data \
                     connections beyond the session's tickets make full handshakes"
                );
                connector.tls12_refused.store(true, Ordering::Relaxed);
                connector
                    .tls12_for_data_reuse
                    .store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn count_handshake(&self, kind: HandshakeKind, shown: &str) {
        let stats = &self.connector.stats;
        if kind == HandshakeKind::Resumed {
            stats.resumed_handshakes.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.full_handshakes.fetch_add(1, Ordering::Relaxed);
            log::info!(
                "data connection for {shown} did not resume the control connection's TLS session; \
                 servers that require session reuse will refuse it"
            );
        }
    }

    /// TCP options and TLS for a new data connection.
    fn wrap_data(&self, tcp: std::net::TcpStream, phase: &str) -> Result<Stream> {
        let config = self.config();
        net::tune(&tcp, config.timeouts.connect, &config.keepalive)?;
        match &self.tls {
            Some(tls) => Stream::start_tls(
                tcp,
                Arc::clone(tls),
                self.connector.server_name.clone(),
                phase,
                config.timeouts.connect,
            ),
            None => Ok(Stream::Plain(tcp)),
        }
    }

    fn open_endpoint(&mut self) -> Result<Endpoint> {
        match self.config().data_mode.clone() {
            DataMode::Passive {
                trust_pasv_address,
                epsv,
            } => {
                let try_epsv = epsv && !self.connector.epsv_refused.load(Ordering::Relaxed);
                let over_ipv6 = matches!(self.server, Address::Ip(SocketAddr::V6(_)));
                let passive = Passive::new(over_ipv6, try_epsv, trust_pasv_address);
                let target = match self.converse(passive)? {
                    PassiveAddress::ControlPeer(port) => self.server.with_port(port),
                    PassiveAddress::Advertised(addr) => Address::Ip(addr),
                };
                let timeout = self.config().timeouts.connect;
                let tcp = match &self.config().proxy {
                    Some(proxy) => socks::connect_to(proxy, "data connection", &target, timeout)?,
                    None => net::connect("data connection", &target.to_string(), timeout)?,
                };
                self.count_round_trip();
                Ok(Endpoint::Connected(tcp))
            }
            DataMode::Active { advertise, .. } if self.config().proxy.is_some() => {
                // SOCKS5 BIND: the proxy listens for the server.
                let config = self.config();
                let proxy = config.proxy.as_ref().ok_or_else(|| Error::Closed {
                    phase: "the proxy configuration".into(),
                })?;
                let bind = socks::bind(proxy, &self.server, config.timeouts.connect)?;
                let listening = bind.listening;
                let shown = SocketAddr::new(advertise.unwrap_or(listening.ip()), listening.port());
                self.converse(Active::new(shown))?;
                Ok(Endpoint::Bound(Box::new(bind)))
            }
            DataMode::Active { ports, advertise } => {
                let local_ip = self.control.local().ip();
                let listener = data::listen(local_ip, ports.as_ref())?;
                let bound = listener.local_addr().map_err(|source| Error::Io {
                    phase: "reading the active listener's address".into(),
                    source,
                })?;
                let shown = SocketAddr::new(advertise.unwrap_or(local_ip), bound.port());
                self.converse(Active::new(shown))?;
                Ok(Endpoint::Listening(listener))
            }
        }
    }

    // ---- the next transfer's data connection (see data::NextData) -----------

    /// Whether a data connection for the next transfer is ready here.
    pub fn has_next_data(&self) -> bool {
        self.next_data.is_connected()
    }

    /// Whether the reply to an EPSV sent ahead is still to be read
    /// (`settle_next_data`).
    pub fn next_data_asked(&self) -> bool {
        self.next_data.needs_settling()
    }

    /// Sends EPSV ahead for the next transfer, where data connections are
    /// passive by EPSV and go straight to the server. Called as a transfer
    /// ends, after its data connection closed: the server is done with the
    /// transfer then, and answers the EPSV after the transfer's reply (a
    /// server that reads commands during a transfer could answer it before,
    /// and the replies would be taken for each other).
    pub(super) fn ask_next_data(&mut self) {
        let config = self.config();
        let by_epsv = matches!(config.data_mode, DataMode::Passive { epsv: true, .. })
            && !self.connector.epsv_refused.load(Ordering::Relaxed);
        if !by_epsv || config.proxy.is_some() || self.broken || !self.next_data.is_none() {
            return;
        }
        let sent = self.send_line(&Command::new("EPSV"));
        if self.note(sent).is_ok() {
            self.next_data = NextData::Asked;
        }
    }

    /// Sends EPSV with the end of an upload's bytes, before the server's
    /// reply to the upload, where the server was seen to read commands only
    /// after a transfer's reply (`answers_after_transfers`): its 229 then
    /// comes with the 226, a round trip sooner than when sent once the data
    /// connection closed. A session that uploads file after file (async
    /// write-back) is ready for the next one a round trip sooner. Before
    /// that is known (the first upload of the mount, or a server that reads
    /// commands during transfers, such as ProFTPD) it waits as before: an
    /// EPSV answered during a transfer would be taken for the wrong reply.
    ///
    /// Only on vsftpd (told by its greeting, see `ServerFamily`): a SIZE
    /// answered after one transfer's reply says little about the next, as
    /// a server that reads commands during transfers answers after them
    /// when the bytes were all in first; and pyftpdlib, given EPSV while
    /// it still receives, closes the transfer's data connection and never
    /// answers the upload (seen in `faults_mount`).
    pub(super) fn ask_next_data_with_end(&mut self) {
        let sequential = self.family.reads_no_commands_during_transfers()
            && self
                .connector
                .answers_after_transfers
                .load(Ordering::Relaxed)
            && !self
                .connector
                .answers_during_transfers
                .load(Ordering::Relaxed);
        if sequential {
            self.ask_next_data();
        }
    }

    /// Reads the reply to the EPSV sent ahead, if any, and connects to its
    /// port. `on_callers_path`: a caller waits for this (then its waits
    /// count as round trips; the pool's preparing thread does it off the
    /// callers' path). A refusal or a failed connect leaves no connection
    /// set up (the next transfer asks as usual); a failed read breaks the
    /// session as any would.
    pub fn settle_next_data(&mut self, on_callers_path: bool) {
        let port = match std::mem::take(&mut self.next_data) {
            NextData::Asked => {
                self.awaiting = on_callers_path;
                let reply = self.read_reply("EPSV (sent ahead for the next transfer)");
                let Ok(reply) = self.note(reply) else {
                    return;
                };
                let port = (reply.code == 229)
                    .then(|| super::address::parse_epsv(reply.first_line()))
                    .flatten();
                let Some(port) = port else {
                    log::debug!(
                        "the EPSV sent ahead got {} {}; the next transfer asks again",
                        reply.code,
                        reply.text()
                    );
                    return;
                };
                port
            }
            NextData::Offered(port) => port,
            other => {
                self.next_data = other;
                return;
            }
        };
        let target = self.server.with_port(port).to_string();
        match net::connect("data connection", &target, self.config().timeouts.connect) {
            Ok(tcp) => {
                if on_callers_path {
                    self.count_round_trip();
                }
                self.next_data = NextData::Connected {
                    tcp,
                    since: Instant::now(),
                };
            }
            Err(e) => log::debug!("connecting ahead to {target} failed ({e})"),
        }
    }

    // ---- ends of transfers (used by transfer.rs) ------------------------------

    pub(super) fn session_timeouts(&self) -> super::config::Timeouts {
        self.config().timeouts
    }

    /// What the server that greeted this session is known to do.
    pub(super) fn family(&self) -> ServerFamily {
        self.family
    }

    pub(super) fn through_proxy(&self) -> bool {
        self.config().proxy.is_some()
    }

    /// Sends `SIZE path` with the end of an upload's bytes, where the
    /// server offers SIZE; says whether it went out (see
    /// `dialogue::transfer`: its reply is read with the transfer's).
    pub(super) fn ask_size_ahead(&mut self, path: &[u8]) -> bool {
        if !self.features.size
            || self
                .connector
                .answers_during_transfers
                .load(Ordering::Relaxed)
            || dialogue::check_argument(path, "file name").is_err()
        {
            return false;
        }
        let sent = self.send_line(&Command::with("SIZE", path));
        self.note(sent).is_ok()
    }

    /// Reads the reply that closes a transfer; 226/250 mean complete. With
    /// `size_asked` (`ask_size_ahead`), SIZE's reply too: the size it gave
    /// after the transfer's end, when it did.
    pub(super) fn finish_transfer(&mut self, what: &str, size_asked: bool) -> Result<Option<u64>> {
        // A 4xx/5xx here is the server's verdict on this transfer; the
        // session itself is still in step, so only a failed read counts
        // against it.
        let mut end = TransferEnd::new(what, self.next_data.is_asked());
        if size_asked {
            end = end.with_size_asked();
        }
        let ended = self.converse_with(&mut end, |session, action| {
            let input = session.perform(action);
            session.note(input)
        });
        match end.ahead() {
            Ahead::Nothing | Ahead::Unanswered => {}
            Ahead::Port(port) => self.next_data = NextData::Offered(port),
            Ahead::NoPort => self.next_data = NextData::None,
        }
        if end.size_answered_early() || end.epsv_refused_early() {
            log::debug!(
                "the server answered a command during a transfer; SIZE and EPSV wait for transfers' replies"
            );
            self.connector
                .answers_during_transfers
                .store(true, Ordering::Relaxed);
        } else if end.size_answered_late() {
            self.connector
                .answers_after_transfers
                .store(true, Ordering::Relaxed);
        }
        ended.map(|()| end.size())
    }

    /// Abandons a transfer: the data connection is already closed; ABOR and
    /// NOOP bring the session back in step (see `dialogue::abort`). A session
    /// that does not come back in step is marked broken.
    pub(super) fn abort_transfer(&mut self) {
        if let Err(e) = self.converse(Abort::new()) {
            log::debug!("session dropped after abandoning a transfer: {e}");
            self.broken = true;
        }
        // An EPSV sent with the end of an upload was answered before the
        // NOOP's 200, among the replies the abort consumed: its port is not
        // known, and the next transfer asks again.
        if self.next_data.is_asked() {
            self.next_data = NextData::None;
        }
    }
}

/// `retr`, on any handle to a session: borrowed, or owned by the caller (a
/// pooled session that travels with the download).
pub fn retr_on<S: DerefMut<Target = Session>>(
    mut session: S,
    path: &[u8],
    offset: u64,
    expected_size: Option<u64>,
) -> Result<Download<S>> {
    let stream = session.open_transfer("RETR", Some(path), Start::At(offset))?;
    let expected_end = expected_size.map(|size| size.saturating_sub(offset));
    Ok(Download::new(session, stream, expected_end))
}

/// `RANG start end-1` + RETR: reads `start..end` of `path`, which the
/// server ends there (a range within the file: ProFTPD refuses one past
/// its end). Only for a server whose FEAT lists `RANG STREAM`; a shorter
/// or longer transfer is an error, as for a stale expected size.
pub fn retr_range_on<S: DerefMut<Target = Session>>(
    mut session: S,
    path: &[u8],
    start: u64,
    end: u64,
) -> Result<Download<S>> {
    let range = Start::Range { start, end };
    let stream = session.open_transfer("RETR", Some(path), range)?;
    Ok(Download::new(session, stream, range.length()))
}

/// STOR (or APPE with `verb`), on any handle to a session.
pub fn upload_on<S: DerefMut<Target = Session>>(
    session: S,
    verb: &str,
    path: &[u8],
) -> Result<Upload<S>> {
    upload_at_on(session, verb, path, 0)
}

/// `REST offset` + STOR (0: plain STOR): writes from `offset`. What the
/// server does with the bytes after the written ones (keeps them, cuts them
/// off) or whether it allows it at all is its own choice; see
/// `store::StoreAtOffset`.
pub fn upload_at_on<S: DerefMut<Target = Session>>(
    mut session: S,
    verb: &str,
    path: &[u8],
    offset: u64,
) -> Result<Upload<S>> {
    let stream = session.open_transfer(verb, Some(path), Start::At(offset))?;
    Ok(Upload::new(session, stream))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

/// The path of a 257 reply: `"/dir ""quoted"" name" is current directory`.
fn parse_quoted_path(text: &[u8]) -> Option<Vec<u8>> {
    let start = text.iter().position(|&b| b == b'"')? + 1;
    let mut path = Vec::new();
    let mut i = start;
    while i < text.len() {
        if text[i] == b'"' {
            if text.get(i + 1) == Some(&b'"') {
                path.push(b'"');
                i += 2;
                continue;
            }
            return Some(path);
        }
        path.push(text[i]);
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_paths() {
        assert_eq!(
            parse_quoted_path(b"\"/home/u\" is the current directory"),
            Some(b"/home/u".to_vec())
        );
        assert_eq!(
            parse_quoted_path(b"\"/a \"\"b\"\"\" created"),
            Some(b"/a \"b\"".to_vec())
        );
        assert_eq!(parse_quoted_path(b"no quotes"), None);
        assert_eq!(parse_quoted_path(b"\"unterminated"), None);
    }
}
