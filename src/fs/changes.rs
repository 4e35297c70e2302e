//! Which bytes of a staged file differ from the server's copy it was
//! fetched from, so that a small change inside a big file can be sent as
//! that change alone (see `patch`), not as the whole file.
//!
//! A local copy is either a copy of the server's file changed in a few
//! ranges since it was fetched (`Changes::Since`), or content the server
//! has never seen as such (`Changes::Whole`): a new or emptied file, one
//! fetched back from a partial upload, or one changed in a way a patch
//! cannot express. The transitions only ever go towards `Whole`:
//!
//! ```text
//!   stage [fetched] ──► Since ── write [wrote], grow [resized] ──► Since
//!   Since ── shrink below the fetched size, more than MAX_RANGES ranges ──► Whole
//! ```
//!
//! Ranges closer than `MERGE_GAP` are merged: the bytes between them are
//! the server's own (the copy was fetched from it), so sending them again
//! is harmless, and one transfer costs fewer round trips than two.
use std::ops::Range;
use std::time::SystemTime;

/// More separate ranges than this, and the file is replaced whole: each
/// range costs a data connection (a few round trips), a whole upload one.
pub const MAX_RANGES: usize = 16;
/// Ranges this close are merged into one.
pub const MERGE_GAP: u64 = 64 * 1024;

/// What the server had when the copy was fetched: at save, a patch is sent
/// only if it still has that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCopy {
    pub size: u64,
    /// Where the server tells exact times (MLST); `None` where it does not,
    /// and then only the size is compared.
    pub mtime: Option<SystemTime>,
}

/// See the module comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    Since {
        base: ServerCopy,
        /// Sorted, disjoint, each more than `MERGE_GAP` from the next.
        ranges: Vec<Range<u64>>,
    },
    Whole,
}

impl Changes {
    /// Just fetched from a server that had `base`: nothing changed yet.
    pub fn fetched(base: ServerCopy) -> Changes {
        Changes::Since {
            base,
            ranges: Vec::new(),
        }
    }

    /// `n` bytes were written at `offset` into a copy `len` bytes long: a
    /// write past the end also changed the bytes between (zeros now).
    pub fn wrote(&mut self, len: u64, offset: u64, n: u64) {
        if n > 0 {
            self.add(offset.min(len)..offset + n);
        }
    }

    /// The copy was cut or extended from `from` bytes to `to`. A grow adds
    /// zeros (a change); a shrink below the server's size cannot be sent as
    /// a patch (REST + STOR never shortens a file), so the copy goes whole.
    pub fn resized(&mut self, from: u64, to: u64) {
        let Changes::Since { base, ranges } = self else {
            return;
        };
        if to < base.size {
            *self = Changes::Whole;
        } else if to < from {
            ranges.retain_mut(|r| {
                r.end = r.end.min(to);
                r.start < r.end
            });
        } else if to > from {
            self.add(from..to);
        }
    }

    /// The server's copy at the fetch and the changed ranges, unless the
    /// copy must go whole.
    pub fn since(&self) -> Option<(ServerCopy, &[Range<u64>])> {
        match self {
            Changes::Since { base, ranges } => Some((*base, ranges)),
            Changes::Whole => None,
        }
    }

    fn add(&mut self, new: Range<u64>) {
        let Changes::Since { ranges, .. } = self else {
            return;
        };
        let mut merged = new;
        ranges.retain(|r| {
            let near = r.start <= merged.end.saturating_add(MERGE_GAP)
                && merged.start <= r.end.saturating_add(MERGE_GAP);
            if near {
                merged = merged.start.min(r.start)..merged.end.max(r.end);
            }
            !near
        });
        let at = ranges.partition_point(|r| r.start < merged.start);
        ranges.insert(at, merged);
        if ranges.len() > MAX_RANGES {
            *self = Changes::Whole;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn fetched(size: u64) -> Changes {
        Changes::fetched(ServerCopy { size, mtime: None })
    }

    fn ranges(c: &Changes) -> Vec<Range<u64>> {
        c.since().map(|(_, r)| r.to_vec()).unwrap_or_default()
    }

    #[test]
    fn writes_merge_when_they_touch_or_come_close() {
        let mut c = fetched(10 * MIB);
        c.wrote(10 * MIB, 4096, 4096);
        c.wrote(10 * MIB, 0, 4096);
        assert_eq!(ranges(&c), vec![0..8192]);
        c.wrote(10 * MIB, 8192 + MERGE_GAP, 1);
        assert_eq!(
            ranges(&c),
            vec![0..8193 + MERGE_GAP],
            "a gap of MERGE_GAP merges"
        );
        c.wrote(10 * MIB, 5 * MIB, 10);
        c.wrote(10 * MIB, 3 * MIB, 10);
        assert_eq!(
            ranges(&c),
            vec![
                0..8193 + MERGE_GAP,
                3 * MIB..3 * MIB + 10,
                5 * MIB..5 * MIB + 10
            ],
            "kept sorted"
        );
        c.wrote(10 * MIB, 0, 6 * MIB);
        assert_eq!(ranges(&c), vec![0..6 * MIB], "one write over all of them");
    }

    #[test]
    fn too_many_ranges_go_whole() {
        let mut c = fetched(100 * MIB);
        for i in 0..MAX_RANGES as u64 {
            c.wrote(100 * MIB, i * MIB, 1);
        }
        assert_eq!(ranges(&c).len(), MAX_RANGES);
        c.wrote(100 * MIB, 50 * MIB, 1);
        assert_eq!(c, Changes::Whole);
        c.wrote(100 * MIB, 0, 1);
        assert_eq!(c, Changes::Whole, "whole stays whole");
    }

    #[test]
    fn a_write_past_the_end_changes_the_gap_too() {
        let mut c = fetched(MIB);
        c.wrote(MIB, 2 * MIB, 10);
        assert_eq!(ranges(&c), vec![MIB..2 * MIB + 10]);
    }

    #[test]
    fn growing_is_a_change_and_shrinking_below_the_server_size_is_whole() {
        let mut c = fetched(MIB);
        c.resized(MIB, 2 * MIB);
        assert_eq!(ranges(&c), vec![MIB..2 * MIB]);
        c.resized(2 * MIB, MIB + 5);
        assert_eq!(ranges(&c), vec![MIB..MIB + 5], "cut back, not below");
        c.resized(MIB + 5, MIB);
        assert_eq!(
            ranges(&c),
            Vec::<Range<u64>>::new(),
            "back to the size fetched"
        );
        assert!(c.since().is_some());
        c.resized(MIB, MIB - 1);
        assert_eq!(c, Changes::Whole);
        c.resized(MIB - 1, 2 * MIB);
        assert_eq!(c, Changes::Whole, "a shrink then a grow stays whole");
    }
}
