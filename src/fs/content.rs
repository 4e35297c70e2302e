//! The content of open files: opening and closing them, writing into them
//! wherever their bytes are (server, spool, streaming upload), staging and
//! truncating.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::handle::{Data, LocalMeta, OpenFile};
use super::spool::Spool;
use super::{not_found, show, Error, ErrorKind, Fs, Ino, Result, FETCH_CHUNK, STREAM_AFTER};
use crate::store::FileKind;

impl Fs {
    /// The open file of `ino`, opened if it is not, with one more user.
    pub(super) fn acquire(&self, ino: Ino) -> Result<Arc<OpenFile>> {
        let existing = {
            let files = self.files.lock();
            files.get(&ino).map(|f| {
                f.users.fetch_add(1, Ordering::SeqCst);
                Arc::clone(f)
            })
        };
        let file = match existing {
            Some(f) => f,
            None => {
                let path = self.path(ino)?;
                let (meta, _) = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
                if meta.kind == FileKind::Dir {
                    return Err(Error::new(
                        ErrorKind::IsDir,
                        format!("{}: is a directory", show(&path)),
                    ));
                }
                let local = LocalMeta::from_server(&meta, SystemTime::now());
                let mut files = self.files.lock();
                let f = files
                    .entry(ino)
                    .or_insert_with(|| Arc::new(OpenFile::new(ino, Data::Remote, local)));
                f.users.fetch_add(1, Ordering::SeqCst);
                Arc::clone(f)
            }
        };
        self.inodes.lock().pin(ino);
        Ok(file)
    }

    /// One user less; the last one closes the file (uploading what is left).
    pub(super) fn release_file(&self, file: &Arc<OpenFile>) {
        let last = {
            let mut files = self.files.lock();
            let last = file.users.fetch_sub(1, Ordering::SeqCst) == 1;
            if last && files.get(&file.ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
                files.remove(&file.ino);
            }
            last
        };
        if last && file.meta.lock().dirty {
            if let Err(e) = self.save(file) {
                log::error!("changes were lost at close: {e}");
            }
        }
        self.inodes.lock().unpin(file.ino);
    }

    /// Writes into the file's content wherever it is (data lock held).
    pub(super) fn write_locked(
        &self,
        file: &OpenFile,
        d: &mut Data,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let end = offset + data.len() as u64;
        loop {
            match d {
                // The server's content is the base (even when the cache
                // says it is empty: it may not be any more).
                Data::Remote => self.stage(file, d)?,
                Data::Staged(spool) => {
                    let stream = {
                        let mut m = file.meta.lock();
                        if offset != spool.len() {
                            m.sequential = false;
                        }
                        spool
                            .write_at(offset, data)
                            .map_err(|e| Error::local(&e, "writing the spool"))?;
                        m.size = spool.len();
                        m.dirty = true;
                        m.mtime = SystemTime::now();
                        m.pending_mtime = None;
                        m.sequential
                            && spool.len()
                                >= self.config.spool_memory_limit.min(STREAM_AFTER) as u64
                    };
                    if stream {
                        self.start_stream(file, d)?;
                    }
                    return Ok(());
                }
                Data::Streaming(s) => match s.write(offset, data) {
                    Ok(true) => {
                        let mut m = file.meta.lock();
                        m.size = m.size.max(end);
                        m.dirty = true;
                        m.mtime = SystemTime::now();
                        m.pending_mtime = None;
                        return Ok(());
                    }
                    Ok(false) => self.unstream(file, d)?,
                    Err(e) => return Err(self.stream_failed(file, d, e.into())),
                },
            }
        }
    }

    /// Fetches the server's content of the file into a spool (data lock held).
    /// An unlinked file starts from empty: its content is gone from the
    /// server, and what is written to it now is never uploaded.
    pub(super) fn stage(&self, file: &OpenFile, d: &mut Data) -> Result<()> {
        let path = self.inodes.lock().path(file.ino);
        let on_server = {
            let m = file.meta.lock();
            m.on_server && !m.unlinked
        };
        let spool = match (on_server, path) {
            (true, Some(path)) => self.fetch(&path)?,
            _ => self.new_spool(),
        };
        let mut m = file.meta.lock();
        m.size = spool.len();
        m.sequential = false;
        *d = Data::Staged(spool);
        Ok(())
    }

    /// A new spool holding the server's content of `path`.
    pub(super) fn fetch(&self, path: &[u8]) -> Result<Spool> {
        let mut spool = self.new_spool();
        let mut stream = self.store.open_read(path, 0)?;
        let mut buf = vec![0u8; FETCH_CHUNK];
        let mut offset = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(spool);
            }
            spool
                .write_at(offset, &buf[..n])
                .map_err(|e| Error::local(&e, "writing the spool"))?;
            offset += n as u64;
        }
    }

    pub(super) fn truncate_file(&self, file: &OpenFile, size: u64) -> Result<()> {
        let mut d = file.data.lock();
        if let Data::Streaming(s) = &*d {
            if s.size() == size {
                return Ok(());
            }
            self.unstream(file, &mut d)?;
        }
        if let Data::Remote = &*d {
            if size == 0 {
                *d = Data::Staged(self.new_spool());
                file.meta.lock().sequential = true;
            } else {
                let m = file.meta.lock();
                if m.size == size && m.on_server {
                    return Ok(());
                }
                drop(m);
                self.stage(file, &mut d)?;
            }
        }
        if let Data::Staged(spool) = &mut *d {
            let was = spool.len();
            spool
                .set_len(size)
                .map_err(|e| Error::local(&e, "truncating the spool"))?;
            let mut m = file.meta.lock();
            m.sequential = size == 0 || (m.sequential && size == was);
            m.size = size;
            m.dirty = true;
            m.mtime = SystemTime::now();
            m.pending_mtime = None;
        }
        Ok(())
    }
}
