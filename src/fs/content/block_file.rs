//! The bytes of one cached block on disk: a header that says which block of
//! which version of a file it is, a SHA-256 of the data, then the data. A
//! block that does not decode, or whose data does not match its digest
//! (a torn write after a power cut, a disk error, a hand edit), is refused,
//! never served.
use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};

const MAGIC: &[u8; 8] = b"FTPSFSB1";
/// magic, version, block index, data length, digest.
pub const HEADER_LEN: usize = 8 + 8 + 8 + 4 + SHA256_OUTPUT_LEN;

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

pub fn encode(id: &BlockId, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&id.version.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
    // Blocks are at most a few MiB (see `BLOCK_SIZE`): the length fits.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(digest(&SHA256, data).as_ref());
    out.extend_from_slice(data);
    out
}

/// The data of an encoded block, if it is whole, is the block `id`, and
/// matches its digest; why not otherwise.
pub fn decode(id: &BlockId, bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
    if bytes.len() < HEADER_LEN {
        return Err("shorter than its header");
    }
    let (header, data) = bytes.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("not a block file");
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if word(8) != id.version || word(16) != id.index {
        return Err("another block's file");
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[24..28]);
    if u32::from_le_bytes(len) as usize != data.len() {
        return Err("length does not match");
    }
    if digest(&SHA256, data).as_ref() != &header[28..] {
        return Err("checksum does not match");
    }
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: BlockId = BlockId {
        path: 1,
        version: 2,
        index: 3,
    };

    #[test]
    fn a_block_decodes_to_its_data() {
        for data in [&b""[..], b"x", &[7u8; 70_000]] {
            assert_eq!(decode(&ID, &encode(&ID, data)).as_deref(), Ok(data));
        }
    }

    #[test]
    fn every_damage_is_refused() {
        let good = encode(&ID, b"some block data");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(decode(&ID, &bad).is_err(), "byte {i} flipped");
        }
        for len in 0..good.len() {
            assert!(decode(&ID, &good[..len]).is_err(), "cut at {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&ID, &longer).is_err());
        let other = BlockId { index: 4, ..ID };
        assert_eq!(decode(&other, &good), Err("another block's file"));
    }
}
