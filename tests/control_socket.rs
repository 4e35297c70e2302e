//! The control socket end to end, without FUSE or a server: the mount's
//! side (`ControlServer`) over a filesystem core on the in-memory store,
//! and the commands' side (`client::ask`) over a real Unix socket. What a
//! user would see: the replies, the files on the server after a sync, fresh
//! names after a refresh; and a mount that survives garbage.
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ftpsfs::control::client::ask;
use ftpsfs::control::protocol::ReplyLine;
use ftpsfs::control::status::Sessions;
use ftpsfs::control::{ControlServer, Request, Status, Target};
use ftpsfs::fs::{Fs, FsConfig, OpenFlags, ROOT_INO};
use ftpsfs::store::ErrorKind;
use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

const WRITE: OpenFlags = OpenFlags {
    read: false,
    write: true,
    truncate: false,
    append: false,
    exclusive: false,
};

/// The control socket's view of a core without sessions or a kernel: what
/// the real mount's target does with the core, and a fixed session count.
struct CoreTarget {
    fs: Arc<Fs>,
}

impl Target for CoreTarget {
    fn status(&self) -> Status {
        let pending = self.fs.pending_uploads();
        let mut status = Status {
            version: "test".into(),
            mountpoint: "/mnt/test".into(),
            sessions: Sessions {
                open: 2,
                busy: 1,
                limit: 4,
                ..Sessions::default()
            },
            ..Status::default()
        };
        status.uploads.pending_files = pending.files;
        status.uploads.pending_bytes = pending.bytes;
        status
    }
    fn refresh(&self, path: &[u8]) -> Result<String, String> {
        let (forgotten, _) = self.fs.refresh(path);
        Ok(format!("forgot {forgotten}"))
    }
    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<String, String> {
        self.fs
            .sync_all(&mut |done, total| progress(&format!("{done}/{total}")))
            .map(|n| format!("{n} uploaded"))
            .map_err(|e| e.message)
    }
}

struct Setup {
    store: Arc<MemoryStore>,
    faults: Arc<FaultyStore<Arc<MemoryStore>>>,
    fs: Arc<Fs>,
    server: Option<ControlServer>,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(MemoryStore::new());
    let faults = Arc::new(FaultyStore::new(Arc::clone(&store)));
    let fs = Arc::new(Fs::new(
        faults.clone(),
        FsConfig {
            attr_ttl: Duration::from_secs(600),
            dir_ttl: Duration::from_secs(600),
            spool_dir: dir.path().join("spool"),
            retry_time: Duration::from_secs(1),
            ..FsConfig::default()
        },
    ));
    let socket = dir.path().join("run").join("m.sock");
    let server = ControlServer::start(
        &socket,
        Arc::new(CoreTarget {
            fs: Arc::clone(&fs),
        }),
    )
    .expect("control server");
    Setup {
        store,
        faults,
        fs,
        server: Some(server),
        socket,
        dir,
    }
}

/// The data lines of a reply, or its error.
fn request(socket: &Path, request: Request) -> (Vec<String>, Vec<String>, Result<(), String>) {
    let mut data = Vec::new();
    let mut progress = Vec::new();
    let result = ask(socket, &request, TIMEOUT, |line| match line {
        ReplyLine::Data(text) => data.push(text.clone()),
        ReplyLine::Progress(text) => progress.push(text.clone()),
        _ => {}
    });
    (data, progress, result)
}

/// Sends raw bytes and reads the whole reply.
fn raw(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(TIMEOUT).expect("timeout");
    stream.write_all(bytes).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    reply
}

#[test]
fn status_comes_as_text_and_as_json() {
    let s = setup();
    let (text, _, result) = request(&s.socket, Request::Status { json: false });
    result.expect("status");
    let text = text.join("\n");
    assert!(
        text.contains("2 open (1 busy, 1 idle), at most 4"),
        "{text}"
    );
    assert!(text.contains("/mnt/test"), "{text}");
    let (json, _, result) = request(&s.socket, Request::Status { json: true });
    result.expect("status json");
    assert_eq!(json.len(), 1, "one line of JSON: {json:?}");
    assert!(
        json[0].starts_with('{') && json[0].ends_with('}'),
        "{json:?}"
    );
    assert!(json[0].contains(r#""open":2"#), "{json:?}");
}

#[test]
fn sync_uploads_a_file_that_is_still_open_and_reports_progress() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, b"notes", 0o644, WRITE)
            .expect("create");
    s.fs.write(fh, 0, b"written, not closed").expect("write");
    assert_eq!(s.store.file(b"notes"), None, "staged until flush or sync");
    let (status, _, _) = request(&s.socket, Request::Status { json: false });
    assert!(
        status.iter().any(|l| l.contains("1 pending (19 B)")),
        "{status:?}"
    );

    let (data, progress, result) = request(&s.socket, Request::Sync);
    result.expect("sync");
    assert_eq!(progress, vec!["1/1"]);
    assert_eq!(data, vec!["1 uploaded"]);
    assert_eq!(
        s.store.file(b"notes").as_deref(),
        Some(&b"written, not closed"[..])
    );
    assert_eq!(s.fs.pending_uploads().files, 0);

    let (data, _, result) = request(&s.socket, Request::Sync);
    result.expect("sync again");
    assert_eq!(data, vec!["0 uploaded"], "nothing pending the second time");
    s.fs.release(fh).expect("release");
}

#[test]
fn a_sync_that_fails_says_which_file_and_fails() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, b"refused", 0o644, WRITE)
            .expect("create");
    s.fs.write(fh, 0, b"data").expect("write");
    s.faults
        .fail_always(Op::Upload, ErrorKind::PermissionDenied);
    let (_, _, result) = request(&s.socket, Request::Sync);
    let message = result.expect_err("sync must fail");
    assert!(
        message.contains("1 of 1 file(s) could not be uploaded"),
        "{message}"
    );
    assert!(message.contains("refused"), "names the file: {message}");
    s.faults.clear_faults();
    let _ = s.fs.release(fh);
}

#[test]
fn refresh_shows_a_file_another_client_made() {
    let s = setup();
    s.store.put_dir(b"shared");
    let shared = s.fs.lookup(ROOT_INO, b"shared").expect("lookup").ino;
    assert!(s
        .fs
        .readdir(shared)
        .expect("list")
        .iter()
        .all(|e| e.name != b"new"));
    s.store.put_file(b"shared/new", b"from elsewhere");
    // Within the directory TTL (10 min here) the mount still answers from
    // its listing.
    assert!(
        s.fs.lookup(shared, b"new").is_err(),
        "cached listing says absent"
    );

    let (data, _, result) = request(
        &s.socket,
        Request::Refresh {
            path: b"shared".to_vec(),
        },
    );
    result.expect("refresh");
    assert!(data[0].starts_with("forgot "), "{data:?}");
    let attr = s.fs.lookup(shared, b"new").expect("seen after refresh");
    assert_eq!(attr.size, 14);
}

#[test]
fn garbage_gets_an_error_and_the_mount_goes_on() {
    let s = setup();
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x00\x01\x02\xff\n",
        b"ftpsfs/1 status xml\n",
        b"ftpsfs/9 status\n",
        b"ftpsfs/1 status",
        b"",
    ] {
        let reply = raw(&s.socket, junk);
        assert!(reply.starts_with("error "), "{junk:?} got {reply:?}");
        assert_eq!(reply.lines().count(), 1, "{reply:?}");
    }
    let huge = vec![b'a'; 64 * 1024];
    let reply = raw(&s.socket, &huge);
    assert!(reply.contains("longer than"), "{reply:?}");
    let (_, _, result) = request(&s.socket, Request::Status { json: false });
    result.expect("still serving");
}

#[test]
fn a_silent_client_does_not_block_others_and_too_many_are_refused() {
    let s = setup();
    // Eight connections that never send a request hold every slot.
    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&s.socket).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = raw(&s.socket, b"ftpsfs/1 status\n");
    assert!(busy.starts_with("error busy"), "{busy:?}");
    drop(silent);
    // Closed connections free their slots at once (end of file, not the
    // request timeout).
    let mut served = false;
    for _ in 0..50 {
        if request(&s.socket, Request::Status { json: false })
            .2
            .is_ok()
        {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "slots came back");
}

#[test]
fn the_socket_is_private_and_goes_with_the_server() {
    let mut s = setup();
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&s.socket), 0o600);
    assert_eq!(mode(s.socket.parent().expect("dir")), 0o700);
    s.server.take();
    assert!(!s.socket.exists(), "removed when the mount ends");
    let (_, _, result) = request(&s.socket, Request::Status { json: false });
    let message = result.expect_err("no mount");
    assert!(message.contains("no running mount"), "{message}");

    // A socket file left by a mount that was killed is replaced.
    std::os::unix::net::UnixListener::bind(&s.socket).expect("stale socket");
    let target = Arc::new(CoreTarget {
        fs: Arc::clone(&s.fs),
    });
    let again = ControlServer::start(&s.socket, target.clone()).expect("replaces a dead socket");
    request(&s.socket, Request::Status { json: false })
        .2
        .expect("served again");
    // A live one is not taken over.
    assert!(ControlServer::start(&s.socket, target).is_err());
    drop(again);
    let _ = &s.dir;
}

#[test]
fn a_reply_is_read_line_by_line_until_ok() {
    let s = setup();
    let mut stream = UnixStream::connect(&s.socket).expect("connect");
    stream.write_all(b"ftpsfs/1 status\n").expect("send");
    let lines: Vec<String> = BufReader::new(stream)
        .lines()
        .map(|l| l.expect("line"))
        .collect();
    assert_eq!(lines.last().map(String::as_str), Some("ok"));
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l.starts_with("data ")));
}
