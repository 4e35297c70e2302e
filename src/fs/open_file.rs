//! The lifecycle of an open file: where its content is, and what must still
//! happen to it before the server has it. All handles open on one inode
//! share one `OpenFile`.
//!
//! States (`FileState`); each holds exactly what it needs:
//!
//! | state | content | on the server at flush |
//! |---|---|---|
//! | `Remote` | the server's copy; nothing held here | nothing to do |
//! | `NotOnServer` | none: created here, and its first upload failed | nothing to do; shows as an empty file |
//! | `Filling` | a spool written in order from byte 0 (new file, `O_TRUNC`, `truncate 0`) | one upload of the spool |
//! | `Staged` | a spool with the whole file, changed anywhere | one upload of the spool |
//! | `Appending` | the bytes written at or after the server's end, in a spool | only those, with APPE, resumed if cut |
//! | `Patching` | the bytes written inside a big file, at their offsets; the rest is the server's (`overlay`) | only those ranges, with REST + STOR (`patch`) |
//! | `Streaming` | an upload taking the writes as they come | the upload is finished |
//! | `SavedEmpty` | just uploaded empty, with handles still open for writing | nothing to do |
//! | `Orphaned` | unlinked or replaced while open: a private copy, if written | never uploaded |
//!
//! Transitions (the functions that make them are named in brackets):
//!
//! ```text
//!   open ─► Remote ── write, truncate to n > 0 [stage: fetch] ──────────► Staged
//!   Remote ── write at the end (O_APPEND, >>) ─────────────────────────► Appending
//!   Appending ── write, truncate, read before the server's end [stage] ► Staged
//!   Remote ── write inside a big file the server patches in place
//!               [start_patching: nothing fetched] ─────────────────────► Patching
//!   Patching ── write the rule does not admit, truncate to another size,
//!               unlink [stage: fetch, the writes put back over it] ────► Staged
//!   Patching ── save: patch refused, server's copy changed
//!               [stage, then replaced whole] ──────────────────────────► Staged
//!   create, open O_TRUNC, truncate 0 ──────────────────────────────────► Filling
//!   Filling ── write not at the end ───────────────────────────────────► Staged
//!   Filling ── grows past STREAM_AFTER [start_stream] ─────────────────► Streaming
//!   Streaming ── write behind, read, truncate, flush with a gap
//!               [unstream: finish, fetch back] ────────────────────────► Staged
//!   Filling, Staged, Streaming, Appending, Patching ── flush, fsync, last close [save]
//!               ok ──► Remote, or SavedEmpty (empty, writers still open)
//!               failed ──► Remote (server has a file) or NotOnServer
//!   Streaming ── the upload fails during a write [stream_failed] ──────► Remote or NotOnServer
//!   NotOnServer, SavedEmpty ── write, truncate ────────────────────────► Filling (or Staged)
//!   any ── unlink, replaced by a rename [orphan] ──────────────────────► Orphaned
//! ```
//!
//! What `getattr` shows is kept beside the state in a short-held `View`, so
//! `ls` does not wait for an upload that holds the state lock; the state's
//! own facts (whose view is true, the local size) are copied into it by the
//! state guard each time the lock is released, so the two cannot disagree.
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};

use super::changes::Changes;
use super::inode::Ino;
use super::overlay::Overlay;
use super::spool::Spool;
use super::streamer::Streamer;
use crate::store::{FileKind, Metadata};

/// Where an open file's content is, and what must still happen to it (see
/// the module comment for the states and transitions).
pub enum FileState {
    Remote,
    NotOnServer,
    Filling(LocalCopy),
    Staged(LocalCopy),
    Streaming(Streaming),
    Appending(Appending),
    Patching(Overlay),
    SavedEmpty,
    Orphaned(Option<Spool>),
}

/// Bytes written at or after the end of the server's copy, which stays the
/// content before them: only they go to the server (APPE).
pub struct Appending {
    /// The server's size when appending began. At the upload the server
    /// must still have that many bytes, or the file is staged instead.
    pub base: u64,
    /// The file's bytes from `base` on.
    pub tail: Spool,
    pub pending: PendingAttrs,
}

/// Changed content held locally until its upload.
pub struct LocalCopy {
    pub spool: Spool,
    /// The server has a file at this path: the upload replaces it through a
    /// temporary name.
    pub replaces: bool,
    /// Attributes set while changed, applied once the upload is done.
    pub pending: PendingAttrs,
    /// What differs from the server's copy (a patch can send just that).
    pub changes: Changes,
}

/// An upload taking the writes as they come.
pub struct Streaming {
    pub upload: Streamer,
    /// The server has a file at this path, which the upload replaces (as
    /// `LocalCopy::replaces`; the upload itself goes to a temporary name
    /// either way, unless the server cannot rename).
    pub replaces: bool,
    pub pending: PendingAttrs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingAttrs {
    pub mode: Option<u32>,
    pub mtime: Option<SystemTime>,
}

/// Whose idea of the file's attributes is the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// The server's (through the cache).
    Server,
    /// The mount's: changes not uploaded yet, or a file only here.
    Local,
    /// Only the handles still see it.
    Orphaned,
}

impl FileState {
    pub fn truth(&self) -> Truth {
        match self {
            FileState::Remote | FileState::SavedEmpty => Truth::Server,
            FileState::NotOnServer
            | FileState::Filling(_)
            | FileState::Staged(_)
            | FileState::Streaming(_)
            | FileState::Appending(_)
            | FileState::Patching(_) => Truth::Local,
            FileState::Orphaned(_) => Truth::Orphaned,
        }
    }

    /// Whether there are changes that the server does not have yet.
    pub fn has_changes(&self) -> bool {
        matches!(
            self,
            FileState::Filling(_)
                | FileState::Staged(_)
                | FileState::Streaming(_)
                | FileState::Appending(_)
                | FileState::Patching(_)
        )
    }

    /// Whether the server has a file at this file's path that its content
    /// belongs to (so deleting the name, or replacing it, concerns the
    /// server). A new file's streaming upload is not counted: its partial
    /// upload goes with the stream.
    pub fn server_has_file(&self) -> bool {
        match self {
            FileState::Remote
            | FileState::SavedEmpty
            | FileState::Appending(_)
            | FileState::Patching(_) => true,
            FileState::Filling(c) | FileState::Staged(c) => c.replaces,
            FileState::Streaming(s) => s.replaces,
            FileState::NotOnServer | FileState::Orphaned(_) => false,
        }
    }

    /// The size of the content held here, when it is held here.
    pub fn local_len(&self) -> Option<u64> {
        match self {
            FileState::Filling(c) | FileState::Staged(c) => Some(c.spool.len()),
            FileState::Streaming(s) => Some(s.upload.size()),
            FileState::Appending(a) => Some(a.base + a.tail.len()),
            FileState::Patching(o) => Some(o.base.size),
            FileState::Orphaned(Some(spool)) => Some(spool.len()),
            FileState::SavedEmpty | FileState::NotOnServer => Some(0),
            FileState::Remote | FileState::Orphaned(None) => None,
        }
    }

    /// The local copy of the whole content, to read from or write into.
    pub fn spool(&self) -> Option<&Spool> {
        match self {
            FileState::Filling(c) | FileState::Staged(c) => Some(&c.spool),
            FileState::Orphaned(spool) => spool.as_ref(),
            _ => None,
        }
    }

    /// Where attributes set now wait for the upload, while there are changes.
    pub fn pending_mut(&mut self) -> Option<&mut PendingAttrs> {
        match self {
            FileState::Filling(c) | FileState::Staged(c) => Some(&mut c.pending),
            FileState::Streaming(s) => Some(&mut s.pending),
            FileState::Appending(a) => Some(&mut a.pending),
            FileState::Patching(o) => Some(&mut o.pending),
            _ => None,
        }
    }

    /// Takes the state out, leaving `Remote` until the caller puts the next
    /// one in.
    pub fn take(&mut self) -> FileState {
        std::mem::replace(self, FileState::Remote)
    }

    /// Filling → Staged: the content is no longer written in order, so it
    /// will be uploaded whole at flush instead of streamed.
    pub fn stop_filling(&mut self) {
        *self = match self.take() {
            FileState::Filling(copy) => FileState::Staged(copy),
            other => other,
        };
    }

    /// Unlinked or replaced: the handles keep what is held here, never to be
    /// uploaded. A streaming upload is handed back to be stopped. (An
    /// appended or patched file holds only part of it: callers stage it
    /// first.)
    pub fn orphan(&mut self) -> Option<Streaming> {
        match self.take() {
            FileState::Filling(c) | FileState::Staged(c) => {
                *self = FileState::Orphaned(Some(c.spool));
                None
            }
            FileState::Orphaned(spool) => {
                *self = FileState::Orphaned(spool);
                None
            }
            FileState::Streaming(s) => {
                *self = FileState::Orphaned(None);
                Some(s)
            }
            FileState::Remote
            | FileState::NotOnServer
            | FileState::SavedEmpty
            | FileState::Appending(_)
            | FileState::Patching(_) => {
                *self = FileState::Orphaned(None);
                None
            }
        }
    }
}

/// What the mount shows of an open file; see the module comment.
#[derive(Debug, Clone)]
pub struct View {
    pub size: u64,
    pub mtime: SystemTime,
    /// `mtime` is the server's to the second or better (MLSD, MDTM) or the
    /// mount's own, not a listing's rounded time: only then can it tell
    /// two versions of the file apart (the content cache needs that).
    pub mtime_exact: bool,
    pub mode: Option<u32>,
    pub truth: Truth,
}

impl View {
    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: FileKind::File,
            size: self.size,
            mtime: Some(self.mtime),
            mtime_exact: true,
            mode: self.mode,
            symlink_target: None,
        }
    }
}

pub struct OpenFile {
    pub ino: Ino,
    /// Held across store calls for this file (uploads, fetches), never
    /// while taking another file's lock; take it through `state()`.
    state: Mutex<FileState>,
    /// Short-held; taken after `state` when both are needed.
    view: Mutex<View>,
    /// Bumped whenever the server's content changes through us, so that
    /// handles drop downloads of the old content. An atomic and not part of
    /// the state: a reader checks it without waiting for an upload.
    version: AtomicU64,
}

impl OpenFile {
    /// A file on the server, opened with the server's metadata.
    pub fn opened(ino: Ino, meta: &Metadata, now: SystemTime) -> OpenFile {
        OpenFile::new(
            ino,
            FileState::Remote,
            View {
                size: meta.size,
                mtime: meta.mtime.unwrap_or(now),
                mtime_exact: meta.mtime.is_some() && meta.mtime_exact,
                mode: meta.mode,
                truth: Truth::Server,
            },
        )
    }

    /// A file created here, starting empty.
    pub fn created(ino: Ino, spool: Spool, mode: u32, now: SystemTime) -> OpenFile {
        let pending = PendingAttrs {
            // The server's default mode applies unless it must be executable.
            mode: (mode & 0o111 != 0).then_some(mode),
            mtime: None,
        };
        let state = FileState::Filling(LocalCopy {
            spool,
            replaces: false,
            pending,
            changes: Changes::Whole,
        });
        let view = View {
            size: 0,
            mtime: now,
            mtime_exact: true,
            mode: Some(mode),
            truth: state.truth(),
        };
        OpenFile::new(ino, state, view)
    }

    fn new(ino: Ino, state: FileState, view: View) -> OpenFile {
        OpenFile {
            ino,
            state: Mutex::new(state),
            view: Mutex::new(view),
            version: AtomicU64::new(0),
        }
    }

    /// The state, locked; the view follows it when the guard is dropped.
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard {
            state: self.state.lock(),
            view: &self.view,
        }
    }

    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock()
    }

    /// The local metadata when it, not the server's, is the truth.
    pub fn local_metadata(&self) -> Option<Metadata> {
        let view = self.view.lock();
        (view.truth == Truth::Local).then(|| view.metadata())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// The server's content changed (or the local one was dropped).
    pub fn bump_version(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

/// The locked state of a file. On release it brings the view up to date:
/// whose attributes are true and, for content held here, its size.
pub struct StateGuard<'a> {
    state: MutexGuard<'a, FileState>,
    view: &'a Mutex<View>,
}

impl StateGuard<'_> {
    /// The view, while the state is held (the lock order is state, then view).
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock()
    }
}

impl Deref for StateGuard<'_> {
    type Target = FileState;
    fn deref(&self) -> &FileState {
        &self.state
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut FileState {
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let mut view = self.view.lock();
        view.truth = self.state.truth();
        if let Some(len) = self.state.local_len() {
            view.size = len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spool() -> Spool {
        Spool::new(
            1024,
            std::env::temp_dir().join("ftpsfs-open-file-test"),
            Arc::default(),
        )
    }

    #[test]
    fn the_view_follows_the_state() {
        let now = SystemTime::now();
        let file = OpenFile::created(2, spool(), 0o644, now);
        assert!(file.local_metadata().is_some(), "a new file is local");
        {
            let mut state = file.state();
            if let FileState::Filling(c) = &mut *state {
                c.spool.write_at(0, b"hello").unwrap();
            }
        }
        assert_eq!(file.view().size, 5, "the local size is shown");
        *file.state() = FileState::Remote;
        assert_eq!(file.local_metadata(), None, "uploaded: the server's");
        assert_eq!(file.state().orphan().map(|_| ()), None);
        assert_eq!(file.view().truth, Truth::Orphaned);
        assert_eq!(file.local_metadata(), None);
    }

    #[test]
    fn orphaning_keeps_the_local_copy() {
        let mut state = FileState::Staged(LocalCopy {
            spool: spool(),
            replaces: true,
            pending: PendingAttrs::default(),
            changes: Changes::Whole,
        });
        assert!(state.has_changes());
        assert!(state.orphan().is_none());
        assert!(matches!(state, FileState::Orphaned(Some(_))));
        assert!(!state.has_changes());
        assert_eq!(state.local_len(), Some(0));
    }
}
