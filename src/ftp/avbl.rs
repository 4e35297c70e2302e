//! Free space as the server tells it: `AVBL` from the streamlined FTP command
//! extensions draft (draft-peterson-streamlined-ftp-command-extensions),
//! answered `213 <bytes>`. None of the servers ftpsfs is tested against
//! offers it (vsftpd, ProFTPD, Pure-FTPd, pyftpdlib and libunftp answer
//! 500), so the answer decides per server whether to ask again.
use super::reply::Reply;

/// What an AVBL reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Available {
    /// Bytes free for this user.
    Bytes(u64),
    /// The server does not offer AVBL (a permanent negative reply): not
    /// asked again.
    NotOffered(String),
    /// Anything else: a transient refusal, or a 213 whose text is not a
    /// plain number. Shown in the debug log; asked again later.
    Unreadable(String),
}

impl Available {
    pub fn from_reply(reply: &Reply) -> Available {
        let shown = format!("{} {}", reply.code, reply.text());
        match reply.code {
            213 => {
                let text = String::from_utf8_lossy(reply.first_line());
                let number = text.trim();
                if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(bytes) = number.parse() {
                        return Available::Bytes(bytes);
                    }
                }
                Available::Unreadable(shown)
            }
            500..=599 => Available::NotOffered(shown),
            _ => Available::Unreadable(shown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::reply::parse_reply;

    fn answer(text: &str) -> Available {
        let raw = format!("{text}\r\n");
        let (reply, _) = parse_reply(raw.as_bytes()).unwrap().unwrap();
        Available::from_reply(&reply)
    }

    #[test]
    fn replies() {
        assert_eq!(answer("213 1073741824"), Available::Bytes(1 << 30));
        assert_eq!(answer("213 0"), Available::Bytes(0));
        assert_eq!(answer("213  42 "), Available::Bytes(42));
        for garbage in [
            "213 lots",
            "213 -5",
            "213 1.5e9",
            "213 ",
            "213 99999999999999999999999",
        ] {
            assert!(
                matches!(answer(garbage), Available::Unreadable(_)),
                "{garbage}"
            );
        }
        assert!(matches!(
            answer("500 AVBL not understood"),
            Available::NotOffered(_)
        ));
        assert!(matches!(answer("502 no"), Available::NotOffered(_)));
        assert!(matches!(
            answer("550 no quota info"),
            Available::NotOffered(_)
        ));
        assert!(matches!(answer("421 bye"), Available::Unreadable(_)));
        assert!(matches!(answer("200 what"), Available::Unreadable(_)));
    }
}
