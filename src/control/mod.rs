//! The mount's control socket: `ftpsfs status`, `ftpsfs refresh` and
//! `ftpsfs sync` talk to a running mount through it.
//!
//! The socket lives in a private runtime directory of the mounting user
//! (`runtime`), is mode 0600, and the mount also checks the peer's uid
//! (SO_PEERCRED) on every connection, so another user is refused even where
//! the directory's permissions were loosened. One request per connection, a
//! line of text (`protocol`); the reply is lines ending in `ok` or `error`.
//! A malformed or oversized request, or a client that stalls, gets an error
//! or a closed connection, never a crash or a stuck thread in the mount.
pub mod client;
pub mod command;
pub mod mount_target;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod status;
pub mod target;

pub use protocol::Request;
pub use server::ControlServer;
pub use status::Status;
pub use target::Target;
