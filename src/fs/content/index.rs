//! Which blocks the cache holds, how big they are, and which were used
//! least recently: the bookkeeping that keeps the cache under its limit.
use std::collections::HashMap;

use lru::LruCache;

use super::block_file::BlockId;

pub struct Index {
    blocks: LruCache<BlockId, u64>,
    /// The versions of each path that have blocks (usually one), with how
    /// many blocks each has.
    versions: HashMap<u64, HashMap<u64, usize>>,
    bytes: u64,
    limit: u64,
}

impl Index {
    pub fn new(limit: u64) -> Index {
        Index {
            blocks: LruCache::unbounded(),
            versions: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the block is held, marking it used.
    pub fn touch(&mut self, id: &BlockId) -> bool {
        self.blocks.get(id).is_some()
    }

    /// Records a block of `len` bytes as the most recently used; returns
    /// the blocks to delete to stay within the limit (never `id` itself).
    pub fn insert(&mut self, id: BlockId, len: u64) -> Vec<BlockId> {
        if let Some(old) = self.blocks.put(id, len) {
            self.bytes -= old;
        } else {
            *self
                .versions
                .entry(id.path)
                .or_default()
                .entry(id.version)
                .or_default() += 1;
        }
        self.bytes += len;
        let mut evicted = Vec::new();
        while self.bytes > self.limit {
            match self.blocks.peek_lru() {
                Some((&oldest, _)) if oldest != id => {
                    self.remove(&oldest);
                    evicted.push(oldest);
                }
                _ => break,
            }
        }
        evicted
    }

    pub fn remove(&mut self, id: &BlockId) -> bool {
        let Some(len) = self.blocks.pop(id) else {
            return false;
        };
        self.bytes -= len;
        if let Some(versions) = self.versions.get_mut(&id.path) {
            if let Some(count) = versions.get_mut(&id.version) {
                *count -= 1;
                if *count == 0 {
                    versions.remove(&id.version);
                }
            }
            if versions.is_empty() {
                self.versions.remove(&id.path);
            }
        }
        true
    }

    /// Every block of `path` not of version `keep` (all of them for None).
    pub fn blocks_of_path_except(&self, path: u64, keep: Option<u64>) -> Vec<BlockId> {
        let stale: Vec<u64> = self
            .versions
            .get(&path)
            .map(|v| v.keys().copied().filter(|&v| Some(v) != keep).collect())
            .unwrap_or_default();
        if stale.is_empty() {
            return Vec::new();
        }
        self.blocks
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| id.path == path && stale.contains(&id.version))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: u64, version: u64, index: u64) -> BlockId {
        BlockId {
            path,
            version,
            index,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_limit_holds() {
        let mut index = Index::new(300);
        assert!(index.insert(id(1, 1, 0), 100).is_empty());
        assert!(index.insert(id(1, 1, 1), 100).is_empty());
        assert!(index.insert(id(2, 1, 0), 100).is_empty());
        assert!(index.touch(&id(1, 1, 0)));
        assert_eq!(index.insert(id(3, 1, 0), 100), vec![id(1, 1, 1)]);
        assert_eq!(index.bytes(), 300);
        assert_eq!(
            index.insert(id(4, 1, 0), 250),
            vec![id(2, 1, 0), id(1, 1, 0), id(3, 1, 0)]
        );
        assert_eq!((index.bytes(), index.len()), (250, 1));
        // A block bigger than the limit stays alone, for as long as it is
        // the newest.
        assert_eq!(index.insert(id(5, 1, 0), 400), vec![id(4, 1, 0)]);
        assert_eq!(index.bytes(), 400);
    }

    #[test]
    fn a_new_version_finds_the_old_ones_blocks() {
        let mut index = Index::new(1000);
        index.insert(id(1, 1, 0), 10);
        index.insert(id(1, 1, 1), 10);
        index.insert(id(1, 2, 0), 10);
        index.insert(id(2, 1, 0), 10);
        let mut stale = index.blocks_of_path_except(1, Some(2));
        stale.sort_by_key(|b| b.index);
        assert_eq!(stale, vec![id(1, 1, 0), id(1, 1, 1)]);
        for b in &stale {
            assert!(index.remove(b));
        }
        assert!(index.blocks_of_path_except(1, Some(2)).is_empty());
        assert_eq!(index.blocks_of_path_except(1, None), vec![id(1, 2, 0)]);
        assert_eq!(index.bytes(), 20);
    }
}
