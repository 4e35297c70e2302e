//! The server's FEAT reply, read into the capabilities the client relies on.
//! Nothing is assumed: vsftpd 3.0.3, for one, offers no MLSD, MFMT or UTF8.
use super::reply::Reply;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlsd: bool,
    pub mfmt: bool,
    pub mdtm: bool,
    pub size: bool,
    pub rest_stream: bool,
    pub utf8: bool,
    pub epsv: bool,
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
                _ => {}
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
    fn refused_feat_means_no_features() {
        assert_eq!(Features::from_reply(None), Features::default());
        let (reply, _) = parse_reply(b"500 Unknown command\r\n").unwrap().unwrap();
        assert_eq!(Features::from_reply(Some(&reply)), Features::default());
    }
}
