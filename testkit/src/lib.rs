//! Stand-ins for an FTPS server, for testing ftpsfs without a network: the
//! in-memory server `MemoryStore` (behaves like vsftpd, counts calls) and
//! `FaultyStore`, which wraps any `RemoteStore` and injects the faults of
//! networks and servers (a failed call, a transfer cut after some bytes, a
//! slow answer).
//!
//! A crate of its own, and a dev-dependency only, so the product does not
//! carry its test doubles, and the wrapper can be put around the FTPS store
//! as well as around the memory one.
//!
//! Keeping a handle on the server behind the wrapper: ftpsfs implements
//! `RemoteStore` for `Arc<S>`, so share the server and wrap a clone. The
//! test asserts on the server (`file`, `counters`) and arms faults on the
//! wrapper, while the `Fs` owns the wrapper as an `Arc<dyn RemoteStore>`:
//!
//! ```
//! use std::sync::Arc;
//! use ftpsfs::store::{ErrorKind, RemoteStore};
//! use ftpsfs_testkit::{FaultyStore, MemoryStore, Op};
//!
//! let server = Arc::new(MemoryStore::new());
//! let store = Arc::new(FaultyStore::new(Arc::clone(&server)));
//! let for_the_fs: Arc<dyn RemoteStore> = store.clone();
//! store.fail_next(Op::Mkdir, ErrorKind::Unavailable);
//! assert!(for_the_fs.mkdir(b"d").is_err());
//! for_the_fs.mkdir(b"d").unwrap();
//! assert!(server.exists(b"d"));
//! assert_eq!(server.counters().mkdir, 1, "the failed call never reached it");
//! assert_eq!(store.counters().mkdir, 2, "the wrapper saw both");
//! ```
//!
//! (`store.inner()` reaches the server too, when the wrapper owns it.)
mod faults;
mod memory;
mod ops;

pub use faults::{Corruption, FaultyStore};
pub use memory::MemoryStore;
pub use ops::{Op, OpCounts};
