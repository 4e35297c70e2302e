//! ftpsfs: mount a directory of an FTPS server as a local filesystem.
//!
//! Layers (see `../shared/design.md`): `ftp` is the protocol client and knows
//! nothing of FUSE or caches.
pub mod cli;
pub mod credentials;
pub mod fs;
pub mod ftp;
pub mod fuse;
pub mod guard;
pub mod logging;
pub mod run;
pub mod store;
