//! The inode table: which inode number stands for which path, and how many
//! lookups the kernel holds on each.
//!
//! A node stores its parent's inode and its own name, not a whole path, so
//! renaming a directory moves everything below it at once, and an open
//! file's path is always computed from where it is now. A name that is
//! unlinked or replaced leaves its node "detached": the number stays valid
//! for the kernel until it forgets it, but no path leads to it.
use std::collections::HashMap;

use crate::store::{FileKind, StorePath};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// The inode number given to directory entries the kernel has not looked up
/// (as libfuse does): the kernel asks `lookup` for the real one, and a number
/// handed out here would never be forgotten.
pub const UNKNOWN_INO: Ino = 0xffff_ffff;

struct Node {
    parent: Ino,
    name: Vec<u8>,
    kind: FileKind,
    lookups: u64,
    /// Held by open files (so the node survives a forget while open).
    pins: u64,
    children: usize,
    detached: bool,
}

pub struct InodeTable {
    nodes: HashMap<Ino, Node>,
    by_name: HashMap<(Ino, Vec<u8>), Ino>,
    next: Ino,
}

impl Default for InodeTable {
    fn default() -> Self {
        InodeTable::new()
    }
}

impl InodeTable {
    pub fn new() -> InodeTable {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: Vec::new(),
                kind: FileKind::Dir,
                lookups: 1,
                pins: 1,
                children: 0,
                detached: false,
            },
        );
        InodeTable {
            nodes,
            by_name: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }

    /// The store path of an inode, or None when it is unknown or detached.
    pub fn path(&self, ino: Ino) -> Option<StorePath> {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let node = self.nodes.get(&cur)?;
            if node.detached {
                return None;
            }
            names.push(&node.name);
            cur = node.parent;
        }
        let mut path = StorePath::root();
        for name in names.iter().rev() {
            path = path.join(name);
        }
        Some(path)
    }

    /// The directory and name of an attached inode.
    pub fn location(&self, ino: Ino) -> Option<(Ino, Vec<u8>)> {
        self.nodes
            .get(&ino)
            .filter(|n| !n.detached && ino != ROOT_INO)
            .map(|n| (n.parent, n.name.clone()))
    }

    pub fn kind(&self, ino: Ino) -> Option<FileKind> {
        self.nodes.get(&ino).map(|n| n.kind)
    }

    pub fn find(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        self.by_name.get(&(parent, name.to_vec())).copied()
    }

    /// The inode a path leads to, if every name on the way is known.
    pub fn find_path(&self, path: &[u8]) -> Option<Ino> {
        path.split(|&b| b == b'/')
            .filter(|name| !name.is_empty())
            .try_fold(ROOT_INO, |dir, name| self.find(dir, name))
    }

    /// `path`'s inode and every attached inode below it (for a refresh,
    /// which tells the kernel to forget what it holds of them).
    pub fn attached_under(&self, path: &[u8]) -> Vec<Ino> {
        let Some(top) = self.find_path(path) else {
            return Vec::new();
        };
        // One pass over the names makes the walk linear in the table's size.
        let mut children: HashMap<Ino, Vec<Ino>> = HashMap::new();
        for (&(parent, _), &ino) in &self.by_name {
            children.entry(parent).or_default().push(ino);
        }
        let mut found = vec![top];
        let mut next = 0;
        while let Some(&dir) = found.get(next) {
            next += 1;
            if let Some(below) = children.get(&dir) {
                found.extend(below.iter().filter(|&&ino| ino != ROOT_INO));
            }
        }
        found
    }

    #[cfg(test)]
    fn contains(&self, ino: Ino) -> bool {
        self.nodes.contains_key(&ino)
    }

    /// The inode for `parent/name`, created if new, with one more lookup.
    /// A name whose kind changed on the server gets a fresh inode.
    pub fn lookup(&mut self, parent: Ino, name: &[u8], kind: FileKind) -> Ino {
        let ino = self.entry(parent, name, kind);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// The inode for `parent/name`, created if new, without a lookup count.
    fn entry(&mut self, parent: Ino, name: &[u8], kind: FileKind) -> Ino {
        if let Some(ino) = self.find(parent, name) {
            if self.kind(ino) == Some(kind) {
                return ino;
            }
            self.detach(parent, name);
        }
        let ino = self.next;
        self.next += 1;
        if self.next == UNKNOWN_INO {
            self.next += 1;
        }
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_vec(),
                kind,
                lookups: 0,
                pins: 0,
                children: 0,
                detached: false,
            },
        );
        self.by_name.insert((parent, name.to_vec()), ino);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    pub fn forget(&mut self, ino: Ino, nlookup: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(nlookup);
        }
        self.collect(ino);
    }

    /// Keeps a node alive while a file is open on it.
    pub fn pin(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.pins += 1;
        }
    }

    pub fn unpin(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.pins = node.pins.saturating_sub(1);
        }
        self.collect(ino);
    }

    /// Removes the name `parent/name`; its node lives on, detached, until
    /// the kernel forgets it.
    pub fn detach(&mut self, parent: Ino, name: &[u8]) {
        let Some(ino) = self.by_name.remove(&(parent, name.to_vec())) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.detached = true;
        }
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children = p.children.saturating_sub(1);
        }
        self.collect(ino);
        self.collect(parent);
    }

    /// Moves `parent/name` to `new_parent/new_name`, detaching what was there.
    pub fn rename(&mut self, parent: Ino, name: &[u8], new_parent: Ino, new_name: &[u8]) {
        let Some(ino) = self.by_name.remove(&(parent, name.to_vec())) else {
            return;
        };
        self.detach(new_parent, new_name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.to_vec();
        }
        self.by_name.insert((new_parent, new_name.to_vec()), ino);
        if parent != new_parent {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children = p.children.saturating_sub(1);
            }
            if let Some(p) = self.nodes.get_mut(&new_parent) {
                p.children += 1;
            }
            self.collect(parent);
        }
    }

    /// Drops a node nobody holds any more, then its parent if that was the
    /// last thing keeping it.
    fn collect(&mut self, mut ino: Ino) {
        while ino != ROOT_INO {
            let Some(node) = self.nodes.get(&ino) else {
                return;
            };
            if node.lookups > 0 || node.pins > 0 || node.children > 0 {
                return;
            }
            let parent = node.parent;
            let detached = node.detached;
            let name = node.name.clone();
            self.nodes.remove(&ino);
            if detached {
                return;
            }
            self.by_name.remove(&(parent, name));
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children = p.children.saturating_sub(1);
            }
            ino = parent;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_of_parents() {
        let mut t = InodeTable::new();
        let a = t.lookup(ROOT_INO, b"a", FileKind::Dir);
        let f = t.lookup(a, b"f", FileKind::File);
        assert_eq!(t.path(f).as_deref(), Some(&b"a/f"[..]));
        let b = t.lookup(ROOT_INO, b"b", FileKind::Dir);
        t.rename(ROOT_INO, b"a", b, b"c");
        assert_eq!(t.path(f).as_deref(), Some(&b"b/c/f"[..]));
        assert_eq!(t.find(b, b"c"), Some(a));
        assert_eq!(t.find(ROOT_INO, b"a"), None);
    }

    #[test]
    fn a_path_finds_its_inode_and_everything_below() {
        let mut t = InodeTable::new();
        let a = t.lookup(ROOT_INO, b"a", FileKind::Dir);
        let sub = t.lookup(a, b"sub", FileKind::Dir);
        let f = t.lookup(sub, b"f", FileKind::File);
        let other = t.lookup(ROOT_INO, b"ab", FileKind::File);
        assert_eq!(t.find_path(b"a/sub/f"), Some(f));
        assert_eq!(t.find_path(b""), Some(ROOT_INO));
        assert_eq!(t.find_path(b"a/nope"), None);
        let mut under = t.attached_under(b"a");
        under.sort();
        assert_eq!(under, vec![a, sub, f]);
        assert_eq!(t.attached_under(b"a/sub/f"), vec![f]);
        assert_eq!(t.attached_under(b"").len(), 5);
        assert!(!t.attached_under(b"a").contains(&other));
    }

    #[test]
    fn forget_drops_nodes_and_parents_without_lookups() {
        let mut t = InodeTable::new();
        let a = t.lookup(ROOT_INO, b"a", FileKind::Dir);
        let f = t.lookup(a, b"f", FileKind::File);
        t.forget(a, 1);
        assert!(t.contains(a), "a child keeps its parent");
        assert_eq!(t.path(f).as_deref(), Some(&b"a/f"[..]));
        t.forget(f, 1);
        assert!(!t.contains(f));
        assert!(!t.contains(a));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn lookups_are_counted() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT_INO, b"f", FileKind::File);
        assert_eq!(t.lookup(ROOT_INO, b"f", FileKind::File), f);
        t.forget(f, 1);
        assert!(t.contains(f));
        t.forget(f, 1);
        assert!(!t.contains(f));
    }

    #[test]
    fn rename_over_detaches_the_target() {
        let mut t = InodeTable::new();
        let x = t.lookup(ROOT_INO, b"x", FileKind::File);
        let y = t.lookup(ROOT_INO, b"y", FileKind::File);
        t.rename(ROOT_INO, b"x", ROOT_INO, b"y");
        assert_eq!(t.find(ROOT_INO, b"y"), Some(x));
        assert_eq!(t.path(y), None);
        assert!(t.contains(y), "the kernel still holds it");
        t.forget(y, 1);
        assert!(!t.contains(y));
        assert_eq!(t.path(x).as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn pinned_nodes_survive_forget() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT_INO, b"f", FileKind::File);
        t.pin(f);
        t.forget(f, 1);
        assert_eq!(t.path(f).as_deref(), Some(&b"f"[..]));
        t.unpin(f);
        assert!(!t.contains(f));
    }

    #[test]
    fn a_changed_kind_gets_a_new_inode() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT_INO, b"n", FileKind::File);
        let d = t.lookup(ROOT_INO, b"n", FileKind::Dir);
        assert_ne!(f, d);
        assert_eq!(t.path(f), None);
        assert_eq!(t.kind(d), Some(FileKind::Dir));
    }
}
