//! A download that fills the content cache as it goes: every whole block
//! that passes through it is stored, and so is the file's last block. A
//! download that started inside a block skips to the next boundary.
use std::sync::Arc;

use super::{ContentCache, Version, BLOCK_SIZE};
use crate::store::{ReadStream, Result};

pub struct Filling {
    inner: Box<dyn ReadStream>,
    cache: Arc<ContentCache>,
    path: Vec<u8>,
    version: Version,
    /// The block being assembled: its number and its bytes so far, from
    /// its start. None while the stream is inside a block it did not see
    /// the start of.
    block: Option<(u64, Vec<u8>)>,
}

impl Filling {
    pub fn new(
        inner: Box<dyn ReadStream>,
        cache: Arc<ContentCache>,
        path: &[u8],
        version: Version,
    ) -> Filling {
        let position = inner.position();
        let block = position
            .is_multiple_of(BLOCK_SIZE)
            .then(|| (position / BLOCK_SIZE, Vec::new()));
        Filling {
            inner,
            cache,
            path: path.to_vec(),
            version,
            block,
        }
    }

    /// Takes `data`, read at `offset`, into the blocks it belongs to.
    fn absorb(&mut self, mut offset: u64, mut data: &[u8]) {
        while !data.is_empty() {
            let index = offset / BLOCK_SIZE;
            let in_block = offset % BLOCK_SIZE;
            let room = (BLOCK_SIZE - in_block) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            if in_block == 0 {
                self.block = Some((index, Vec::with_capacity(BLOCK_SIZE as usize)));
            }
            if let Some((_, bytes)) = self.block.as_mut() {
                bytes.extend_from_slice(now);
            }
            offset += now.len() as u64;
            data = rest;
            let ends_block = offset.is_multiple_of(BLOCK_SIZE) || offset == self.version.size;
            if ends_block {
                if let Some((index, bytes)) = self.block.take() {
                    self.cache.put(&self.path, &self.version, index, &bytes);
                }
            }
        }
    }
}

/// The largest rest of a block a dropped download still reads to store
/// it: a random read leaves its block cached, at the cost of the rest of
/// that block (the download is dropped on the read-ahead thread, not the
/// reader's).
impl Drop for Filling {
    fn drop(&mut self) {
        let Some((index, mut bytes)) = self.block.take() else {
            return;
        };
        let block_end = ((index + 1) * BLOCK_SIZE).min(self.version.size);
        let mut buf = vec![0u8; 256 * 1024];
        while (index * BLOCK_SIZE + bytes.len() as u64) < block_end {
            let want = (block_end - index * BLOCK_SIZE) as usize - bytes.len();
            let take = want.min(buf.len());
            match self.inner.read(&mut buf[..take]) {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        self.cache.put(&self.path, &self.version, index, &bytes);
    }
}

impl ReadStream for Filling {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let offset = self.inner.position();
        let n = self.inner.read(buf)?;
        if n > 0 && offset + n as u64 <= self.version.size {
            self.absorb(offset, &buf[..n]);
        } else if n > 0 && self.version.size > 0 {
            // More bytes than the size the file was opened with: the file
            // changed on the server, and what this download stored may be
            // of the new content under the old version. Drop it all, and
            // store nothing more.
            self.cache.forget(&self.path);
            self.block = None;
            self.version.size = 0;
        }
        Ok(n)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    struct Bytes {
        data: Vec<u8>,
        pos: u64,
        step: usize,
    }

    impl ReadStream for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
            let start = self.pos as usize;
            let n = buf
                .len()
                .min(self.step)
                .min(self.data.len().saturating_sub(start));
            buf[..n].copy_from_slice(&self.data[start..start + n]);
            self.pos += n as u64;
            Ok(n)
        }
        fn position(&self) -> u64 {
            self.pos
        }
    }

    fn drain(stream: &mut dyn ReadStream) {
        let mut buf = vec![0u8; 300_000];
        while stream.read(&mut buf).unwrap() > 0 {}
    }

    fn setup(len: usize) -> (tempfile::TempDir, Arc<ContentCache>, Vec<u8>, Version) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(ContentCache::open(dir.path(), b"s", 1 << 30).unwrap());
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let version = Version {
            size: len as u64,
            mtime: Some(UNIX_EPOCH + Duration::from_secs(1)),
        };
        (dir, cache, data, version)
    }

    #[test]
    fn a_whole_download_stores_every_block_the_last_one_included() {
        let bs = BLOCK_SIZE as usize;
        let (_dir, cache, data, version) = setup(2 * bs + 1000);
        let inner = Bytes {
            data: data.clone(),
            pos: 0,
            step: 70_001,
        };
        drain(&mut Filling::new(
            Box::new(inner),
            cache.clone(),
            b"f",
            version,
        ));
        assert_eq!(cache.get(b"f", &version, 0).unwrap(), &data[..bs]);
        assert_eq!(cache.get(b"f", &version, 1).unwrap(), &data[bs..2 * bs]);
        assert_eq!(cache.get(b"f", &version, 2).unwrap(), &data[2 * bs..]);
    }

    #[test]
    fn a_download_dropped_inside_a_block_stores_that_block_whole() {
        let bs = BLOCK_SIZE as usize;
        let (_dir, cache, data, version) = setup(3 * bs);
        let inner = Bytes {
            data: data.clone(),
            pos: bs as u64,
            step: 4096,
        };
        let mut stream = Filling::new(Box::new(inner), cache.clone(), b"f", version);
        let mut buf = vec![0u8; 4096];
        assert_eq!(stream.read(&mut buf).unwrap(), 4096);
        drop(stream);
        assert_eq!(cache.get(b"f", &version, 1).unwrap(), &data[bs..2 * bs]);
        assert_eq!(cache.usage().blocks, 1, "only the block it was in");
    }

    #[test]
    fn a_download_from_inside_a_block_stores_from_the_next_boundary() {
        let bs = BLOCK_SIZE as usize;
        let (_dir, cache, data, version) = setup(2 * bs);
        let inner = Bytes {
            data: data.clone(),
            pos: 1000,
            step: 65_536,
        };
        drain(&mut Filling::new(
            Box::new(inner),
            cache.clone(),
            b"f",
            version,
        ));
        assert_eq!(cache.get(b"f", &version, 0), None, "its start was not seen");
        assert_eq!(cache.get(b"f", &version, 1).unwrap(), &data[bs..]);
    }

    #[test]
    fn a_file_that_grew_under_the_download_leaves_nothing() {
        let bs = BLOCK_SIZE as usize;
        let (_dir, cache, data, mut version) = setup(bs + 10);
        version.size = 5;
        let inner = Bytes {
            data,
            pos: 0,
            step: 4,
        };
        drain(&mut Filling::new(
            Box::new(inner),
            cache.clone(),
            b"f",
            version,
        ));
        assert_eq!(cache.usage().blocks, 0);
    }
}
