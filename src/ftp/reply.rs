//! FTP replies (RFC 959 §4.2), parsed from bytes without any I/O.
//!
//! A reply is one line `xyz text`, or several: `xyz-text` ... `xyz text`, where
//! lines in between may say anything (even start with other digits). The parser
//! is given the bytes received so far and says "need more", "here is a reply and
//! how many bytes it used", or "this is not FTP" — the last also for replies that
//! grow past a bound, so a hostile server cannot make us buffer without end.

/// Longest line accepted. Real servers send lines of a few hundred bytes; MLST
/// facts with a long path are the longest legitimate ones.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest whole reply (a FEAT or a banner of many lines).
pub const MAX_REPLY: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line as received, without the line ending (code prefix included).
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// The text of the reply without the codes, lines joined by spaces, for
    /// messages. Bytes that are not UTF-8 are replaced.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self
            .lines
            .iter()
            .map(|line| String::from_utf8_lossy(strip_code(line)).trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        parts.join(" ")
    }

    /// The text of the first line after the code, as bytes (for 227/229/257).
    pub fn first_line(&self) -> &[u8] {
        self.lines.first().map(|l| strip_code(l)).unwrap_or(&[])
    }

    /// The lines between the first and the last of a multi-line reply (FEAT
    /// features, MLST facts).
    pub fn inner_lines(&self) -> &[Vec<u8>] {
        if self.lines.len() > 2 {
            &self.lines[1..self.lines.len() - 1]
        } else {
            &[]
        }
    }
}

fn strip_code(line: &[u8]) -> &[u8] {
    if line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit) {
        &line[4..]
    } else if line.len() == 3 && line.iter().all(u8::is_ascii_digit) {
        &[]
    } else {
        line
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The first line does not start with a three-digit code.
    NotAReply(String),
    LineTooLong,
    ReplyTooLong,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotAReply(line) => write!(f, "not an FTP reply: {line:?}"),
            ParseError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
            ParseError::ReplyTooLong => write!(f, "reply longer than {MAX_REPLY} bytes"),
        }
    }
}

/// Parses one reply from the start of `buf`.
/// Returns `Ok(Some((reply, consumed)))` when a whole reply is there,
/// `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ParseError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut code = None;
    loop {
        let rest = &buf[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(ParseError::LineTooLong);
            }
            if pos + rest.len() > MAX_REPLY {
                return Err(ParseError::ReplyTooLong);
            }
            if code.is_none() && !could_start_reply(rest) {
                return Err(ParseError::NotAReply(preview(rest)));
            }
            return Ok(None);
        };
        if nl > MAX_LINE {
            return Err(ParseError::LineTooLong);
        }
        let line = trim_cr(&rest[..nl]);
        pos += nl + 1;
        if pos > MAX_REPLY {
            return Err(ParseError::ReplyTooLong);
        }
        match code {
            None => {
                let (c, sep) =
                    line_code(line).ok_or_else(|| ParseError::NotAReply(preview(line)))?;
                lines.push(line.to_vec());
                if sep != Some(b'-') {
                    return Ok(Some((Reply { code: c, lines }, pos)));
                }
                code = Some(c);
            }
            Some(c) => {
                lines.push(line.to_vec());
                if let Some((c2, sep)) = line_code(line) {
                    if c2 == c && sep != Some(b'-') {
                        return Ok(Some((Reply { code: c, lines }, pos)));
                    }
                }
            }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The code of a line and the byte after it (space, '-', or none at all).
/// Anything else after the digits means the line is not a reply line.
fn line_code(line: &[u8]) -> Option<(u16, Option<u8>)> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || digits[0] < b'1' || digits[0] > b'5' {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, None)),
        Some(&sep @ (b' ' | b'-')) => Some((code, Some(sep))),
        Some(_) => None,
    }
}

/// Whether an incomplete first line can still become a reply line; lets us
/// fail at once on a server that sends something else (e.g. TLS bytes).
fn could_start_reply(partial: &[u8]) -> bool {
    partial.iter().take(3).enumerate().all(|(i, b)| match i {
        0 => (b'1'..=b'5').contains(b),
        _ => b.is_ascii_digit(),
    }) && partial.get(3).is_none_or(|b| *b == b' ' || *b == b'-')
}

fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(80)];
    String::from_utf8_lossy(shown).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(buf: &[u8]) -> Reply {
        let (reply, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        reply
    }

    #[test]
    fn single_line() {
        let r = parse_all(b"220 Welcome\r\n");
        assert_eq!(r.code, 220);
        assert_eq!(r.text(), "Welcome");
    }

    #[test]
    fn bare_code_and_bare_lf() {
        assert_eq!(parse_all(b"200\n").code, 200);
        assert_eq!(parse_all(b"200\r\n").text(), "");
    }

    #[test]
    fn multi_line_with_misleading_inner_lines() {
        let buf = b"211-Features:\r\n EPSV\r\n211-not the end\r\n212 other code\r\n MLST type*;size*;\r\n211 End\r\n";
        let r = parse_all(buf);
        assert_eq!(r.code, 211);
        assert_eq!(r.lines.len(), 6);
        assert_eq!(r.inner_lines()[0], b" EPSV");
    }

    #[test]
    fn leaves_following_reply_in_buffer() {
        let buf = b"150 Opening\r\n226 Done\r\n";
        let (r, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(r.code, 150);
        let (r2, _) = parse_reply(&buf[used..]).unwrap().unwrap();
        assert_eq!(r2.code, 226);
    }

    #[test]
    fn every_split_point_of_a_multi_line_reply() {
        let buf: &[u8] =
            b"230-Welcome\r\n230-  to the server\r\n 230 indented\r\n230 Logged in.\r\n";
        let whole = parse_all(buf);
        for split in 0..buf.len() {
            assert_eq!(parse_reply(&buf[..split]).unwrap(), None, "split {split}");
        }
        assert_eq!(whole.code, 230);
        assert_eq!(whole.lines.len(), 4);
    }

    #[test]
    fn rejects_non_replies_early() {
        assert!(parse_reply(b"\x16\x03\x01").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_reply(b"2x0 hi\r\n").is_err());
        assert!(parse_reply(b"220hello\r\n").is_err());
        assert!(parse_reply(b"600 no\r\n").is_err());
    }

    #[test]
    fn bounds_hostile_input() {
        let long_line = vec![b'2'; 3]
            .into_iter()
            .chain(vec![b' '; MAX_LINE + 10])
            .collect::<Vec<_>>();
        assert_eq!(parse_reply(&long_line), Err(ParseError::LineTooLong));
        let mut never_ending = b"211-start\r\n".to_vec();
        while never_ending.len() <= MAX_REPLY {
            never_ending.extend_from_slice(b" more feature text here\r\n");
        }
        assert_eq!(parse_reply(&never_ending), Err(ParseError::ReplyTooLong));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn generated_replies_parse_back(code in 100u16..600, texts in proptest::collection::vec("[ -~]{0,40}", 1..6)) {
            let mut buf = Vec::new();
            let last = texts.len() - 1;
            for (i, t) in texts.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                buf.extend_from_slice(format!("{code}{sep}{t}\r\n").as_bytes());
            }
            let (reply, used) = parse_reply(&buf).unwrap().unwrap();
            prop_assert_eq!(reply.code, code);
            prop_assert_eq!(used, buf.len());
            prop_assert_eq!(reply.lines.len(), texts.len());
        }
    }
}
