//! One cached block on disk: a header that says which block of which
//! version of a file it is, a SHA-256 for each 16 KiB chunk of the data,
//! then the data. A read takes only the chunks it needs and checks each, so
//! a 4 KiB random read costs one 16 KiB read and digest, not the block's
//! megabyte. A block that does not decode, or a chunk that does not match
//! its digest (a torn write after a power cut, a disk error, a hand edit),
//! is refused, never served.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};

const MAGIC: &[u8; 8] = b"FTPSFSB2";
/// Bytes covered by one digest.
pub const CHUNK: usize = 16 * 1024;
/// The most chunks a block has (see `super::BLOCK_SIZE`).
pub const MAX_CHUNKS: usize = super::BLOCK_SIZE as usize / CHUNK;
/// magic, version, block index, data length.
const FIXED: usize = 8 + 8 + 8 + 4;
/// The header's size, the same for every block, so the data starts at a
/// known offset.
pub const HEADER_LEN: usize = FIXED + MAX_CHUNKS * SHA256_OUTPUT_LEN;

/// Which block of which version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// Hash of the file's path on the server.
    pub path: u64,
    /// Hash of the file's size and modification time: a new version of the
    /// file has new ids, so its old blocks are never read for it.
    pub version: u64,
    pub index: u64,
}

/// The block file for `data` (at most `BLOCK_SIZE` bytes).
pub fn encode(id: &BlockId, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&id.version.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    for chunk in data.chunks(CHUNK) {
        out.extend_from_slice(digest(&SHA256, chunk).as_ref());
    }
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(data);
    out
}

/// A block file opened and its header checked, kept open for the reads
/// that follow (see `ContentCache`): a read then costs one `pread` and the
/// digests of the chunks it touches.
pub struct OpenBlock {
    file: File,
    len: usize,
    digests: Vec<[u8; SHA256_OUTPUT_LEN]>,
}

impl OpenBlock {
    /// Reads and checks the header of `file`, the block `id`.
    pub fn open(file: File, id: &BlockId) -> io::Result<OpenBlock> {
        let mut header = vec![0u8; HEADER_LEN];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| damaged("shorter than its header"))?;
        if &header[..8] != MAGIC {
            return Err(damaged("not a block file"));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if word(8) != id.version || word(16) != id.index {
            return Err(damaged("another block's file"));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[24..28]);
        let len = u32::from_le_bytes(len) as usize;
        if len > super::BLOCK_SIZE as usize {
            return Err(damaged("longer than a block"));
        }
        // A block file of another length than its header says was cut short
        // (a power cut) or was not written by us.
        if file.metadata()?.len() != (HEADER_LEN + len) as u64 {
            return Err(damaged("length does not match"));
        }
        let digests = (0..len.div_ceil(CHUNK))
            .map(|i| {
                let at = FIXED + i * SHA256_OUTPUT_LEN;
                let mut d = [0u8; SHA256_OUTPUT_LEN];
                d.copy_from_slice(&header[at..at + SHA256_OUTPUT_LEN]);
                d
            })
            .collect();
        Ok(OpenBlock { file, len, digests })
    }

    /// Bytes `[start, end)` of the block's data (`end` cut to its length),
    /// each chunk they touch read from disk now and checked against its
    /// digest. Err(InvalidData) names the damage.
    pub fn read_range(&self, start: usize, end: usize) -> io::Result<Vec<u8>> {
        let end = end.min(self.len);
        if start >= end {
            return Ok(Vec::new());
        }
        let first = start / CHUNK;
        let last = (end - 1) / CHUNK;
        let from = first * CHUNK;
        let to = ((last + 1) * CHUNK).min(self.len);
        let mut data = vec![0u8; to - from];
        self.file
            .read_exact_at(&mut data, (HEADER_LEN + from) as u64)
            .map_err(|_| damaged("shorter than its length"))?;
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            if digest(&SHA256, chunk).as_ref() != self.digests[first + i] {
                return Err(damaged("checksum does not match"));
            }
        }
        data.drain(..start - from);
        data.truncate(end - start);
        Ok(data)
    }
}

fn damaged(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: BlockId = BlockId {
        path: 1,
        version: 2,
        index: 3,
    };

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    fn read_range(file: &File, id: &BlockId, start: usize, end: usize) -> io::Result<Vec<u8>> {
        OpenBlock::open(file.try_clone()?, id)?.read_range(start, end)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn any_range_reads_back() {
        let d = data(3 * CHUNK + 100);
        let f = file_with(&encode(&ID, &d));
        for (start, end) in [
            (0, d.len()),
            (0, 1),
            (CHUNK - 1, CHUNK + 1),
            (2 * CHUNK, 3 * CHUNK + 100),
            (100, 4096),
            (3 * CHUNK + 50, 1 << 30),
        ] {
            let got = read_range(&f, &ID, start, end).unwrap();
            assert_eq!(got, &d[start..end.min(d.len())], "{start}..{end}");
        }
        assert!(read_range(&f, &ID, d.len(), d.len() + 5)
            .unwrap()
            .is_empty());
        let empty = file_with(&encode(&ID, b""));
        assert!(read_range(&empty, &ID, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn every_damage_is_refused() {
        let d = data(CHUNK + 10);
        let good = encode(&ID, &d);
        // A flipped byte anywhere that matters: the fixed header, the
        // digests in use, the data.
        let used_digests = FIXED + 2 * SHA256_OUTPUT_LEN;
        for i in (0..used_digests).chain(HEADER_LEN..good.len()) {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let read = read_range(&file_with(&bad), &ID, 0, d.len());
            assert!(read.is_err(), "byte {i} flipped");
        }
        for cut in [0, 10, HEADER_LEN, good.len() - 1] {
            let read = read_range(&file_with(&good[..cut]), &ID, 0, d.len());
            assert!(read.is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read_range(&file_with(&longer), &ID, 0, 5).is_err());
        let other = BlockId { index: 4, ..ID };
        assert!(read_range(&file_with(&good), &other, 0, 5).is_err());
    }
}
