//! ftpsfs: mount a directory of an FTPS server as a local filesystem.
//!
//! Layers, each depending only on the ones after it: `cli` and `run` (the
//! command line, mounting), `control` (the running mount's control socket
//! and the commands that use it), `fuse` (the only user of fuser), `fs` (the
//! filesystem core: inodes, caches, spool; knows nothing of fuser or
//! sockets), `store` (the server as a `RemoteStore`), and `ftp`, the
//! protocol client, which `store::ftps` uses and which knows nothing of FUSE
//! or caches. `malloc` sets up the C allocator for the process (`main`).
pub mod cli;
pub mod control;
pub mod credentials;
pub mod digest;
pub mod fs;
pub mod ftp;
pub mod fuse;
pub mod guard;
pub mod logging;
pub mod malloc;
pub mod percent;
pub mod run;
pub mod store;
