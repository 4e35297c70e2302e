//! Store paths: bytes relative to the mounted directory, `b""` for its root,
//! `b"dir/file"` below it, never a leading or trailing slash.
//!
//! Each fact about them (how to join, split, test for "below", and show one
//! to a user) is written once here. `StorePath` owns a path; the free
//! functions serve code that holds only the `&[u8]` that `RemoteStore`
//! methods take, and the type's methods use them too.
use std::fmt;
use std::ops::Deref;

#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub struct StorePath(Vec<u8>);

impl StorePath {
    /// The mounted directory itself.
    pub fn root() -> StorePath {
        StorePath(Vec::new())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/name`.
    pub fn join(&self, name: &[u8]) -> StorePath {
        join(&self.0, name)
    }

    /// The parent directory and the last component (`(b"", b"")` for the root).
    pub fn split(&self) -> (&[u8], &[u8]) {
        split(&self.0)
    }

    /// The parent directory (the root for a name in the root, and for the root).
    pub fn parent(&self) -> &[u8] {
        self.split().0
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &[u8] {
        self.split().1
    }

    /// Whether this path is strictly below `dir`.
    pub fn is_under(&self, dir: &[u8]) -> bool {
        is_under(&self.0, dir)
    }
}

impl From<Vec<u8>> for StorePath {
    fn from(path: Vec<u8>) -> StorePath {
        StorePath(path)
    }
}

impl From<&[u8]> for StorePath {
    fn from(path: &[u8]) -> StorePath {
        StorePath(path.to_vec())
    }
}

impl From<StorePath> for Vec<u8> {
    fn from(path: StorePath) -> Vec<u8> {
        path.0
    }
}

impl Deref for StorePath {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for StorePath {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        shown(&self.0).fmt(f)
    }
}

/// `parent/name` (`name` itself when `parent` is the root).
pub fn join(parent: &[u8], name: &[u8]) -> StorePath {
    if parent.is_empty() {
        return StorePath(name.to_vec());
    }
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    path.push(b'/');
    path.extend_from_slice(name);
    StorePath(path)
}

/// The parent directory and the last component of a path.
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Whether `path` is strictly below `dir` (`a/bc` is not below `a/b`).
pub fn is_under(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.starts_with(dir) && path.get(dir.len()) == Some(&b'/')
}

/// A path as messages show it: `/` for the root, the bytes as UTF-8
/// otherwise (invalid sequences as U+FFFD).
pub fn shown(path: &[u8]) -> Shown<'_> {
    Shown(path)
}

pub struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.pad("/")
        } else {
            f.pad(&String::from_utf8_lossy(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_at_the_root_and_below() {
        assert_eq!(StorePath::root().join(b"a").as_bytes(), b"a");
        assert_eq!(
            StorePath::from(b"a/b".to_vec()).join(b"c d").as_bytes(),
            b"a/b/c d"
        );
        assert_eq!(join(b"", b"x"), StorePath::from(b"x".to_vec()));
    }

    #[test]
    fn split_into_parent_and_name() {
        let path = StorePath::from(b"a/b/c".to_vec());
        assert_eq!(path.split(), (&b"a/b"[..], &b"c"[..]));
        assert_eq!((path.parent(), path.name()), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(StorePath::root().split(), (&b""[..], &b""[..]));
    }

    #[test]
    fn under_is_strictly_below() {
        let path = StorePath::from(b"a/b/c".to_vec());
        assert!(path.is_under(b"a/b") && path.is_under(b"a") && path.is_under(b""));
        assert!(!path.is_under(b"a/b/c") && !path.is_under(b"a/b/c/d"));
        assert!(!is_under(b"a/bc", b"a/b") && is_under(b"a/b/c", b"a/b"));
        assert!(!StorePath::root().is_under(b""));
        assert!(StorePath::root().is_root() && !path.is_root());
    }

    #[test]
    fn display() {
        assert_eq!(StorePath::root().to_string(), "/");
        assert_eq!(StorePath::from(b"d/f".to_vec()).to_string(), "d/f");
        assert_eq!(shown(b"d/\xff").to_string(), "d/\u{fffd}");
        assert_eq!(shown(b"").to_string(), "/");
    }
}
