//! Digests of file contents: the algorithms FTP servers compute for a file
//! (`HASH`, `XSHA256`, `XSHA1`, `XMD5`, `XCRC`), and computing the same ones
//! here, so that an upload can be checked against what the server holds.
//!
//! Shared vocabulary of the protocol client (which asks the server) and the
//! store and core (which compare), so it sits beside them rather than in
//! either. SHA-256 and SHA-1 come from ring (already in the product for
//! TLS); CRC-32 (IEEE, as ZIP and `XCRC` use it) is a table here. MD5 is
//! named, so a server's offer of it can be read and shown, but it is not
//! computed locally: no MD5 is in the product's dependencies, and a server
//! that offers MD5 offers SHA-1 or CRC-32 too in practice.
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Sha256,
    Sha1,
    Md5,
    Crc32,
}

impl DigestAlgorithm {
    /// Strongest first.
    pub const ALL: [DigestAlgorithm; 4] = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha1,
        DigestAlgorithm::Md5,
        DigestAlgorithm::Crc32,
    ];

    /// The IANA "Hash Function Textual Name" that `HASH` and `OPTS HASH` use.
    pub fn hash_name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha1 => "SHA-1",
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Crc32 => "CRC32",
        }
    }

    /// The algorithm of a `HASH` name, case-insensitively.
    pub fn from_hash_name(name: &str) -> Option<DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.hash_name().eq_ignore_ascii_case(name))
    }

    /// The older command that computes it: `XSHA256 path [start end]`.
    pub fn x_command(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "XSHA256",
            DigestAlgorithm::Sha1 => "XSHA1",
            DigestAlgorithm::Md5 => "XMD5",
            DigestAlgorithm::Crc32 => "XCRC",
        }
    }

    pub fn from_x_command(verb: &str) -> Option<DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .find(|a| a.x_command().eq_ignore_ascii_case(verb))
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 32,
            DigestAlgorithm::Sha1 => 20,
            DigestAlgorithm::Md5 => 16,
            DigestAlgorithm::Crc32 => 4,
        }
    }

    /// Whether `hasher` can compute it here (all but MD5).
    pub fn is_local(self) -> bool {
        self != DigestAlgorithm::Md5
    }

    /// An incremental hasher, for computing the digest while sending; `None`
    /// for MD5 (see the module's comment).
    pub fn hasher(self) -> Option<Hasher> {
        let state = match self {
            DigestAlgorithm::Sha256 => {
                State::Ring(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
            }
            DigestAlgorithm::Sha1 => State::Ring(Box::new(ring::digest::Context::new(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            ))),
            DigestAlgorithm::Crc32 => State::Crc32(!0),
            DigestAlgorithm::Md5 => return None,
        };
        Some(Hasher {
            algorithm: self,
            state,
        })
    }

    /// The digest of `data` in one go; `None` for MD5.
    pub fn digest(self, data: &[u8]) -> Option<Vec<u8>> {
        let mut hasher = self.hasher()?;
        hasher.update(data);
        Some(hasher.finish())
    }

    fn bit(self) -> u8 {
        match self {
            DigestAlgorithm::Sha256 => 1,
            DigestAlgorithm::Sha1 => 2,
            DigestAlgorithm::Md5 => 4,
            DigestAlgorithm::Crc32 => 8,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash_name())
    }
}

/// A set of algorithms (what a server offers), small and `Copy` so that
/// `Capabilities` stays `Copy`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DigestSet(u8);

impl DigestSet {
    pub const EMPTY: DigestSet = DigestSet(0);

    pub fn of(algorithms: &[DigestAlgorithm]) -> DigestSet {
        algorithms
            .iter()
            .fold(DigestSet::EMPTY, |set, &a| set.with(a))
    }

    pub fn with(self, algorithm: DigestAlgorithm) -> DigestSet {
        DigestSet(self.0 | algorithm.bit())
    }

    pub fn insert(&mut self, algorithm: DigestAlgorithm) {
        *self = self.with(algorithm);
    }

    pub fn union(self, other: DigestSet) -> DigestSet {
        DigestSet(self.0 | other.0)
    }

    pub fn contains(self, algorithm: DigestAlgorithm) -> bool {
        self.0 & algorithm.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Strongest first.
    pub fn iter(self) -> impl Iterator<Item = DigestAlgorithm> {
        DigestAlgorithm::ALL
            .into_iter()
            .filter(move |&a| self.contains(a))
    }

    /// The strongest algorithm of the set that can also be computed here:
    /// what to check an upload with.
    pub fn best_local(self) -> Option<DigestAlgorithm> {
        self.iter().find(|a| a.is_local())
    }
}

impl fmt::Debug for DigestSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Computes a digest over data given in pieces.
pub struct Hasher {
    algorithm: DigestAlgorithm,
    state: State,
}

enum State {
    Ring(Box<ring::digest::Context>),
    /// The running CRC, inverted (as the algorithm keeps it).
    Crc32(u32),
}

impl Hasher {
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Ring(context) => context.update(data),
            State::Crc32(crc) => *crc = crc32_update(*crc, data),
        }
    }

    /// The digest's bytes (a CRC-32 big-endian, as its hex form reads).
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            State::Ring(context) => context.finish().as_ref().to_vec(),
            State::Crc32(crc) => (!crc).to_be_bytes().to_vec(),
        }
    }
}

/// Lowercase hex of bytes, for messages and commands.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string (either case); `None` for anything else, an odd
/// length included.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() & 1 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), byte-wise table.
const CRC32_TABLE: [u32; 256] = crc32_table();

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = CRC32_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(algorithm: DigestAlgorithm, data: &[u8]) -> String {
        to_hex(&algorithm.digest(data).unwrap())
    }

    #[test]
    fn known_answers() {
        // FIPS 180 and the CRC catalogue's check value ("123456789").
        assert_eq!(
            hex_of(DigestAlgorithm::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex_of(DigestAlgorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex_of(DigestAlgorithm::Crc32, b"123456789"), "cbf43926");
        assert_eq!(hex_of(DigestAlgorithm::Crc32, b""), "00000000");
        assert!(DigestAlgorithm::Md5.hasher().is_none());
        for a in DigestAlgorithm::ALL.into_iter().filter(|a| a.is_local()) {
            assert_eq!(a.digest(b"x").unwrap().len(), a.digest_len(), "{a}");
        }
    }

    #[test]
    fn pieces_give_the_same_digest_as_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for algorithm in [
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha1,
            DigestAlgorithm::Crc32,
        ] {
            let whole = algorithm.digest(&data).unwrap();
            for split in [0, 1, 63, 64, 65, 4097, data.len()] {
                let mut hasher = algorithm.hasher().unwrap();
                hasher.update(&data[..split]);
                hasher.update(&[]);
                hasher.update(&data[split..]);
                assert_eq!(hasher.finish(), whole, "{algorithm} split at {split}");
            }
        }
    }

    #[test]
    fn names() {
        for a in DigestAlgorithm::ALL {
            assert_eq!(DigestAlgorithm::from_hash_name(a.hash_name()), Some(a));
            assert_eq!(DigestAlgorithm::from_x_command(a.x_command()), Some(a));
        }
        assert_eq!(
            DigestAlgorithm::from_hash_name("sha-256"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(DigestAlgorithm::from_hash_name("SHA-512"), None);
        assert_eq!(DigestAlgorithm::from_hash_name("SHA256"), None);
        assert_eq!(
            DigestAlgorithm::from_x_command("xcrc"),
            Some(DigestAlgorithm::Crc32)
        );
    }

    #[test]
    fn sets() {
        let set = DigestSet::of(&[DigestAlgorithm::Crc32, DigestAlgorithm::Md5]);
        assert!(set.contains(DigestAlgorithm::Md5) && !set.contains(DigestAlgorithm::Sha1));
        assert_eq!(set.best_local(), Some(DigestAlgorithm::Crc32));
        assert_eq!(
            set.with(DigestAlgorithm::Sha1).best_local(),
            Some(DigestAlgorithm::Sha1)
        );
        assert_eq!(DigestSet::of(&[DigestAlgorithm::Md5]).best_local(), None);
        assert!(DigestSet::EMPTY.is_empty() && DigestSet::default().is_empty());
        assert_eq!(format!("{set:?}"), "{Md5, Crc32}");
        let all = DigestSet::of(&DigestAlgorithm::ALL);
        assert_eq!(all.iter().collect::<Vec<_>>(), DigestAlgorithm::ALL);
        assert_eq!(set.union(all), all);
    }

    #[test]
    fn hex() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00AB10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(from_hex(""), Some(vec![]));
        for bad in ["0", "0g", "+1", " 0a", "0a ", "0x0a"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }
}
