//! Directory listings: the entry type shared by the MLSD and LIST parsers.
//!
//! Parsers are pure functions over the bytes the server sent; they never see a
//! socket, so they are tested with captured output of real servers.
use std::time::SystemTime;

pub mod list;
pub mod mlsd;

/// What kind of object a listing line describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link; the target when the server told us (LIST `a -> b`).
    Symlink {
        target: Option<Vec<u8>>,
    },
    /// Devices, sockets and anything else we cannot map to a file or directory.
    Other,
}

/// One object of a directory listing. Names are bytes: servers send whatever
/// their filesystem holds, and the mount hands those bytes on unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
    pub size: Option<u64>,
    pub modified: Option<SystemTime>,
    /// True when `modified` is exact to the second (MLSD `modify`); false when
    /// it came from a LIST line, which gives minutes or only days.
    pub modified_exact: bool,
    /// Unix permission bits (0o7777) when known.
    pub mode: Option<u32>,
}
