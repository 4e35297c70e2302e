//! Names for the operations of `RemoteStore`, and counts of their calls: a
//! test names an operation to fail it, and counts calls to prove that a cache
//! saved a round trip.

/// The operations of `RemoteStore`, to name one in `FaultyStore::fail_next`
/// or `OpCounts::get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Stat,
    ExactMtime,
    OpenRead,
    Upload,
    Append,
    UploadAt,
    Size,
    Digest,
    Delete,
    Mkdir,
    Rmdir,
    Rename,
    Chmod,
    SetMtime,
    FreeSpace,
}

impl Op {
    pub const ALL: [Op; 16] = [
        Op::List,
        Op::Stat,
        Op::ExactMtime,
        Op::OpenRead,
        Op::Upload,
        Op::Append,
        Op::UploadAt,
        Op::Size,
        Op::Digest,
        Op::Delete,
        Op::Mkdir,
        Op::Rmdir,
        Op::Rename,
        Op::Chmod,
        Op::SetMtime,
        Op::FreeSpace,
    ];
}

/// How many times each operation was called (failed calls included), and how
/// many bytes went through the streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub list: u64,
    pub stat: u64,
    pub exact_mtime: u64,
    pub open_read: u64,
    pub upload: u64,
    pub append: u64,
    pub upload_at: u64,
    pub size: u64,
    pub digest: u64,
    pub delete: u64,
    pub mkdir: u64,
    pub rmdir: u64,
    pub rename: u64,
    pub chmod: u64,
    pub set_mtime: u64,
    pub free_space: u64,
    /// Bytes returned by the reads of download streams.
    pub bytes_read: u64,
    /// Bytes stored by the writes of upload streams.
    pub bytes_uploaded: u64,
}

impl OpCounts {
    /// All operations, not bytes.
    pub fn total(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.get(op)).sum()
    }

    pub fn get(&self, op: Op) -> u64 {
        match op {
            Op::List => self.list,
            Op::Stat => self.stat,
            Op::ExactMtime => self.exact_mtime,
            Op::OpenRead => self.open_read,
            Op::Upload => self.upload,
            Op::Append => self.append,
            Op::UploadAt => self.upload_at,
            Op::Size => self.size,
            Op::Digest => self.digest,
            Op::Delete => self.delete,
            Op::Mkdir => self.mkdir,
            Op::Rmdir => self.rmdir,
            Op::Rename => self.rename,
            Op::Chmod => self.chmod,
            Op::SetMtime => self.set_mtime,
            Op::FreeSpace => self.free_space,
        }
    }

    pub(crate) fn bump(&mut self, op: Op) {
        let count = match op {
            Op::List => &mut self.list,
            Op::Stat => &mut self.stat,
            Op::ExactMtime => &mut self.exact_mtime,
            Op::OpenRead => &mut self.open_read,
            Op::Upload => &mut self.upload,
            Op::Append => &mut self.append,
            Op::UploadAt => &mut self.upload_at,
            Op::Size => &mut self.size,
            Op::Digest => &mut self.digest,
            Op::Delete => &mut self.delete,
            Op::Mkdir => &mut self.mkdir,
            Op::Rmdir => &mut self.rmdir,
            Op::Rename => &mut self.rename,
            Op::Chmod => &mut self.chmod,
            Op::SetMtime => &mut self.set_mtime,
            Op::FreeSpace => &mut self.free_space,
        };
        *count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_op_has_its_own_count() {
        let mut counts = OpCounts::default();
        for (i, op) in Op::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                counts.bump(op);
            }
        }
        for (i, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(counts.get(op), i as u64 + 1, "{op:?}");
        }
        counts.bytes_read = 1000;
        let n = Op::ALL.len() as u64;
        assert_eq!(counts.total(), n * (n + 1) / 2, "bytes are not ops");
    }
}
