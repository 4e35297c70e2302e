//! The filesystem core over the FTPS store and the in-process server
//! (libunftp), counted in the commands the client sent (`Stats`): the REST +
//! STOR probe runs once, in the background, so that the first patch of a
//! mount costs what any later one does; and an append asks the server's
//! size with one command, not a listing. A change that adds a command to
//! either fails here. And the sessions a large read's extra streams will
//! use set up their data connections ahead.
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use std::sync::Arc;
use std::time::Duration;

use common::core::{self, KIB, MIB, WRITE};
use common::data;
use common::store_contract;
use ftpsfs::fs::{Fs, FsConfig, OpenFlags};
use ftpsfs::ftp::{Connector, Pool, PoolSettings};
use ftpsfs::store::ftps::{FtpsStore, ProbeStatus};
use ftpsfs::store::{RemoteStore, StoreAtOffset};

struct Rig {
    server: inproc::InProcServer,
    pool: Arc<Pool>,
    store: Arc<FtpsStore>,
    fs: Fs,
    _spool: tempfile::TempDir,
}

fn rig(adjust: impl FnOnce(&mut FsConfig)) -> Rig {
    let server = inproc::InProcServer::start();
    let pool = Arc::new(Pool::new(
        Connector::new(server.info().config()).unwrap(),
        PoolSettings::default(),
    ));
    pool.warm_up(4).expect("log in");
    let store = Arc::new(
        FtpsStore::connect(Arc::clone(&pool), b"")
            .expect("store")
            .with_size_after_uploads(true),
    );
    let spool = tempfile::tempdir().expect("temp dir");
    let mut config = FsConfig {
        spool_dir: spool.path().join("spool"),
        attr_ttl: Duration::from_secs(60),
        dir_ttl: Duration::from_secs(60),
        ..FsConfig::default()
    };
    adjust(&mut config);
    let fs = Fs::new(Arc::clone(&store) as Arc<dyn RemoteStore>, config);
    Rig {
        server,
        pool,
        store,
        fs,
        _spool: spool,
    }
}

impl Rig {
    fn commands(&self) -> u64 {
        self.pool.connector().stats().snapshot().commands
    }

    /// The names in the server's directory, hidden ones too.
    fn names_on_server(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.server.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Writes `data` at `offset` of `name` and closes it; the commands that
    /// took, by name, as the server logged them, but EPSV (sent ahead of a
    /// transfer or not, as the pool's sessions happen to be ready).
    fn write_and_close(
        &self,
        name: &str,
        flags: OpenFlags,
        offset: u64,
        data: &[u8],
    ) -> Vec<String> {
        let ino = core::ino(&self.fs, name);
        let mark = self.server.log_text().len();
        let fh = self.fs.open(ino, flags).expect("open");
        self.fs.write(fh, offset, data).expect("write");
        self.fs.release(fh).expect("release");
        let log = self.server.log_text();
        log[mark..]
            .lines()
            .filter_map(|line| {
                line.split_once("Control channel event Command(")
                    .map(|(_, c)| c)
            })
            .map(|command| {
                let end = command.find([' ', '{', ')']).unwrap_or(command.len());
                command[..end].to_string()
            })
            .filter(|command| command != "Epsv")
            .collect()
    }

    /// Until the probe's file is gone (its DELE may come after the answer).
    fn probe_file_removed(&self) {
        let gone = common::mount::wait_until(10, || {
            self.names_on_server()
                .iter()
                .all(|name| !name.contains("store-at-offset-probe"))
        });
        assert!(gone, "the probe file is left: {:?}", self.names_on_server());
    }
}

/// The probe runs once, on its own thread, before anything needs it; the
/// first patch then sends exactly the commands of the second (no probe of
/// its own: fetched to be patched, as libunftp truncates, the time before
/// the fetch and before the patch, REST + STOR, the size after), and the
/// probe file is gone.
#[test]
fn the_probe_runs_once_ahead_and_the_first_patch_costs_no_more_than_the_next() {
    let r = rig(|c| c.patch_min_size = 64 * KIB as u64);
    let body = data::bytes(MIB, 71);
    store_contract::write_file(&*r.store, b"big", &body);
    assert_eq!(r.store.probe_status(), ProbeStatus::NotProbed);
    r.fs.probe_ahead()
        .expect("probed ahead")
        .join()
        .expect("the probe thread");
    // libunftp ends the file where a REST + STOR ended, as Pure-FTPd does:
    // a change near the end is sent from there to the end.
    assert_eq!(
        r.store.probe_status(),
        ProbeStatus::Found(StoreAtOffset::Truncates)
    );
    assert_eq!(
        r.names_on_server(),
        vec!["big".to_string()],
        "no probe file"
    );
    core::ino(&r.fs, "big");
    let block = data::bytes(4 * KIB, 72);
    let first = r.write_and_close("big", WRITE, (MIB - 16 * KIB) as u64, &block);
    let second = r.write_and_close("big", WRITE, (MIB - 8 * KIB) as u64, &block);
    assert_eq!(r.fs.stats().patches, 2, "both patched");
    assert_eq!(
        first, second,
        "the first patch asked nothing more than the second"
    );
    assert_eq!(first, ["Mlst", "Retr", "Mlst", "Rest", "Stor", "Size"]);
    assert_eq!(r.store.probes(), 1);
    let mut expected = body;
    expected[MIB - 16 * KIB..MIB - 12 * KIB].copy_from_slice(&block);
    expected[MIB - 8 * KIB..MIB - 4 * KIB].copy_from_slice(&block);
    assert!(store_contract::read_all(&*r.store, b"big", 0) == expected);
}

/// A background probe that could not tell (here: its directory is
/// missing) leaves the question to the first need, which probes where its
/// file is; from then on the answer is known and costs nothing.
#[test]
fn a_probe_ahead_that_cannot_tell_leaves_it_to_the_first_need() {
    let r = rig(|_| {});
    r.store.probe_store_at_offset(b"no-such-dir");
    assert_eq!(r.store.probes(), 1);
    assert_eq!(
        r.store.probe_status(),
        ProbeStatus::Found(StoreAtOffset::Unknown)
    );
    assert_eq!(r.store.store_at_offset(b""), StoreAtOffset::Truncates);
    assert_eq!(r.store.probes(), 2, "probed again, on demand");
    r.probe_file_removed();
    let before = r.commands();
    assert_eq!(r.store.store_at_offset(b""), StoreAtOffset::Truncates);
    r.store.probe_store_at_offset(b"");
    assert_eq!((r.store.probes(), r.commands()), (2, before));
}

/// A caller that needs the answer while the probe ahead runs waits for
/// that probe: one probe, whichever comes first.
#[test]
fn a_caller_during_the_probe_ahead_waits_for_it() {
    let r = rig(|_| {});
    let ahead = r.fs.probe_ahead().expect("probed ahead");
    assert_eq!(r.store.store_at_offset(b""), StoreAtOffset::Truncates);
    ahead.join().expect("the probe thread");
    assert_eq!(r.store.probes(), 1);
}

/// Nothing is probed where nothing is written in place.
#[test]
fn no_probe_ahead_with_patch_never_or_read_only() {
    for adjust in [
        (|c: &mut FsConfig| c.patch_in_place = false) as fn(&mut FsConfig),
        |c: &mut FsConfig| c.read_only = true,
    ] {
        let r = rig(adjust);
        assert!(r.fs.probe_ahead().is_none());
        assert_eq!(r.store.probes(), 0);
    }
}

/// `>>` onto a big file: SIZE before the APPE (not a listing, which takes a
/// data connection), the APPE, and the check of the size after it.
#[test]
fn an_append_costs_a_size_an_appe_and_its_check() {
    let r = rig(|_| {});
    let body = data::bytes(MIB, 73);
    // Put there by another client: the store knows no size of it.
    std::fs::write(r.server.root().join("log"), &body).unwrap();
    core::ino(&r.fs, "log");
    let line = data::bytes(10 * KIB, 74);
    let append = OpenFlags {
        append: true,
        ..WRITE
    };
    let commands = r.write_and_close("log", append, 0, &line);
    assert_eq!(r.fs.stats().appends, 1);
    assert!(store_contract::read_all(&*r.store, b"log", 0) == [body, line].concat());
    // The size before appending (not a listing), the APPE, its check.
    assert_eq!(commands, ["Size", "Appe", "Size"]);
}

/// The extra streams of a large read find their sessions ready: idle
/// sessions set up data connections ahead while the reader's first MiB
/// comes (`RemoteStore::ready_for_reads`, EPSV and the connect off the
/// reader's path), and the segments' opens then go out on them.
#[test]
fn idle_sessions_set_up_data_connections_for_the_streams_of_a_large_read() {
    let r = rig(|_| {});
    let body = data::bytes(MIB, 72);
    store_contract::write_file(&*r.store, b"big", &body);
    let epsvs = || r.server.log_text().matches("Command(Epsv").count();
    // Idle sessions with no data connection set up ahead: fresh logins
    // (the upload's session already has one).
    let before = r.pool.connector().stats().snapshot().data_set_up_ahead;
    let epsv_before = epsvs();
    r.store.ready_for_reads(2);
    assert!(
        common::mount::wait_until(10, || epsvs() >= epsv_before + 2),
        "EPSV sent ahead: {} of 2",
        epsvs() - epsv_before
    );
    // The three opens the segments of a read would make, one per session.
    let mut streams = Vec::new();
    for offset in [0, MIB as u64 / 2, MIB as u64 - 10] {
        let mut stream = r
            .store
            .open_read_now(b"big", offset)
            .expect("open")
            .expect("a session free now");
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).expect("read");
        assert_eq!((n, byte[0]), (1, body[offset as usize]));
        streams.push(stream);
    }
    let ahead = r.pool.connector().stats().snapshot().data_set_up_ahead - before;
    assert!(
        ahead >= 2,
        "opens on connections set up ahead: {ahead}, expected 2 or more"
    );
}
