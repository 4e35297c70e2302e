//! The FTP/FTPS protocol client: replies, commands, TLS on both channels, data
//! connections, listings and a pool of control sessions. It knows nothing of
//! FUSE, inodes or caches.
pub mod address;
pub mod avbl;
pub mod config;
pub mod control;
pub mod data;
pub mod dialogue;
pub mod error;
pub mod features;
pub mod identity;
pub mod listing;
mod login_gate;
pub mod net;
pub mod pool;
pub mod reply;
pub mod server_family;
pub mod session;
pub mod socks;
pub mod stream;
pub mod time;
pub mod tls;
pub mod transfer;

pub use config::{Credentials, DataMode, FtpConfig, Password, Security, TlsOptions, TlsVersion};
pub use error::{Error, Kind, Result};
pub use pool::{Pool, PoolSettings, PooledSession, Retry};
pub use session::{Connector, Session, Stats, StatsSnapshot};
