//! The protocol client against the in-process FTPS server (libunftp): MLSD
//! and MLST, TLS 1.3 data connections from a server that does not require
//! resumption, and a server without TLS at all.
mod common;
#[path = "support/inproc.rs"]
mod inproc;

use std::net::Ipv4Addr;

use common::suite;
use ftpsfs::ftp::listing::EntryKind;
use ftpsfs::ftp::{Connector, Kind};
use inproc::InProcServer;

#[test]
fn round_trip_with_mlsd() {
    let server = InProcServer::start();
    let info = server.info();
    let (_, session) = suite::connect(info.config());
    assert!(session.features().mlsd, "libunftp offers MLSD");
    drop(session);
    suite::round_trip(&info, info.config());
}

#[test]
fn ten_uploads_resume() {
    let server = InProcServer::start();
    let info = server.info();
    suite::ten_uploads_resume_tls(&info, info.config());
}

#[test]
fn transfer_20_mib() {
    let server = InProcServer::start();
    let info = server.info();
    suite::large_transfer(&info, info.config(), 20 * 1024 * 1024);
}

#[test]
fn ranged_reads_and_abort() {
    let server = InProcServer::start();
    let info = server.info();
    suite::ranged_reads(&info, info.config());
}

#[test]
fn listing_names_through_mlsd() {
    let server = InProcServer::start();
    let info = server.info();
    suite::listing_names(&info, info.config());
}

#[test]
fn mlst_of_a_file_and_a_directory() {
    let server = InProcServer::start();
    let info = server.info();
    std::fs::write(info.root.join("facts.txt"), b"12345").unwrap();
    std::fs::create_dir(info.root.join("d")).unwrap();
    let (_, mut session) = suite::connect(info.config());
    let file = session.mlst(b"facts.txt").unwrap();
    assert_eq!(file.kind, EntryKind::File);
    assert_eq!(file.size, Some(5));
    assert!(file.modified_exact && file.modified.is_some());
    assert_eq!(session.mlst(b"d").unwrap().kind, EntryKind::Dir);
    let missing = session.mlst(b"nope").expect_err("missing");
    assert_eq!(missing.kind(), Kind::NotFound, "{missing}");
}

#[test]
fn crlf_refused() {
    let server = InProcServer::start();
    suite::crlf_refused(server.info().config());
}

#[test]
fn certificate_checks() {
    let server = InProcServer::start();
    let info = server.info();
    suite::wrong_ca_refused(&info);
    suite::default_roots_refuse_a_private_ca(&info);
    suite::wrong_name_refused(&info);
    suite::wrong_password(&info);
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let der = CertificateDer::from_pem_file(server.server_cert_file()).unwrap();
    suite::pinning(&info, der.as_ref());
}

#[test]
fn server_without_tls_is_refused() {
    let server = InProcServer::builder().tls(false).start();
    let err = Connector::new(server.info().config())
        .unwrap()
        .connect()
        .err()
        .expect("no TLS, no login");
    assert_eq!(err.kind(), Kind::Tls, "{err}");
    assert!(
        err.to_string()
            .contains("refusing to continue in plaintext"),
        "{err}"
    );
    assert!(
        !server.log_text().contains("USER"),
        "credentials were never sent"
    );
}

#[test]
fn pasv_address_pointing_elsewhere_is_ignored() {
    let server = InProcServer::builder()
        .passive_host(Ipv4Addr::new(127, 0, 0, 2))
        .start();
    let info = server.info();
    suite::pasv_address_ignored(&info, info.config());
}
