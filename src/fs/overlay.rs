//! The writes into a big file that is patched without being fetched first
//! (`FileState::Patching`): a 4 KiB `dd conv=notrunc` into the middle of a
//! 1 GiB file should cost about what writing a new 4 KiB file costs, not a
//! download of the whole file.
//!
//! Only the written bytes are held, in a spool at their own offsets (a
//! sparse file on disk once past the memory limit, so the disk holds only
//! what was written), with the exact ranges written beside it. Every other
//! byte is the server's: reads take those from the server and the written
//! ones from here (`pieces`). At a save the ranges go with REST + STOR
//! (`patch`). A write this rule does not admit (`admits`) has the file
//! fetched and the writes put back over it (`stage`): it is then a staged
//! file as any, and its save decides between a patch and a whole upload.
//!
//! Unlike a staged copy's `changes`, ranges here are merged only when they
//! touch: the bytes between two ranges are not held here, so they cannot
//! be sent along.
use std::io;
use std::ops::Range;
use std::time::SystemTime;

use super::changes::{ServerCopy, MAX_RANGES};
use super::open_file::PendingAttrs;
use super::patch::{sent, PATCH_MAX_SHARE};
use super::spool::Spool;

/// See the module comment.
pub struct Overlay {
    /// The server's copy the writes go over; the file's size, which a
    /// write here never changes. At the save the server must still have
    /// it, or the file is fetched and replaced whole.
    pub base: ServerCopy,
    /// The server's time as shown when the writes began, and whether it is
    /// exact: the content cache keys the server's blocks by it, so the
    /// bytes read from the server are found there as before.
    pub server_mtime: SystemTime,
    pub server_mtime_exact: bool,
    /// The written bytes, at their offsets in the file.
    pub spool: Spool,
    /// Sorted, disjoint, never touching.
    pub written: Vec<Range<u64>>,
    pub pending: PendingAttrs,
}

impl Overlay {
    /// Whether a write of `n` bytes at `offset` can be held here; `Err`
    /// says why the file must be fetched instead.
    pub fn admits(&self, offset: u64, n: u64) -> Result<(), &'static str> {
        admits(self.base.size, &self.written, offset, n)
    }

    /// Holds a write that `admits`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.spool.write_at(offset, data)?;
        self.written = with(&self.written, offset..offset + data.len() as u64);
        Ok(())
    }

    /// The written ranges inside `range`, cut to it, in order.
    pub fn pieces(&self, range: Range<u64>) -> Vec<Range<u64>> {
        self.written
            .iter()
            .map(|r| r.start.max(range.start)..r.end.min(range.end))
            .filter(|r| r.start < r.end)
            .collect()
    }
}

/// The rule for holding a write of `n` bytes at `offset` over a server's
/// file of `size` bytes that has `written` ranges held already (see the
/// module comment of `patch` for why each limit is there).
pub fn admits(size: u64, written: &[Range<u64>], offset: u64, n: u64) -> Result<(), &'static str> {
    if n == 0 {
        return Ok(());
    }
    if offset == 0 {
        // REST 0 + STOR is a plain STOR, which cuts the file.
        return Err("its first byte is written");
    }
    if offset.saturating_add(n) > size {
        return Err("the write grows the file");
    }
    let after = with(written, offset..offset + n);
    if after.len() > MAX_RANGES {
        return Err("more than 16 separate ranges are written");
    }
    if sent(&after) > size / PATCH_MAX_SHARE {
        return Err("more than an eighth of the file is written");
    }
    Ok(())
}

/// `ranges` with `new` added, merged with those it overlaps or touches.
fn with(ranges: &[Range<u64>], new: Range<u64>) -> Vec<Range<u64>> {
    let mut merged = new;
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len() + 1);
    for r in ranges {
        if r.end < merged.start || merged.end < r.start {
            out.push(r.clone());
        } else {
            merged = merged.start.min(r.start)..merged.end.max(r.end);
        }
    }
    let at = out.partition_point(|r| r.start < merged.start);
    out.insert(at, merged);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn ranges_merge_only_when_they_touch() {
        let r = with(&[], 10..20);
        let r = with(&r, 30..40);
        assert_eq!(r, vec![10..20, 30..40]);
        let r = with(&r, 20..21);
        assert_eq!(r, vec![10..21, 30..40], "touching merges");
        let r = with(&r, 5..6);
        assert_eq!(r, vec![5..6, 10..21, 30..40], "kept sorted");
        let r = with(&r, 6..35);
        assert_eq!(r, vec![5..40], "one over all of them");
    }

    #[test]
    fn the_rule_keeps_to_the_patch_limits() {
        let size = 8 * MIB;
        assert_eq!(admits(size, &[], MIB, 4096), Ok(()));
        assert_eq!(admits(size, &[], 0, 1), Err("its first byte is written"));
        assert_eq!(admits(size, &[], 1, 0), Ok(()), "nothing written");
        assert_eq!(admits(size, &[], size - 1, 1), Ok(()), "the last byte");
        assert_eq!(
            admits(size, &[], size - 1, 2),
            Err("the write grows the file")
        );
        assert_eq!(
            admits(size, &[], 1, size / 8 + 1),
            Err("more than an eighth of the file is written")
        );
        let eighth = with(&[], 1..size / 8);
        assert_eq!(admits(size, &eighth, size / 8, 1), Ok(()));
        let sixteen: Vec<_> = (1..=16).map(|i| i * 1000..i * 1000 + 1).collect();
        assert_eq!(admits(size, &sixteen, 10_000, 1), Ok(()), "an old range");
        assert_eq!(
            admits(size, &sixteen, 50_000, 1),
            Err("more than 16 separate ranges are written")
        );
    }
}
