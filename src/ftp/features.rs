//! The server's FEAT reply, read into the capabilities the client relies on.
//! Nothing is assumed: vsftpd 3.0.3, for one, offers no MLSD, MFMT or UTF8.
use super::reply::Reply;
use crate::digest::{DigestAlgorithm, DigestSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlsd: bool,
    pub mfmt: bool,
    pub mdtm: bool,
    pub size: bool,
    pub rest_stream: bool,
    pub utf8: bool,
    pub epsv: bool,
    /// Algorithms of `HASH` (draft-bryan-ftpext-hash), from `HASH
    /// SHA-256;SHA-1*;MD5`; names we do not know are left out.
    pub hash: DigestSet,
    /// The `HASH` algorithm the server has selected (marked `*`).
    pub hash_selected: Option<DigestAlgorithm>,
    /// Algorithms of the older commands offered: `XSHA256`, `XSHA1`, `XMD5`,
    /// `XCRC`.
    pub x_digests: DigestSet,
    /// `RANG STREAM` (draft-bryan-ftp-range): a byte range for the next
    /// transfer or `HASH`.
    pub rang: bool,
    /// Every feature line as the server sent it, for diagnostics.
    pub raw: Vec<String>,
}

impl Features {
    /// Reads a FEAT reply. A server that answers FEAT with an error (500/502)
    /// has no extensions: the caller passes `None`.
    pub fn from_reply(reply: Option<&Reply>) -> Features {
        let mut features = Features::default();
        let Some(reply) = reply.filter(|r| r.is_success()) else {
            return features;
        };
        for line in reply.inner_lines() {
            let text = String::from_utf8_lossy(line).trim().to_string();
            let name = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let args = text[name.len().min(text.len())..]
                .trim()
                .to_ascii_uppercase();
            match name.as_str() {
                "MLST" | "MLSD" => features.mlsd = true,
                "MFMT" => features.mfmt = true,
                "MDTM" => features.mdtm = true,
                "SIZE" => features.size = true,
                "REST" if args.contains("STREAM") => features.rest_stream = true,
                "UTF8" => features.utf8 = true,
                "EPSV" => features.epsv = true,
                "HASH" => {
                    for item in args.split(';').map(str::trim) {
                        let (name, selected) = match item.strip_suffix('*') {
                            Some(name) => (name, true),
                            None => (item, false),
                        };
                        if let Some(algorithm) = DigestAlgorithm::from_hash_name(name) {
                            features.hash.insert(algorithm);
                            if selected {
                                features.hash_selected = Some(algorithm);
                            }
                        }
                    }
                }
                "RANG" if args.contains("STREAM") => features.rang = true,
                verb => {
                    if let Some(algorithm) = DigestAlgorithm::from_x_command(verb) {
                        features.x_digests.insert(algorithm);
                    }
                }
            }
            if !text.is_empty() {
                features.raw.push(text);
            }
        }
        features
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::reply::parse_reply;

    fn feat(text: &[u8]) -> Features {
        let (reply, _) = parse_reply(text).unwrap().unwrap();
        Features::from_reply(Some(&reply))
    }

    #[test]
    fn vsftpd_3_0_3() {
        let f = feat(b"211-Features:\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n211 End\r\n");
        assert!(f.epsv && f.mdtm && f.size && f.rest_stream);
        assert!(!f.mlsd && !f.mfmt && !f.utf8);
    }

    #[test]
    fn proftpd_with_mlst_facts() {
        let f = feat(b"211-Features:\r\n MFMT\r\n MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.mode*;UNIX.owner*;\r\n UTF8\r\n rest stream\r\n211 End\r\n");
        assert!(f.mlsd && f.mfmt && f.utf8 && f.rest_stream);
    }

    #[test]
    fn vsftpd_has_no_digests() {
        let f = feat(b"211-Features:\r\n EPSV\r\n REST STREAM\r\n SIZE\r\n211 End\r\n");
        assert!(f.hash.is_empty() && f.x_digests.is_empty() && !f.rang);
        assert_eq!(f.hash_selected, None);
    }

    #[test]
    fn proftpd_with_mod_digest() {
        let f = feat(b"211-Features:\r\n HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;\r\n MD5\r\n RANG STREAM\r\n REST STREAM\r\n XCRC\r\n XMD5\r\n XSHA\r\n XSHA1\r\n XSHA256\r\n XSHA512\r\n211 End\r\n");
        assert_eq!(f.hash, DigestSet::of(&DigestAlgorithm::ALL));
        assert_eq!(f.hash_selected, Some(DigestAlgorithm::Sha1));
        assert_eq!(f.x_digests, DigestSet::of(&DigestAlgorithm::ALL));
        assert!(f.rang && f.rest_stream);
    }

    #[test]
    fn hash_lists_as_the_draft_writes_them() {
        let f = feat(b"211-Extensions supported:\r\n HASH SHA-256*;sha-1;WHIRLPOOL;;MD5\r\n XSHA256\r\n211 END\r\n");
        assert_eq!(
            f.hash,
            DigestSet::of(&[
                DigestAlgorithm::Sha256,
                DigestAlgorithm::Sha1,
                DigestAlgorithm::Md5
            ])
        );
        assert_eq!(f.hash_selected, Some(DigestAlgorithm::Sha256));
        assert_eq!(f.x_digests, DigestSet::of(&[DigestAlgorithm::Sha256]));
        let f = feat(b"211-Features:\r\n RANG\r\n HASHES\r\n211 End\r\n");
        assert!(
            !f.rang && f.hash.is_empty(),
            "RANG without STREAM, not HASH"
        );
    }

    #[test]
    fn refused_feat_means_no_features() {
        assert_eq!(Features::from_reply(None), Features::default());
        let (reply, _) = parse_reply(b"500 Unknown command\r\n").unwrap().unwrap();
        assert_eq!(Features::from_reply(Some(&reply)), Features::default());
    }
}
