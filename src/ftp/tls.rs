//! TLS set-up: the rustls client configuration, certificate verification as
//! FTPS users need it, and errors that name the reason a certificate failed.
//!
//! Each control session gets its own copy of the configuration with its own
//! session store (`for_session`): its data connections resume *its* TLS
//! session, as vsftpd (`require_ssl_reuse`), ProFTPD and FileZilla Server
//! demand. A shared store would let sessions overwrite each other's tickets.
//! A client certificate (mutual TLS, see `identity`) is presented on the
//! control and on every data connection alike.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, NamedGroup,
    RootCertStore, SignatureScheme,
};

use super::config::{TlsOptions, TlsVersion};
use super::error::{Error, Result};

/// Builds the shared client configuration. Sessions derive theirs from it.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match options.max_version {
        Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let verifier = Arc::new(FtpsVerifier::new(options, provider.clone())?);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| Error::Config(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // The resolver is part of what a session resumes with: rustls resumes
    // only with the very resolver (and verifier) that made the session, so
    // the copies `for_session` makes share this one.
    let config = match &options.client_identity {
        Some(identity) => builder
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key()))),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A copy of `base` with a session store of its own, for one control session
/// and the data connections it opens; and that store, which says how many
/// TLS 1.3 tickets are left.
pub fn for_session(base: &Arc<ClientConfig>) -> (Arc<ClientConfig>, Arc<SessionStore>) {
    let mut config = ClientConfig::clone(base);
    let store = Arc::new(SessionStore::new());
    config.resumption = Resumption::store(store.clone());
    (Arc::new(config), store)
}

/// The TLS 1.2 variant of a configuration: for servers whose TLS 1.3 session
/// cannot be resumed by every data connection (see `SessionStore`).
pub fn capped_at_tls12(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
    client_config(&TlsOptions {
        max_version: Some(TlsVersion::Tls12),
        ..options.clone()
    })
}

/// rustls's memory store, counting the TLS 1.3 tickets it holds.
///
/// Why count: rustls uses a TLS 1.3 ticket once (RFC 8446 advice), while an
/// FTPS server that requires session reuse refuses a data connection that
/// does not resume. vsftpd hands out a new ticket on every data connection,
/// but ProFTPD (mod_tls) gives two per login and none on data connections, so
/// a session's third data connection would be refused (425). The session
/// looks here before opening a data connection and acts while it still can.
pub struct SessionStore {
    inner: ClientSessionMemoryCache,
    tls13_tickets: AtomicUsize,
}

/// rustls keeps at most this many TLS 1.3 tickets per server, dropping the
/// oldest (rustls 0.23, `MAX_TLS13_TICKETS_PER_SERVER`).
const TICKETS_KEPT: usize = 8;

impl SessionStore {
    fn new() -> SessionStore {
        SessionStore {
            // One server, but the size must be well above 8: rustls divides
            // it by 8 (tickets per server) to size its map of servers, and a
            // map sized for one server evicts each entry as soon as it is
            // inserted (rustls 0.23), so `new(8)` silently stores nothing and
            // no data connection resumes.
            inner: ClientSessionMemoryCache::new(32),
            tls13_tickets: AtomicUsize::new(0),
        }
    }

    /// TLS 1.3 tickets not used yet (expired ones included).
    pub fn tls13_tickets(&self) -> usize {
        self.tls13_tickets.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("tls13_tickets", &self.tls13_tickets())
            .finish()
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server_name, value);
        let _ = self
            .tls13_tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n + 1).min(TICKETS_KEPT))
            });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(server_name);
        if ticket.is_some() {
            let _ = self
                .tls13_tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        ticket
    }
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated hex.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug)]
enum Trust {
    /// Skip verification (`--insecure`).
    Anything,
    /// Only the certificate with this SHA-256 (`--pin-sha256`).
    Pinned([u8; 32]),
    /// Chain verification against roots, and certificates trusted as themselves.
    Roots {
        webpki: Arc<WebPkiServerVerifier>,
        /// The certificates of `--ca-file`. One of them presented as the server's
        /// certificate is accepted (for its host name): most self-signed server
        /// certificates are made by `openssl req -x509`, marked CA:TRUE, which
        /// webpki refuses as a server certificate even when it is trusted. curl
        /// and OpenSSL accept them, so must we.
        trusted_leaves: Vec<CertificateDer<'static>>,
    },
}

#[derive(Debug)]
struct FtpsVerifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FtpsVerifier {
    fn new(options: &TlsOptions, provider: Arc<CryptoProvider>) -> Result<FtpsVerifier> {
        let algorithms = provider.signature_verification_algorithms;
        let trust = if options.insecure {
            Trust::Anything
        } else if let Some(pin) = options.pin_sha256 {
            Trust::Pinned(pin)
        } else {
            let mut roots = RootCertStore::empty();
            let mut trusted_leaves = Vec::new();
            match &options.ca_file {
                Some(path) => {
                    let certs = read_pem_certificates(path)?;
                    let (added, _ignored) = roots.add_parsable_certificates(certs.clone());
                    if added == 0 && certs.is_empty() {
                        return Err(Error::Config(format!(
                            "no certificate found in CA file {}",
                            path.display()
                        )));
                    }
                    trusted_leaves = certs;
                }
                None => {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    // The system store adds the distribution's and the site's own CAs;
                    // a machine without one still has webpki-roots.
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                }
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Config(format!("certificate verifier: {e}")))?;
            Trust::Roots {
                webpki,
                trusted_leaves,
            }
        };
        Ok(FtpsVerifier { trust, algorithms })
    }
}

fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::Config(format!("cannot read CA file {}: {e}", path.display()))
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))?;
    iter.collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))
}

impl ServerCertVerifier for FtpsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Anything => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(pin) => {
                let digest = ::ring::digest::digest(&::ring::digest::SHA256, end_entity);
                if digest.as_ref() == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rejected(CertificateFailure::PinMismatch, end_entity))
                }
            }
            Trust::Roots {
                webpki,
                trusted_leaves,
            } => {
                let verdict = webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
                match verdict {
                    Ok(ok) => Ok(ok),
                    Err(err)
                        if trusted_leaves
                            .iter()
                            .any(|c| c.as_ref() == end_entity.as_ref()) =>
                    {
                        // Trusted as itself; the host name must still match.
                        check_name(end_entity, server_name).map_err(|_| err)?;
                        Ok(ServerCertVerified::assertion())
                    }
                    Err(rustls::Error::InvalidCertificate(reason)) => {
                        Err(rejected(CertificateFailure::Webpki(reason), end_entity))
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn check_name(cert: &CertificateDer<'_>, name: &ServerName<'_>) -> std::result::Result<(), ()> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|_| ())?;
    parsed
        .verify_is_valid_for_subject_name(name)
        .map_err(|_| ())
}

/// Why a certificate was refused, carried through rustls to our error message
/// together with the certificate's fingerprint, so the user can pin it.
#[derive(Debug)]
enum CertificateFailure {
    Webpki(CertificateError),
    PinMismatch,
}

#[derive(Debug)]
struct Rejected {
    failure: CertificateFailure,
    fingerprint: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = match &self.failure {
            CertificateFailure::PinMismatch => {
                "server certificate does not match --pin-sha256".to_string()
            }
            CertificateFailure::Webpki(e) => describe_certificate_error(e),
        };
        write!(
            f,
            "{reason} (server certificate SHA-256 {})",
            self.fingerprint
        )
    }
}

impl std::error::Error for Rejected {}

fn rejected(failure: CertificateFailure, cert: &CertificateDer<'_>) -> rustls::Error {
    let inner = Rejected {
        failure,
        fingerprint: fingerprint(cert),
    };
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(inner))))
}

fn describe_certificate_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => "certificate issued by an unknown authority: give the server's CA with --ca-file, or pin it with --pin-sha256".into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let detail = match e {
                CertificateError::NotValidForNameContext { expected, presented } => {
                    format!(": expected {expected:?}, certificate is for {}", presented.join(", "))
                }
                _ => String::new(),
            };
            format!("certificate is not valid for the host name (name mismatch){detail}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "certificate has expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "certificate is not valid yet (check the clock)".into(),
        CertificateError::Revoked => "certificate has been revoked".into(),
        CertificateError::BadSignature => "certificate signature is invalid".into(),
        CertificateError::Other(other) => {
            let text = other.to_string();
            if text.contains("CaUsedAsEndEntity") {
                "the server presents a CA certificate as its own; pass exactly that certificate with --ca-file to trust it".into()
            } else {
                format!("certificate refused: {text}")
            }
        }
        other => format!("certificate refused: {other:?}"),
    }
}

/// Words for a TLS failure, used by `Error` for everything rustls reports.
pub fn describe_tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<Rejected>() {
                Some(rejected) => rejected.to_string(),
                None => describe_certificate_error(&CertificateError::Other(other.clone())),
            }
        }
        rustls::Error::InvalidCertificate(reason) => describe_certificate_error(reason),
        rustls::Error::AlertReceived(alert) => describe_alert(*alert),
        rustls::Error::PeerIncompatible(why) => {
            format!("no TLS version or cipher in common with the server ({why:?})")
        }
        other => other.to_string(),
    }
}

/// A TLS alert from the server. The certificate alerts can only be about
/// the client's certificate (the client judges the server's), and with
/// TLS 1.3 they arrive after the client thinks the handshake is over, at the
/// first read: they are named as what they are, not as a dropped connection.
fn describe_alert(alert: AlertDescription) -> String {
    let name = alert_name(alert);
    match alert {
        AlertDescription::CertificateRequired => format!(
            "the server requires a client certificate (TLS alert: {name}): give one with --client-cert"
        ),
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::NoCertificate => format!(
            "the server refused the client certificate (TLS alert: {name}): check --client-cert / the server's CA"
        ),
        // What a TLS 1.2 server sends when it requires a certificate and got
        // none, as well as when nothing the client offers suits it.
        AlertDescription::HandshakeFailure => format!(
            "the server broke off the TLS handshake (TLS alert: {name}): it may require a client certificate (--client-cert), or accept no TLS version or cipher that ftpsfs offers"
        ),
        _ => format!("the server sent TLS alert: {name}"),
    }
}

/// `UnknownCA` → `unknown CA`, `CertificateRequired` → `certificate required`.
fn alert_name(alert: AlertDescription) -> String {
    let debug = format!("{alert:?}");
    let mut words: Vec<String> = Vec::new();
    let mut previous_lower = false;
    for c in debug.chars() {
        if c.is_ascii_uppercase() && previous_lower || words.is_empty() {
            words.push(String::new());
        }
        previous_lower = c.is_ascii_lowercase();
        if let Some(word) = words.last_mut() {
            word.push(c);
        }
    }
    words
        .iter()
        .map(|word| {
            if word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase()) {
                word.clone()
            } else {
                word.to_ascii_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_store_keeps_what_it_is_given() {
        let store = SessionStore::new();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        store.set_kx_hint(name.clone(), rustls::NamedGroup::X25519);
        assert_eq!(store.kx_hint(&name), Some(rustls::NamedGroup::X25519));
    }

    /// A TLS 1.3 server like ProFTPD: two tickets after a full handshake,
    /// none after a resumed one. The store counts them in and out, so the
    /// session knows before its third data connection that it cannot resume.
    #[test]
    fn session_store_counts_tls13_tickets_in_and_out() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        server.send_tls13_tickets = 2;
        let full_handshake_server = Arc::new(server.clone());
        server.send_tls13_tickets = 0;
        let resuming_server = Arc::new(server);

        let base = client_config(&TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        })
        .unwrap();
        let (client, store) = for_session(&base);
        let connect = |server: &Arc<rustls::ServerConfig>| {
            let name = ServerName::try_from("localhost").unwrap();
            let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
            let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
            shuttle(&mut c, &mut s);
            c.handshake_kind()
        };
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(connect(&full_handshake_server), Some(Full));
        assert_eq!(store.tls13_tickets(), 2);
        assert_eq!(connect(&resuming_server), Some(Resumed));
        assert_eq!(store.tls13_tickets(), 1);
        assert_eq!(connect(&resuming_server), Some(Resumed));
        assert_eq!(store.tls13_tickets(), 0);
        assert_eq!(connect(&resuming_server), Some(Full), "no ticket left");
    }

    /// A server that requires a client certificate of its CA, as vsftpd
    /// with `require_cert` does: every connection of a session (control,
    /// then data) presents the certificate, and the data connections resume
    /// the control connection's session, with TLS 1.3 and with TLS 1.2.
    #[test]
    fn a_client_certificate_goes_on_every_connection_and_sessions_resume() {
        use rustls::server::WebPkiClientVerifier;
        let provider = Arc::new(ring::default_provider());
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client_cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&server_key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();

        let dir = std::env::temp_dir().join(format!("ftpsfs-tls-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let both = dir.join("client.pem");
        std::fs::write(&both, client_cert.pem() + &client_key.serialize_pem()).unwrap();
        let identity = crate::ftp::identity::load(&both, None).unwrap().identity;
        let _ = std::fs::remove_dir_all(&dir);

        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = Arc::new(
                rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_client_cert_verifier(client_verifier.clone())
                    .with_single_cert(
                        vec![server_cert.der().clone()],
                        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
                    )
                    .unwrap(),
            );
            let base = client_config(&TlsOptions {
                insecure: true,
                client_identity: Some(identity.clone()),
                ..TlsOptions::default()
            })
            .unwrap();
            let (session, _store) = for_session(&base);
            let connect = || {
                let name = ServerName::try_from("localhost").unwrap();
                let mut c = rustls::ClientConnection::new(session.clone(), name).unwrap();
                let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
                shuttle(&mut c, &mut s);
                let presented = s.peer_certificates().map(|certs| certs[0].clone());
                (c.handshake_kind(), presented)
            };
            use rustls::HandshakeKind::{Full, Resumed};
            let ours = Some(client_cert.der().clone());
            assert_eq!(connect(), (Some(Full), ours.clone()), "{version:?} control");
            for _ in 0..2 {
                assert_eq!(connect(), (Some(Resumed), ours.clone()), "{version:?} data");
            }
        }
    }

    /// Moves TLS bytes between an in-memory client and server until
    /// neither has any to send: the handshake is over and the client has
    /// read what the server sends after it (TLS 1.3 tickets).
    fn shuttle(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection) {
        loop {
            let mut moved = 0;
            let mut buf = Vec::new();
            moved += c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            buf.clear();
            moved += s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if moved == 0 && !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
        }
    }

    #[test]
    fn fingerprint_format() {
        let fp = fingerprint(b"abc");
        assert!(fp.starts_with("BA:78:16:BF:"));
        assert_eq!(fp.len(), 32 * 3 - 1);
    }

    #[test]
    fn errors_name_the_reason() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(describe_tls_error(&unknown).contains("unknown authority"));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(describe_tls_error(&expired).contains("expired"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(describe_tls_error(&name).contains("name mismatch"));
        let pinned = rejected(
            CertificateFailure::PinMismatch,
            &CertificateDer::from(vec![1, 2, 3]),
        );
        let text = describe_tls_error(&pinned);
        assert!(
            text.contains("--pin-sha256") && text.contains("SHA-256 "),
            "{text}"
        );
    }

    #[test]
    fn certificate_alerts_name_the_client_certificate() {
        let text = |alert| describe_tls_error(&rustls::Error::AlertReceived(alert));
        assert_eq!(
            text(AlertDescription::UnknownCA),
            "the server refused the client certificate (TLS alert: unknown CA): check --client-cert / the server's CA"
        );
        assert_eq!(
            text(AlertDescription::BadCertificate),
            "the server refused the client certificate (TLS alert: bad certificate): check --client-cert / the server's CA"
        );
        assert_eq!(
            text(AlertDescription::CertificateRequired),
            "the server requires a client certificate (TLS alert: certificate required): give one with --client-cert"
        );
        assert!(text(AlertDescription::HandshakeFailure).contains("--client-cert"));
        assert_eq!(
            text(AlertDescription::ProtocolVersion),
            "the server sent TLS alert: protocol version"
        );
    }

    /// The alert that ends a refused TLS 1.3 client certificate comes after
    /// the handshake; it reaches the user as the certificate's refusal, and
    /// as permanent (no reconnecting with the same certificate).
    #[test]
    fn an_alert_at_the_first_read_is_a_permanent_tls_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateUnknown),
        );
        let err = Error::io(
            "reading the reply to USER",
            io,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(err.kind(), crate::ftp::Kind::Tls);
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains(
                "the server refused the client certificate (TLS alert: certificate unknown)"
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_ca_file_is_a_config_error() {
        let options = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = client_config(&options)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("cannot read CA file /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
