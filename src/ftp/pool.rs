//! A bounded pool of logged-in control sessions.
//!
//! A session is checked out for one operation (`get` returns a guard that puts
//! it back on drop); a broken session is dropped instead of returned, and one
//! that saw an error or sat idle is probed with NOOP before reuse. A background
//! thread sends NOOP to idle sessions before the server's idle timeout and
//! closes sessions idle for long. When the server refuses more sessions (421),
//! the pool lowers its own limit to what the server allows and callers queue.
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{Error, Result};
use super::session::{Connector, Session};

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_sessions: usize,
    /// Sessions unused for this long are closed (one is always kept).
    pub idle_expiry: Duration,
    /// Longest wait for a free session before the operation fails.
    pub checkout_timeout: Duration,
    /// Attempts after the first for operations that may be retried.
    pub retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_sessions: 4,
            idle_expiry: Duration::from_secs(600),
            checkout_timeout: Duration::from_secs(120),
            retries: 3,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Whether an operation may be repeated after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reading, listing, deleting a path, setting a time: repeating is harmless.
    Idempotent,
    /// Anything whose repetition could differ (rename, append): only failures
    /// before the command was sent are retried.
    Once,
}

pub struct Pool {
    shared: Arc<Shared>,
    keepalive: Option<JoinHandle<()>>,
}

struct Shared {
    connector: Arc<Connector>,
    settings: PoolSettings,
    state: Mutex<State>,
    /// Signalled when a session is returned or a slot frees up.
    available: Condvar,
    /// Signalled to stop the keepalive thread.
    closing: Condvar,
}

struct State {
    idle: Vec<IdleSession>,
    /// Sessions in existence or being connected (idle + checked out).
    open: usize,
    /// At most this many sessions; lowered when the server refuses more.
    limit: usize,
    /// Sessions setting up their next data connection (see
    /// `PooledSession::drop`), back in a moment.
    preparing: usize,
    closed: bool,
}

/// The longest a checkout that would not wait (`try_get`) waits for a
/// session that is setting up its next data connection: that takes a
/// round trip or two, and the session is then better than none.
const PREPARING_WAIT: Duration = Duration::from_secs(2);

struct IdleSession {
    session: Session,
    returned_at: Instant,
    needs_probe: bool,
}

impl Pool {
    pub fn new(connector: Arc<Connector>, settings: PoolSettings) -> Pool {
        let limit = settings.max_sessions.max(1);
        let shared = Arc::new(Shared {
            connector,
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                limit,
                preparing: 0,
                closed: false,
            }),
            available: Condvar::new(),
            closing: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let keepalive = std::thread::Builder::new()
            .name("ftpsfs-keepalive".into())
            .spawn(move || keepalive_loop(weak))
            .ok();
        Pool { shared, keepalive }
    }

    pub fn connector(&self) -> &Arc<Connector> {
        &self.shared.connector
    }

    /// Logs in up to `count` sessions in parallel, so the first operations do
    /// not wait for logins one after another. Returns the first login error.
    pub fn warm_up(&self, count: usize) -> Result<()> {
        let count = count.min(self.shared.settings.max_sessions).max(1);
        // Each login gives its session back at once: a server that caps
        // sessions (421) makes the others wait for one, which must not be
        // held until every login is done.
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| self.get().map(drop)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::protocol("login", "login thread panicked")))
                })
                .collect()
        });
        let mut first_error = None;
        for result in results {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Checks out a session, connecting a new one when below the limit and
    /// waiting for one to come back otherwise.
    pub fn get(&self) -> Result<PooledSession> {
        self.get_within(self.shared.settings.checkout_timeout)
    }

    /// Checks out a session only if one is idle or may be connected now:
    /// `None` when all are in use (or a new one did not connect in time).
    /// For work that is an extra (a segment of a download that goes on
    /// without it), which must never wait for a session that the work it
    /// speeds up may be waiting for too.
    pub fn try_get(&self) -> Result<Option<PooledSession>> {
        match self.get_within(Duration::ZERO) {
            Ok(session) => Ok(Some(session)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `get`, waiting at most `wait` for a session to come back (zero: a
    /// session only if one is idle or may be opened now), for what is not
    /// worth waiting for, such as the free space `df` shows.
    pub fn get_within(&self, wait: Duration) -> Result<PooledSession> {
        let shared = &self.shared;
        let started = Instant::now();
        let deadline = started + wait;
        let patience_end = started + PREPARING_WAIT;
        loop {
            let mut state = shared.state.lock();
            if state.closed {
                return Err(Error::Closed {
                    phase: "the session pool is shut down".into(),
                });
            }
            if let Some(idle) = take_idle(&mut state.idle) {
                drop(state);
                if let Some(session) = self.ready(idle) {
                    return Ok(self.guard(session, false));
                }
                continue;
            }
            if state.open < state.limit {
                state.open += 1;
                drop(state);
                match shared.connector.connect() {
                    Ok(session) => return Ok(self.guard(session, true)),
                    Err(e) => {
                        let mut state = shared.state.lock();
                        state.open -= 1;
                        shared.available.notify_one();
                        if e.code() == Some(421) && state.open > 0 {
                            // The server caps sessions per client: live with
                            // the ones we have and queue for them.
                            state.limit = state.open;
                            log::warn!(
                                "server refused another session ({e}); using at most {} sessions",
                                state.limit
                            );
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            // A session setting up its next data connection is back soon,
            // and held by nobody: worth a short wait even for `try_get`.
            let until = if state.preparing > 0 {
                deadline.max(patience_end)
            } else {
                deadline
            };
            if shared.available.wait_until(&mut state, until).timed_out() {
                return Err(Error::Timeout {
                    phase: format!("waiting for a free FTP session ({} in use)", state.open),
                    after: wait,
                });
            }
        }
    }

    /// Runs `op` on a session; on a transient failure (connection lost,
    /// timeout, 421/4xx) retries with exponential backoff on a fresh session,
    /// as far as `retry` allows.
    pub fn run<T>(&self, retry: Retry, mut op: impl FnMut(&mut Session) -> Result<T>) -> Result<T> {
        let settings = &self.shared.settings;
        let mut backoff = settings.backoff_initial;
        let mut attempt = 0;
        loop {
            // Whether a command went out, and on a session just logged in.
            let (result, command_sent, fresh) = match self.get() {
                Ok(mut session) => {
                    let fresh = session.fresh;
                    (op(&mut session), true, fresh)
                }
                Err(e) => (Err(e), false, false),
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            // A new connection that got no answer in time (connect, TLS,
            // greeting, or a data connection of a session just logged in)
            // means the server or the network hangs: another attempt would
            // only make the program wait another timeout. A session that sat
            // in the pool may have been forgotten by a firewall, so its
            // timeout is tried again on a new one; a refused connect fails
            // fast and is tried again too.
            let unanswered = (!command_sent || fresh) && matches!(err, Error::Timeout { .. });
            let may_retry = err.is_transient()
                && !unanswered
                && attempt < settings.retries
                && (retry == Retry::Idempotent || !command_sent);
            if !may_retry {
                return Err(err);
            }
            log::info!(
                "retrying after a transient error (attempt {}): {err}",
                attempt + 1
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(settings.backoff_max);
            attempt += 1;
        }
    }

    /// The most sessions the pool will open now: `max_sessions`, or fewer once
    /// the server refused more.
    pub fn session_limit(&self) -> usize {
        self.shared.state.lock().limit
    }

    /// Sessions open now (idle and checked out).
    pub fn open_sessions(&self) -> usize {
        self.shared.state.lock().open
    }

    /// Sessions open and waiting for work.
    pub fn idle_sessions(&self) -> usize {
        self.shared.state.lock().idle.len()
    }

    fn guard(&self, session: Session, fresh: bool) -> PooledSession {
        PooledSession {
            session: Some(session),
            shared: Arc::clone(&self.shared),
            fresh,
        }
    }

    /// Sets up the next data connection (EPSV and its connect, on a thread
    /// of its own as after a transfer) on up to `n` idle sessions that have
    /// none, for transfers expected on them soon: the extra streams of a
    /// large file being read, whose first open then costs REST + RETR and
    /// the TLS handshake only (on the WAN rig 0.10 s instead of 0.15 s:
    /// they start closer to the download they join). Sessions that would
    /// be probed before use are left alone; a connection left unused is
    /// replaced after `NEXT_DATA_MAX_AGE`, as any set up ahead.
    pub fn set_up_data_ahead(&self, n: usize) {
        let taken: Vec<Session> = {
            let mut state = self.shared.state.lock();
            if state.closed {
                return;
            }
            let mut taken = Vec::new();
            let mut i = 0;
            while i < state.idle.len() && taken.len() < n {
                let entry = &state.idle[i];
                let bare = !entry.session.has_next_data() && !entry.session.next_data_asked();
                if bare && !self.must_probe(entry) {
                    taken.push(state.idle.remove(i).session);
                } else {
                    i += 1;
                }
            }
            taken
        };
        for mut session in taken {
            session.ask_next_data();
            // Back to the pool once ready (see `PooledSession::drop`).
            drop(self.guard(session, false));
        }
    }

    /// Decides whether an idle session can be handed out, probing it when it
    /// saw an error or sat idle for a while.
    fn ready(&self, idle: IdleSession) -> Option<Session> {
        let probe = self.must_probe(&idle);
        let mut session = idle.session;
        if probe {
            if let Err(e) = session.noop() {
                log::debug!("dropping a pooled session that failed its probe: {e}");
                if session.is_broken() {
                    self.shared.lost(session);
                } else {
                    self.shared.forget(session);
                }
                return None;
            }
        }
        Some(session)
    }

    /// Whether an idle session is probed (NOOP) before it is handed out:
    /// it saw an error, or sat idle for half the keepalive interval.
    fn must_probe(&self, idle: &IdleSession) -> bool {
        let probe_after = self.shared.connector.config().keepalive.noop_after / 2;
        idle.needs_probe || idle.session.idle_for() >= probe_after
    }
}

impl Shared {
    /// Closes a session and frees its slot.
    fn forget(&self, session: Session) {
        session.quit();
        let mut state = self.state.lock();
        state.open = state.open.saturating_sub(1);
        self.available.notify_one();
    }

    /// Closes a session whose connection failed, and the idle ones with it:
    /// they have most likely met the same fate (a server restart, a NAT or
    /// firewall that forgot every connection). Kept, they would be handed
    /// out one after another, each costing a retry or, when the network
    /// swallows packets, a whole reply timeout; a new login costs a round
    /// trip or two. They are closed without QUIT, which could wait on a
    /// server that no longer answers.
    fn lost(&self, session: Session) {
        let idle = {
            let mut state = self.state.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open = state.open.saturating_sub(1 + idle.len());
            self.available.notify_all();
            idle
        };
        if !idle.is_empty() {
            log::info!(
                "a session's connection failed; closing the {} idle ones too",
                idle.len()
            );
        }
        session.quit();
        drop(idle);
    }

    /// A session back from a checkout (`prepared`: from setting up its
    /// next data connection): idle again, or closed when broken.
    fn put_back(&self, mut session: Session, prepared: bool) {
        if session.is_broken() {
            if prepared {
                self.state.lock().preparing -= 1;
            }
            self.lost(session);
        } else {
            let needs_probe = session.take_error_seen();
            self.give_back(session, needs_probe, prepared);
        }
    }

    /// Sets up the data connection of the session's next transfer (see
    /// `Session::settle_next_data`), then puts the session back.
    fn prepare_and_put_back(&self, slot: &Mutex<Option<Session>>) {
        if let Some(mut session) = slot.lock().take() {
            session.settle_next_data(false);
            self.put_back(session, true);
        }
    }

    fn give_back(&self, session: Session, needs_probe: bool, prepared: bool) {
        let mut state = self.state.lock();
        if prepared {
            state.preparing -= 1;
        }
        if state.closed {
            state.open = state.open.saturating_sub(1);
            drop(state);
            session.quit();
            return;
        }
        state.idle.push(IdleSession {
            session,
            returned_at: Instant::now(),
            needs_probe,
        });
        self.available.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = {
            let mut state = self.shared.state.lock();
            state.closed = true;
            state.open = state.open.saturating_sub(state.idle.len());
            std::mem::take(&mut state.idle)
        };
        self.shared.closing.notify_all();
        self.shared.available.notify_all();
        for entry in idle {
            entry.session.quit();
        }
        if let Some(handle) = self.keepalive.take() {
            let _ = handle.join();
        }
    }
}

/// A checked-out session; goes back to the pool when dropped, unless broken.
pub struct PooledSession {
    session: Option<Session>,
    shared: Arc<Shared>,
    /// Logged in for this checkout, not taken from the idle ones.
    pub fresh: bool,
}

impl PooledSession {
    /// Drops the session instead of returning it (e.g. after a failed upload
    /// whose state on the server is unclear).
    pub fn discard(mut self) {
        if let Some(session) = self.session.take() {
            self.shared.forget(session);
        }
    }
}

impl Deref for PooledSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("session present until drop")
    }
}

impl DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("session present until drop")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if !session.next_data_asked() {
            self.shared.put_back(session, false);
            return;
        }
        // The reply to the EPSV sent ahead is read and its port connected
        // to on a thread of its own, so that the caller (a close() waiting
        // for an upload's 226) does not wait for them; the session comes
        // back once ready.
        self.shared.state.lock().preparing += 1;
        let slot = Arc::new(Mutex::new(Some(session)));
        let theirs = Arc::clone(&slot);
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("ftpsfs-data-ahead".into())
            .spawn(move || shared.prepare_and_put_back(&theirs));
        if let Err(e) = spawned {
            log::debug!("setting up the next data connection in place: {e}");
            self.shared.prepare_and_put_back(&slot);
        }
    }
}

/// Takes the idle session to hand out: the earliest returned that has a
/// data connection ready for its next transfer, else the latest returned.
/// Among ready ones the earliest: a session comes back as soon as its next
/// data connection is connected, and a connection just connected may not
/// take bytes at once all the way (a middlebox that completes the TCP
/// handshake itself, as the WAN rig's proxy does, holds them until its own
/// connection to the server is up), while one connected a transfer ago
/// surely does. (The server answers EPSV with an upload's 226 where it can,
/// so a session is back, connected, right as its upload ends.)
fn take_idle(idle: &mut Vec<IdleSession>) -> Option<IdleSession> {
    match idle.iter().position(|entry| entry.session.has_next_data()) {
        Some(ready) => Some(idle.remove(ready)),
        None => idle.pop(),
    }
}

/// Keeps idle sessions alive (NOOP before the server's idle timeout) and
/// closes those unused for `idle_expiry`, keeping one warm.
fn keepalive_loop(shared: Weak<Shared>) {
    loop {
        let Some(pool) = shared.upgrade() else {
            return;
        };
        let noop_after = pool.connector.config().keepalive.noop_after;
        let tick = (noop_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let (to_ping, to_close) = {
            let mut state = pool.state.lock();
            if !state.closed {
                pool.closing.wait_for(&mut state, tick);
            }
            if state.closed {
                return;
            }
            let mut to_ping = Vec::new();
            let mut to_close = Vec::new();
            let mut keep = Vec::new();
            let expiry = pool.settings.idle_expiry;
            let mut remaining = state.idle.len();
            for entry in std::mem::take(&mut state.idle) {
                if entry.returned_at.elapsed() >= expiry && remaining > 1 {
                    to_close.push(entry);
                    remaining -= 1;
                } else if entry.session.idle_for() >= noop_after {
                    to_ping.push(entry);
                } else {
                    keep.push(entry);
                }
            }
            state.idle = keep;
            state.open -= to_close.len();
            (to_ping, to_close)
        };
        for entry in to_close {
            entry.session.quit();
        }
        for mut entry in to_ping {
            match entry.session.noop() {
                Ok(()) => {
                    let mut state = pool.state.lock();
                    if state.closed {
                        state.open = state.open.saturating_sub(1);
                        drop(state);
                        entry.session.quit();
                    } else {
                        state.idle.insert(0, entry);
                        pool.available.notify_one();
                    }
                }
                Err(e) => {
                    log::info!("an idle session was lost ({e}); it will be replaced when needed");
                    pool.forget(entry.session);
                }
            }
        }
        drop(pool);
    }
}
