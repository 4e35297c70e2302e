//! Finding out what `REST n` + `STOR` does on the server (see
//! `StoreAtOffset`): a probe on a hidden temporary file, whose answer is
//! kept for the store's life.
//!
//! When: once the mount is up, in the background, in the mount's root
//! (`probe_ahead`: only on a session idle then, and never waiting for the
//! lock of a probe already running), so that the first patch of a mount
//! finds the answer known. Where that could not tell (the root is not
//! writable, the connection was lost, no session was idle), the first
//! caller that needs the answer probes in its file's directory
//! (`store_at_offset`). A caller that needs it while a probe runs waits for
//! that probe: the answer is under a lock held for the probe's length.
//!
//! How: on one session, start to end, so that each transfer after the first
//! goes out on the data connection set up ahead as the one before ended,
//! and REST goes out with its STOR (one round trip): `STOR` of
//! `0123456789`, `REST 3` + `STOR` of `XY`, `RETR` of the file (its length
//! is the file's size: no SIZE). The answer is known then and given out at
//! once; the `DELE` of the probe file follows on the same session, which
//! goes back to the pool only after its reply (an on-demand probe sends it
//! from a thread of its own, so its caller does not wait for it). A probe
//! file left behind (the DELE failed, a crash) is hidden, and swept later
//! by the core as any temporary name.
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{from_ftp, probe_name, refuses_store_at_offset, FtpsStore};
use crate::ftp::session::upload_at_on;
use crate::ftp::{self, PooledSession, Session};
use crate::store::path::{join, shown};
use crate::store::{Result, StoreAtOffset};

/// The longest a background probe looks for an idle session: the sessions
/// a mount logs in at start are idle a moment later.
const IDLE_SESSION_WAIT: Duration = Duration::from_secs(2);
/// A probe file read back is this long at most (10 bytes expected).
const PROBE_READ_LIMIT: usize = 1024;

/// What is known of REST + STOR on this server.
#[derive(Default)]
pub(super) struct Probe {
    /// The answer; locked for the length of a probe, so that concurrent
    /// callers wait for that probe.
    known: Mutex<StoreAtOffset>,
    /// Probes begun, for `ftpsfs status` and tests.
    runs: AtomicU64,
}

/// Where the answer stands, for `ftpsfs status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStatus {
    NotProbed,
    Probing,
    /// What the last probe found (`Unknown`: it could not tell).
    Found(StoreAtOffset),
}

impl FtpsStore {
    /// What REST + STOR does here, probing in `dir` first if no probe told
    /// yet (see the module comment).
    pub(super) fn store_at_offset_probed(&self, dir: &[u8]) -> StoreAtOffset {
        let mut known = self.probe.known.lock();
        if *known != StoreAtOffset::Unknown {
            return *known;
        }
        let session = match self.pool.get() {
            Ok(session) => session,
            Err(e) => {
                log::info!("no session to find out what REST + STOR does ({e}); will try again when needed");
                return StoreAtOffset::Unknown;
            }
        };
        let (found, cleanup) = self.probe_on(session, dir);
        *known = found;
        drop(known);
        // Nobody waits for the DELE.
        let spawned = std::thread::Builder::new()
            .name("ftpsfs-probe-cleanup".into())
            .spawn(move || cleanup.run());
        if let Err(e) = spawned {
            log::warn!("the probe file is left behind (no thread to remove it: {e}); it is hidden, and swept later");
        }
        found
    }

    /// The probe, ahead of need, in `dir`, on a session idle now; returns
    /// at once where the answer is known, a probe runs, or no session
    /// became idle within `IDLE_SESSION_WAIT`.
    pub fn probe_ahead(&self, dir: &[u8]) {
        let session = match self.pool.get_within(IDLE_SESSION_WAIT) {
            Ok(session) => session,
            Err(e) => {
                log::debug!("REST + STOR not probed ahead ({e}); probed when needed");
                return;
            }
        };
        let Some(mut known) = self.probe.known.try_lock() else {
            return;
        };
        if *known != StoreAtOffset::Unknown {
            return;
        }
        let (found, cleanup) = self.probe_on(session, dir);
        *known = found;
        drop(known);
        cleanup.run();
    }

    /// Where the answer stands now (never waits for a probe).
    pub fn probe_status(&self) -> ProbeStatus {
        match self.probe.known.try_lock() {
            None => ProbeStatus::Probing,
            Some(_) if self.probe.runs.load(Ordering::Relaxed) == 0 => ProbeStatus::NotProbed,
            Some(known) => ProbeStatus::Found(*known),
        }
    }

    /// Probes begun so far.
    pub fn probes(&self) -> u64 {
        self.probe.runs.load(Ordering::Relaxed)
    }

    /// Runs the probe in `dir` on `session`; the answer, and what removes
    /// the probe file.
    fn probe_on(&self, mut session: PooledSession, dir: &[u8]) -> (StoreAtOffset, Cleanup) {
        self.probe.runs.fetch_add(1, Ordering::Relaxed);
        let remote = self.remote(&join(dir, &probe_name()).into_bytes());
        let found = match probe(&mut session, &remote) {
            Ok(found) => {
                log::info!("REST + STOR on this server: {found:?}");
                found
            }
            Err(e) => {
                log::info!("could not find out what REST + STOR does on this server ({e}); will try again when needed");
                StoreAtOffset::Unknown
            }
        };
        (found, Cleanup { session, remote })
    }
}

/// The DELE of a probe file, on the session of its probe.
struct Cleanup {
    session: PooledSession,
    remote: Vec<u8>,
}

impl Cleanup {
    fn run(mut self) {
        // A session the probe broke is gone: the pool gives another.
        let deleted = if self.session.is_broken() {
            drop(self.session);
            Err(ftp::Error::Closed {
                phase: "the probe's session was lost".into(),
            })
        } else {
            self.session.delete(&self.remote)
        };
        match deleted {
            Ok(()) => {}
            Err(e) if e.kind() == ftp::Kind::NotFound => {}
            Err(e) => log::warn!(
                "could not remove the probe file {} ({e}); it is hidden, and swept later",
                shown(&self.remote)
            ),
        }
    }
}

/// STOR `0123456789`, REST 3 + STOR `XY`, RETR: what the file became.
fn probe(session: &mut Session, remote: &[u8]) -> Result<StoreAtOffset> {
    let whole = format!("writing the probe file {}", shown(remote));
    let mut up = session.stor(remote).map_err(|e| from_ftp(e, &whole))?;
    up.write_all(b"0123456789").map_err(|e| {
        from_ftp(
            ftp::Error::io("writing the probe", e, Duration::ZERO),
            &whole,
        )
    })?;
    up.finish().map_err(|e| from_ftp(e, &whole))?;

    let at_offset = format!("writing the probe file {} from byte 3", shown(remote));
    let written = upload_at_on(&mut *session, "STOR", remote, 3).and_then(|mut up| {
        up.write_all(b"XY")
            .map_err(|e| ftp::Error::io("writing the probe", e, Duration::ZERO))?;
        up.finish()
    });
    match written {
        Ok(_) => {}
        Err(e) if refuses_store_at_offset(&e) => {
            log::info!("the server refuses REST before STOR: {e}");
            return Ok(StoreAtOffset::Refused);
        }
        Err(e) => return Err(from_ftp(e, &at_offset)),
    }

    let back = format!("reading the probe file {}", shown(remote));
    let mut down = session
        .retr(remote, 0, None)
        .map_err(|e| from_ftp(e, &back))?;
    let mut content = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = down.read(&mut buf).map_err(|e| {
            from_ftp(
                ftp::Error::io("reading the probe", e, Duration::ZERO),
                &back,
            )
        })?;
        if n == 0 {
            break;
        }
        content.extend_from_slice(&buf[..n]);
        if content.len() > PROBE_READ_LIMIT {
            // Not what was written: whatever it is, it is not usable.
            down.abort();
            return Ok(not_usable(&content));
        }
    }
    // Only a complete download (226) tells the file's length.
    down.finish().map_err(|e| from_ftp(e, &back))?;
    Ok(match content.as_slice() {
        b"012XY56789" => StoreAtOffset::InPlace,
        b"012XY" => StoreAtOffset::Truncates,
        other => not_usable(other),
    })
}

fn not_usable(content: &[u8]) -> StoreAtOffset {
    log::warn!(
        "REST 3 + STOR \"XY\" into \"0123456789\" gave {:?}: not usable, taken as refused",
        String::from_utf8_lossy(&content[..content.len().min(64)])
    );
    StoreAtOffset::Refused
}
