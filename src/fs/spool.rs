//! The local copy of a file being changed: in memory up to a limit, then in a
//! file in the spool directory.
//!
//! The spool file is created with mode 0600 in a 0700 directory and unlinked
//! at once, so it disappears when the spool is dropped, or when the process
//! dies, and no other user can read it.
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters the tests read: how much the spools held.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// The largest size any spool reached in memory.
    pub peak_memory: AtomicU64,
    /// The largest size any spool reached.
    pub peak_size: AtomicU64,
    /// Spools that moved to a file.
    pub files: AtomicU64,
}

pub struct Spool {
    memory: Vec<u8>,
    file: Option<File>,
    len: u64,
    limit: usize,
    dir: PathBuf,
    stats: Arc<SpoolStats>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn create_file(dir: &Path) -> io::Result<File> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("ftpsfs-spool-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Spool {
    pub fn new(limit: usize, dir: PathBuf, stats: Arc<SpoolStats>) -> Spool {
        Spool {
            memory: Vec::new(),
            file: None,
            len: 0,
            limit,
            dir,
            stats,
        }
    }

    /// A spool over a file that already holds `len` bytes (a write-back
    /// spool file, read for its upload).
    pub fn from_file(file: File, len: u64, stats: Arc<SpoolStats>) -> Spool {
        Spool {
            memory: Vec::new(),
            file: Some(file),
            len,
            limit: 0,
            dir: PathBuf::new(),
            stats,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    fn grow_to(&mut self, end: u64) -> io::Result<()> {
        if self.file.is_none() && end > self.limit as u64 {
            let file = create_file(&self.dir)?;
            file.write_all_at(&self.memory, 0)?;
            self.memory = Vec::new();
            self.file = Some(file);
            self.stats.files.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn note_size(&self) {
        self.stats.peak_size.fetch_max(self.len, Ordering::Relaxed);
        if self.file.is_none() {
            self.stats
                .peak_memory
                .fetch_max(self.memory.len() as u64, Ordering::Relaxed);
        }
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        self.grow_to(end)?;
        match &self.file {
            Some(file) => file.write_all_at(data, offset)?,
            None => {
                // Below the memory limit, so these fit in usize.
                let (start, end) = (offset as usize, end as usize);
                if self.memory.len() < end {
                    self.memory.resize(end, 0);
                }
                self.memory[start..end].copy_from_slice(data);
            }
        }
        self.len = self.len.max(end);
        self.note_size();
        Ok(())
    }

    /// Reads from `offset`; fewer bytes than `buf` holds only at the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (self.len - offset).min(buf.len() as u64) as usize;
        match &self.file {
            Some(file) => file.read_exact_at(&mut buf[..n], offset)?,
            None => {
                let start = offset as usize;
                buf[..n].copy_from_slice(&self.memory[start..start + n]);
            }
        }
        Ok(n)
    }

    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.grow_to(len)?;
        match &self.file {
            Some(file) => file.set_len(len)?,
            None => self.memory.resize(len as usize, 0),
        }
        self.len = len;
        self.note_size();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(limit: usize) -> (Spool, PathBuf, Arc<SpoolStats>) {
        let dir = std::env::temp_dir().join(format!(
            "ftpsfs-spool-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let stats = Arc::new(SpoolStats::default());
        (Spool::new(limit, dir.clone(), stats.clone()), dir, stats)
    }

    fn read_all(s: &Spool) -> Vec<u8> {
        let mut buf = vec![0; s.len() as usize + 10];
        let n = s.read_at(0, &mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    #[test]
    fn writes_reads_and_holes_in_memory() {
        let (mut s, _, stats) = spool(100);
        s.write_at(4, b"abc").unwrap();
        assert_eq!(read_all(&s), b"\0\0\0\0abc");
        s.write_at(0, b"xy").unwrap();
        assert_eq!(read_all(&s), b"xy\0\0abc");
        s.set_len(3).unwrap();
        assert_eq!(read_all(&s), b"xy\0");
        assert!(!s.on_disk());
        assert_eq!(stats.peak_memory.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn moves_to_a_private_file_past_the_limit() {
        let (mut s, dir, stats) = spool(8);
        s.write_at(0, b"12345678").unwrap();
        assert!(!s.on_disk());
        s.write_at(8, b"9").unwrap();
        assert!(s.on_disk());
        assert_eq!(read_all(&s), b"123456789");
        s.set_len(20).unwrap();
        assert_eq!(s.len(), 20);
        let mut buf = [1u8; 4];
        assert_eq!(s.read_at(18, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"\0\0");
        assert_eq!(stats.files.load(Ordering::Relaxed), 1);
        assert_eq!(stats.peak_memory.load(Ordering::Relaxed), 8);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the file is unlinked"
        );
        let _ = fs::remove_dir(&dir);
    }
}
