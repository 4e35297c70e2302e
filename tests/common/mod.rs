//! Shared support for the integration tests: real servers, their connection
//! details, and test data.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod core;
pub mod data;
pub mod fake;
pub mod mount;
pub mod mount_suite;
pub mod proxied;
pub mod proxy;
pub mod require;
pub mod scratch;
pub mod script_server;
pub mod server;
pub mod socks;
pub mod store_contract;
pub mod suite;
pub mod tls_fake;
pub mod vsftpd;

pub use server::ServerInfo;
