//! The protocol client against vsftpd 3.0.3 as configured in the field: TLS
//! required on both channels, session reuse required, TLS 1.3 and 1.2,
//! explicit and implicit. Each test starts its own server.
mod common;

use common::suite;
use common::vsftpd::Vsftpd;
use ftpsfs::ftp::TlsVersion;

const MIB: usize = 1024 * 1024;

#[test]
fn explicit_round_trip() {
    let server = Vsftpd::start(&[]);
    suite::round_trip(&server.info, server.info.config());
}

#[test]
fn implicit_round_trip() {
    let server = Vsftpd::start(&[]);
    let config = server.info.implicit_config().expect("implicit port");
    suite::round_trip(&server.info, config);
}

#[test]
fn ten_uploads_resume_under_tls13() {
    let server = Vsftpd::start(&[]);
    assert_eq!(
        server.env.get("FTPS_TLS_MAX").map(String::as_str),
        Some("1.3")
    );
    suite::ten_uploads_resume_tls(&server.info, server.info.config());
}

#[test]
fn ten_uploads_resume_under_tls12_server() {
    let server = Vsftpd::start(&["--tls12-only"]);
    assert_eq!(
        server.env.get("FTPS_TLS_MAX").map(String::as_str),
        Some("1.2")
    );
    suite::ten_uploads_resume_tls(&server.info, server.info.config());
}

#[test]
fn ten_uploads_resume_under_tls12_client() {
    let server = Vsftpd::start(&[]);
    let mut config = server.info.config();
    config.tls.max_version = Some(TlsVersion::Tls12);
    suite::ten_uploads_resume_tls(&server.info, config);
}

#[test]
fn implicit_uploads_resume() {
    let server = Vsftpd::start(&[]);
    let config = server.info.implicit_config().expect("implicit port");
    suite::ten_uploads_resume_tls(&server.info, config);
}

#[test]
fn transfer_100_mib() {
    let server = Vsftpd::start(&[]);
    suite::large_transfer(&server.info, server.info.config(), 100 * MIB);
}

#[test]
fn ranged_reads_and_abort() {
    let server = Vsftpd::start(&[]);
    suite::ranged_reads(&server.info, server.info.config());
}

#[test]
fn short_download_is_an_error() {
    let server = Vsftpd::start(&[]);
    suite::short_download_is_an_error(&server.info, server.info.config());
}

#[test]
fn file_commands() {
    let server = Vsftpd::start(&[]);
    suite::file_commands(&server.info, server.info.config());
}

#[test]
fn listing_names() {
    let server = Vsftpd::start(&[]);
    suite::listing_names(&server.info, server.info.config());
}

#[test]
fn crlf_refused() {
    let server = Vsftpd::start(&[]);
    suite::crlf_refused(server.info.config());
}

#[test]
fn certificate_checks() {
    let server = Vsftpd::start(&[]);
    suite::wrong_ca_refused(&server.info);
    suite::default_roots_refuse_a_private_ca(&server.info);
    suite::wrong_name_refused(&server.info);
    suite::wrong_password(&server.info);
    let cert_path = server.info.server_cert.clone().expect("FTPS_SERVER_CERT");
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let der = CertificateDer::from_pem_file(&cert_path).expect("server certificate PEM");
    suite::pinning(&server.info, der.as_ref());
}

#[test]
fn pasv_address_pointing_elsewhere_is_ignored() {
    let server = Vsftpd::start(&["--pasv-address", "127.0.0.2"]);
    suite::pasv_address_ignored(&server.info, server.info.config());
}

#[test]
fn active_mode_in_a_port_range() {
    let server = Vsftpd::start(&["--no-pasv"]);
    suite::active_mode(&server.info, server.info.config(), 47000..=47100);
}

#[test]
fn dot_files_are_listed_without_force_dot_files() {
    // vsftpd's default hides dot files from a plain LIST.
    let server = Vsftpd::start(&["--extra-conf", "force_dot_files=NO"]);
    suite::listing_names(&server.info, server.info.config());
}
