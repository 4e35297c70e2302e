//! The client certificate of mutual TLS (`--client-cert`, `--client-key`).
//!
//! Both files are read once, at start, and checked before anything connects:
//! a key that is encrypted, of a kind rustls cannot sign with, or not the
//! certificate's own would otherwise surface as a handshake failure far from
//! its cause. The result is one `Arc<CertifiedKey>` that `tls::client_config`
//! hands to every connection (control and data) through the configuration
//! a session's connections share, so that data connections still resume
//! their control connection's TLS session. Messages name the file; none
//! contains a byte of the key.
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};

/// A certificate chain and its private key, ready to present.
#[derive(Clone)]
pub struct ClientIdentity {
    cert_file: PathBuf,
    key: Arc<CertifiedKey>,
}

/// What `load` found, and what the user should hear about it on every start.
#[derive(Debug)]
pub struct Loaded {
    pub identity: ClientIdentity,
    pub warnings: Vec<String>,
}

impl ClientIdentity {
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.key)
    }

    /// The SHA-256 of the client's own certificate, as the server's admin
    /// sees it in their logs.
    pub fn fingerprint(&self) -> String {
        self.key
            .cert
            .first()
            .map(|cert| super::tls::fingerprint(cert))
            .unwrap_or_default()
    }
}

/// Never the key: the file it came from and the certificate's fingerprint.
impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// Reads the certificate chain from `cert_file` and the key from `key_file`,
/// or from `cert_file` too when no key file is given. The error is one line
/// naming the file and what is wrong with it.
pub fn load(cert_file: &Path, key_file: Option<&Path>) -> Result<Loaded, String> {
    let cert_pem = std::fs::read(cert_file).map_err(|e| {
        format!(
            "cannot read client certificate file {}: {e}",
            cert_file.display()
        )
    })?;
    let chain = certificates(&cert_pem, cert_file)?;
    let (key_file, key_pem) = match key_file {
        Some(path) if path != cert_file => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read client key file {}: {e}", path.display()))?;
            (path, pem)
        }
        _ => (cert_file, cert_pem),
    };
    let key = private_key(&key_pem, key_file, key_file == cert_file)?;
    drop(key_pem);
    let provider = ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            format!(
                "the client key in {} cannot be used ({}): ftpsfs signs with RSA, ECDSA P-256/P-384 or Ed25519 keys",
                key_file.display(),
                describe_key_error(&e)
            )
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key that cannot tell its public half is used as it is.
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "the client key in {} does not match the certificate in {} (the first certificate in the file must be the client's own)",
                key_file.display(),
                cert_file.display()
            ))
        }
        Err(e) => {
            return Err(format!(
                "the client certificate in {} cannot be parsed: {e}",
                cert_file.display()
            ))
        }
    }
    Ok(Loaded {
        identity: ClientIdentity {
            cert_file: cert_file.to_path_buf(),
            key: Arc::new(certified),
        },
        warnings: key_file_warnings(key_file),
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = sections(pem, path, "client certificate file")?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect::<Vec<_>>();
    if chain.is_empty() {
        return Err(format!(
            "no certificate in client certificate file {} (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(chain)
}

fn private_key(
    pem: &[u8],
    path: &Path,
    in_cert_file: bool,
) -> Result<PrivateKeyDer<'static>, String> {
    let what = if in_cert_file {
        "client certificate file"
    } else {
        "client key file"
    };
    if is_encrypted(pem) {
        return Err(format!(
            "the client key in {} is encrypted, and ftpsfs cannot ask for its passphrase: decrypt it first, e.g. openssl pkey -in {} -out client-decrypted.key (then chmod 600 it)",
            path.display(),
            path.display()
        ));
    }
    let key = sections(pem, path, what)?
        .into_iter()
        .find_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der));
    key.ok_or_else(|| {
        if in_cert_file {
            format!(
                "no private key in client certificate file {}: give the key file with --client-key",
                path.display()
            )
        } else {
            format!(
                "no private key in client key file {} (expected PEM: -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
                path.display()
            )
        }
    })
}

/// Every PEM section of a file, in order. Sections of kinds that rustls does
/// not know (`ENCRYPTED PRIVATE KEY`, `DH PARAMETERS`) are left out.
fn sections(pem: &[u8], path: &Path, what: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, String> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            // The parser quotes only section markers, never their contents.
            format!("{what} {} is not valid PEM: {e}", path.display())
        })
}

/// PKCS#8 (`openssl pkey -aes256`) or the traditional OpenSSL form
/// (`Proc-Type: 4,ENCRYPTED` in an `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
fn is_encrypted(pem: &[u8]) -> bool {
    let contains = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

fn describe_key_error(e: &TlsError) -> String {
    match e {
        TlsError::General(text) => text.clone(),
        other => other.to_string(),
    }
}

/// As ssh does for its keys: a private key others can read is no secret.
/// A warning, not an error: the key is still the user's to use.
fn key_file_warnings(key_file: &Path) -> Vec<String> {
    let Ok(metadata) = std::fs::metadata(key_file) else {
        return Vec::new();
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Vec::new();
    }
    vec![format!(
        "the client key file {} is accessible by others (mode {mode:03o}); run chmod 600 on it",
        key_file.display()
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory of the test's own, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ftpsfs-identity-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A certificate (PEM) and its PKCS#8 key (PEM), made by rcgen.
    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/client-keys")
            .join(name)
    }

    fn error(cert: &Path, key: Option<&Path>) -> String {
        let text = load(cert, key).map(|_| ()).expect_err("refused");
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(!text.contains("PRIVATE KEY-----\n"), "no key: {text}");
        text
    }

    #[test]
    fn a_certificate_and_its_key_in_two_files() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let cert = dir.file("c.pem", &cert, 0o644);
        let key = dir.file("k.pem", &key, 0o600);
        let loaded = load(&cert, Some(&key)).unwrap();
        assert_eq!(loaded.warnings, Vec::<String>::new());
        assert_eq!(loaded.identity.certified_key().cert.len(), 1);
    }

    #[test]
    fn the_key_defaults_to_the_certificate_file() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let both = dir.file("both.pem", &format!("{key}{cert}"), 0o600);
        assert!(load(&both, None).is_ok());
        assert!(load(&both, Some(&both)).is_ok());
        let only_cert = dir.file("c.pem", &cert, 0o644);
        assert_eq!(
            error(&only_cert, None),
            format!(
                "no private key in client certificate file {}: give the key file with --client-key",
                only_cert.display()
            )
        );
    }

    #[test]
    fn a_chain_keeps_its_order() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let (other, _) = pair();
        let chain = dir.file("chain.pem", &format!("{cert}{other}"), 0o644);
        let key = dir.file("k.pem", &key, 0o600);
        let loaded = load(&chain, Some(&key)).unwrap();
        assert_eq!(loaded.identity.certified_key().cert.len(), 2);
    }

    #[test]
    fn pkcs1_rsa_and_sec1_ec_keys() {
        for (cert, key) in [("rsa.pem", "rsa-pkcs1.key"), ("ec.pem", "ec-sec1.key")] {
            let loaded = load(&fixture(cert), Some(&fixture(key)));
            assert!(loaded.is_ok(), "{key}: {:?}", loaded.err());
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_at_start() {
        let text = error(&fixture("rsa.pem"), Some(&fixture("ec-sec1.key")));
        assert_eq!(
            text,
            format!(
                "the client key in {} does not match the certificate in {} (the first certificate in the file must be the client's own)",
                fixture("ec-sec1.key").display(),
                fixture("rsa.pem").display()
            )
        );
        let dir = Dir::new();
        let (cert, _) = pair();
        let (_, other_key) = pair();
        let cert = dir.file("c.pem", &cert, 0o644);
        let key = dir.file("k.pem", &other_key, 0o600);
        assert!(error(&cert, Some(&key)).contains("does not match the certificate"));
    }

    #[test]
    fn an_encrypted_key_says_to_decrypt_it() {
        for name in ["ec-pkcs8-encrypted.key", "rsa-pkcs1-encrypted.key"] {
            let key = fixture(name);
            let cert = if name.starts_with("ec") {
                "ec.pem"
            } else {
                "rsa.pem"
            };
            assert_eq!(
                error(&fixture(cert), Some(&key)),
                format!(
                    "the client key in {} is encrypted, and ftpsfs cannot ask for its passphrase: decrypt it first, e.g. openssl pkey -in {} -out client-decrypted.key (then chmod 600 it)",
                    key.display(),
                    key.display()
                ),
            );
        }
    }

    #[test]
    fn files_without_what_they_should_hold() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let key_file = dir.file("k.pem", &key, 0o600);
        let cert_file = dir.file("c.pem", &cert, 0o644);
        let empty = dir.file("empty.pem", "", 0o600);
        assert_eq!(
            error(&key_file, Some(&key_file)),
            format!(
                "no certificate in client certificate file {} (expected PEM: -----BEGIN CERTIFICATE-----)",
                key_file.display()
            )
        );
        assert_eq!(
            error(&cert_file, Some(&empty)),
            format!(
                "no private key in client key file {} (expected PEM: -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
                empty.display()
            )
        );
        let broken = dir.file(
            "broken.pem",
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n",
            0o600,
        );
        let text = error(&cert_file, Some(&broken));
        assert!(
            text.starts_with(&format!(
                "client key file {} is not valid PEM",
                broken.display()
            )),
            "{text}"
        );
        assert!(!text.contains("MIGHAgEA"), "no key material: {text}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = Dir::new();
        let (cert, _) = pair();
        let cert = dir.file("c.pem", &cert, 0o644);
        let missing = dir.0.join("missing.pem");
        assert!(error(&missing, None).starts_with(&format!(
            "cannot read client certificate file {}: ",
            missing.display()
        )));
        assert!(error(&cert, Some(&missing)).starts_with(&format!(
            "cannot read client key file {}: ",
            missing.display()
        )));
    }

    #[test]
    fn a_key_others_can_read_is_warned_about_as_ssh_does() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let cert = dir.file("c.pem", &cert, 0o644);
        for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o644, true)] {
            let key = dir.file(&format!("k{mode:o}.pem"), &key, mode);
            let loaded = load(&cert, Some(&key)).unwrap();
            let expected = format!(
                "the client key file {} is accessible by others (mode {mode:03o}); run chmod 600 on it",
                key.display()
            );
            assert_eq!(loaded.warnings.contains(&expected), warned, "{mode:o}");
            assert_eq!(loaded.warnings.len(), usize::from(warned));
        }
    }

    #[test]
    fn debug_output_shows_no_key() {
        let dir = Dir::new();
        let (cert, key) = pair();
        let both = dir.file("both.pem", &format!("{cert}{key}"), 0o600);
        let loaded = load(&both, None).unwrap();
        let shown = format!("{:?}", loaded);
        let body: String = key.lines().nth(1).unwrap().chars().take(24).collect();
        assert!(!shown.contains(&body), "{shown}");
        assert!(shown.contains("sha256"), "{shown}");
    }
}
