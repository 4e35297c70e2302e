//! Reading an open file: from its local copy when it has one, otherwise
//! from a download kept open per handle (see `read_ahead`).
//!
//! The kernel sends several read requests of one file at once; they queue
//! on the handle's download slot. When the download fails, the requests
//! that were waiting get its error instead of each opening a new download
//! and waiting for its own timeouts.
use std::sync::atomic::Ordering;

use super::handles::Handle;
use super::open_file::FileState;
use super::read_ahead::ReadAhead;
use super::spool::Spool;
use super::{Error, Fs, Result};

impl Fs {
    pub(super) fn read_handle(&self, h: &Handle, offset: u64, size: u32) -> Result<Vec<u8>> {
        let file = &h.file;
        {
            let mut state = file.state();
            if matches!(&*state, FileState::Streaming(_)) {
                self.unstream(file, &mut state)?;
            }
            if let FileState::Appending(a) = &*state {
                if offset >= a.base {
                    return read_spool(&a.tail, offset - a.base, size);
                }
                // Before the end the server had: all of it is needed here
                // now (a read of an appended file is rare; `>>` never reads).
                self.stage(file, &mut state)?;
            }
            if let Some(spool) = state.spool() {
                return read_spool(spool, offset, size);
            }
            if matches!(&*state, FileState::SavedEmpty | FileState::NotOnServer) {
                return Ok(Vec::new());
            }
        }
        let path = self.path(file.ino)?;
        let version = file.version();
        let failures_before = h.read_failures.load(Ordering::SeqCst);
        let mut slot = h.reader.lock();
        if h.read_failures.load(Ordering::SeqCst) != failures_before {
            if let Some(e) = &slot.last_error {
                return Err(e.clone());
            }
        }
        if let Some((v, r)) = &slot.current {
            if *v != version || !r.covers(offset) {
                slot.current = None;
            }
        }
        let reader = match &mut slot.current {
            Some((_, r)) => r,
            None => match self.start_download(&path, offset) {
                Ok(r) => &mut slot.current.insert((version, r)).1,
                Err(e) => {
                    slot.fail(&h.read_failures, &e);
                    return Err(e);
                }
            },
        };
        match reader.read(offset, size as usize) {
            Ok(data) => Ok(data),
            Err(e) => {
                let e = Error::from(e);
                slot.fail(&h.read_failures, &e);
                Err(e)
            }
        }
    }

    fn start_download(&self, path: &[u8], offset: u64) -> Result<ReadAhead> {
        let stream = self.store.open_read(path, offset)?;
        ReadAhead::start(stream, self.config.read_ahead)
            .map_err(|e| Error::local(&e, "starting a download thread"))
    }
}

fn read_spool(spool: &Spool, offset: u64, size: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let n = spool
        .read_at(offset, &mut buf)
        .map_err(|e| Error::local(&e, "reading the write spool"))?;
    buf.truncate(n);
    Ok(buf)
}
