//! The pieces every test of the filesystem core (`Fs` without a mount, on
//! the in-memory store) needs: open flags, path lookup, `cat`, and a store
//! that behaves like a LIST-only server.
use ftpsfs::fs::{Fs, Ino, OpenFlags, ROOT_INO};
use ftpsfs::store::Capabilities;
use ftpsfs_testkit::MemoryStore;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * KIB;

pub const READ: OpenFlags = OpenFlags {
    read: true,
    write: false,
    truncate: false,
    append: false,
    exclusive: false,
};
pub const WRITE: OpenFlags = OpenFlags {
    read: false,
    write: true,
    ..READ
};
pub const RDWR: OpenFlags = OpenFlags {
    read: true,
    write: true,
    ..READ
};

/// The inode of a path, looked up component by component.
pub fn ino(fs: &Fs, path: &str) -> Ino {
    let mut ino = ROOT_INO;
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs
            .lookup(ino, comp.as_bytes())
            .unwrap_or_else(|e| panic!("lookup {path}: {e}"))
            .ino;
    }
    ino
}

/// `cat`: open, read the whole file in 128 KiB requests, close.
pub fn cat(fs: &Fs, ino: Ino) -> Vec<u8> {
    let fh = fs.open(ino, READ).expect("open for reading");
    let mut out = Vec::new();
    loop {
        let chunk = fs
            .read(fh, out.len() as u64, 128 * KIB as u32)
            .expect("read");
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(fh).expect("release");
    out
}

/// A store whose listings give LIST-precision times (vsftpd): exact times
/// come from MDTM, a stat lists the directory.
pub fn list_server() -> MemoryStore {
    MemoryStore::with_capabilities(Capabilities {
        set_mtime: true,
        chmod: true,
        exact_listing_mtime: false,
        append: true,
        ..Capabilities::default()
    })
}
