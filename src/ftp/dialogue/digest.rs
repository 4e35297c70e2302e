//! Asking the server for a file's size and digests, and reading its answers
//! strictly: a reply that names another algorithm, another range, a digest
//! of the wrong length or something that is not hex is an error, never a
//! digest (a wrong "match" would let a corrupt upload pass as checked).
//!
//! `HASH` (draft-bryan-ftpext-hash-02) works on the algorithm the session
//! selected with `OPTS HASH <name>` (200), on the whole file or on the range
//! set by `RANG start end` (350, end inclusive; draft-bryan-ftp-range); the
//! range stays set on the session until `RANG 1 0` (350) resets it, which
//! must happen before the session does anything else, or its next RETR would
//! send only that range. The reply: `213 SHA-256 0-49 <hex> path`, possibly
//! after `213-` lines the server sends while it computes. ProFTPD's
//! mod_digest gives the end of the range as the file's size (exclusive),
//! the draft as the last byte (inclusive): either is accepted. ProFTPD
//! 1.3.8's mod_digest lists `RANG STREAM` but hashes the whole file after
//! a RANG: such a reply is told apart (`Hashed::RangeIgnored`), so the
//! store can say Unsupported and stop asking.
//!
//! The older commands (`XSHA256 path [start end]`, end exclusive as ProFTPD
//! reads it) answer with the digest alone on the last line: `213 <hex>`, or
//! ProFTPD's `250-Computing SHA256 digest` `250 <HEX>`.
use super::{send, unexpected, Command, Conversation, Input, Step};
use crate::digest::{from_hex, DigestAlgorithm};
use crate::ftp::error::{Error, Result};
use crate::ftp::reply::Reply;

/// What a `HASH` reply gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    /// The digest of what was asked for.
    Digest(Vec<u8>),
    /// A range was asked for and the server hashed from byte 0 to somewhere
    /// else (the whole file): it does not apply RANG to HASH.
    RangeIgnored,
}

/// `[OPTS HASH name --200-->] [RANG s e --350-->] HASH path --213-->
/// [RANG 1 0 --350-->]` done with the digest's bytes.
pub struct Hash {
    algorithm: DigestAlgorithm,
    path: Vec<u8>,
    /// Half-open `[start, end)`, `end > start`.
    range: Option<(u64, u64)>,
    /// The algorithm the session has selected, when known.
    selected: Option<DigestAlgorithm>,
    state: HashState,
    /// HASH's outcome, held while the range is reset.
    outcome: Option<Result<Hashed>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashState {
    Opts,
    Rang,
    Hash,
    Reset,
}

impl Hash {
    /// The caller checks that a range is not empty (`end > start`).
    pub fn new(
        algorithm: DigestAlgorithm,
        path: &[u8],
        range: Option<(u64, u64)>,
        selected: Option<DigestAlgorithm>,
    ) -> Hash {
        Hash {
            algorithm,
            path: path.to_vec(),
            range,
            selected,
            state: HashState::Opts,
            outcome: None,
        }
    }

    fn after_opts(&mut self) -> Result<Step<Hashed>> {
        match self.range {
            Some((start, end)) => {
                self.state = HashState::Rang;
                let last = end.saturating_sub(1);
                send(Command::with("RANG", format!("{start} {last}")))
            }
            None => self.hash(),
        }
    }

    fn hash(&mut self) -> Result<Step<Hashed>> {
        self.state = HashState::Hash;
        send(Command::with("HASH", self.path.clone()))
    }
}

impl Conversation for Hash {
    type Outcome = Hashed;

    fn start(&mut self) -> Result<Step<Hashed>> {
        if self.selected == Some(self.algorithm) {
            return self.after_opts();
        }
        self.state = HashState::Opts;
        let arg = format!("HASH {}", self.algorithm.hash_name());
        send(Command::with("OPTS", arg))
    }

    fn next(&mut self, input: Input) -> Result<Step<Hashed>> {
        let Input::Reply(reply) = input else {
            return unexpected("HASH", &input);
        };
        match self.state {
            HashState::Opts if reply.code == 200 => {
                // `200 SHA-256`; a reply naming another algorithm is a
                // server that did not switch.
                let text = String::from_utf8_lossy(reply.first_line())
                    .trim()
                    .to_string();
                match DigestAlgorithm::from_hash_name(&text) {
                    Some(named) if named != self.algorithm => Err(Error::protocol(
                        format!("OPTS HASH {}", self.algorithm.hash_name()),
                        format!("the server selected {named} instead"),
                    )),
                    _ => self.after_opts(),
                }
            }
            HashState::Opts => Err(super::refused(
                format!("OPTS HASH {}", self.algorithm.hash_name()),
                &reply,
            )),
            HashState::Rang if reply.code == 350 => self.hash(),
            HashState::Rang => {
                let (start, end) = self.range.unwrap_or_default();
                Err(super::refused(
                    format!("RANG {start} {}", end.saturating_sub(1)),
                    &reply,
                ))
            }
            HashState::Hash => {
                let outcome = if reply.code == 213 {
                    parse_hash_reply(&reply, self.algorithm, self.range)
                } else {
                    Err(super::refused(
                        super::shown_command("HASH", Some(&self.path)),
                        &reply,
                    ))
                };
                if self.range.is_none() {
                    return outcome.map(Step::Finished);
                }
                self.outcome = Some(outcome);
                self.state = HashState::Reset;
                send(Command::with("RANG", "1 0"))
            }
            HashState::Reset if reply.code == 350 => match self.outcome.take() {
                Some(outcome) => outcome.map(Step::Finished),
                None => unexpected("HASH", &Input::Reply(reply)),
            },
            // The range may still be set: a protocol error, which ends the
            // session rather than let its next download be cut to the range.
            HashState::Reset => Err(Error::protocol(
                "RANG 1 0",
                format!(
                    "the server did not reset the byte range ({} {}); the session is dropped",
                    reply.code,
                    reply.text()
                ),
            )),
        }
    }
}

/// The digest of a `213` reply to `HASH`, checked against what was asked.
pub fn parse_hash_reply(
    reply: &Reply,
    algorithm: DigestAlgorithm,
    range: Option<(u64, u64)>,
) -> Result<Hashed> {
    let bad = |detail: String| Error::protocol("HASH", format!("{detail}: {:?}", reply.text()));
    let line = last_line_text(reply);
    let mut words = line.split_ascii_whitespace();
    let (Some(name), Some(span), Some(hex)) = (words.next(), words.next(), words.next()) else {
        return Err(bad("not a HASH reply".into()));
    };
    if !name.eq_ignore_ascii_case(algorithm.hash_name()) {
        return Err(bad(format!(
            "the server answered with {name}, not {algorithm}"
        )));
    }
    let (first, last) = span
        .split_once('-')
        .and_then(|(a, b)| Some((parse_decimal(a)?, parse_decimal(b)?)))
        .filter(|(a, b)| a <= b)
        .ok_or_else(|| bad(format!("not a byte range: {span:?}")))?;
    let expected_start = range.map_or(0, |(start, _)| start);
    let end_fits = match range {
        // Inclusive as the draft says, or exclusive as ProFTPD writes it.
        Some((_, end)) => last + 1 == end || last == end,
        None => true,
    };
    let digest =
        digest_bytes(hex, algorithm).ok_or_else(|| bad(format!("not a {algorithm} digest")))?;
    if first == expected_start && end_fits {
        return Ok(Hashed::Digest(digest));
    }
    if range.is_some() && first == 0 {
        return Ok(Hashed::RangeIgnored);
    }
    Err(bad(format!(
        "the server hashed bytes {first}-{last}, not the range asked for"
    )))
}

/// The digest of a reply to `XSHA256` and its kin: the last line is the
/// digest alone.
pub fn parse_x_reply(reply: &Reply, algorithm: DigestAlgorithm) -> Result<Vec<u8>> {
    let line = last_line_text(reply);
    digest_bytes(line.trim(), algorithm).ok_or_else(|| {
        Error::protocol(
            algorithm.x_command(),
            format!("not a {algorithm} digest: {:?}", reply.text()),
        )
    })
}

/// The size of a `213` reply to `SIZE`: decimal digits only, within what a
/// file offset can hold (a sign, a fraction or a size past `i64::MAX` is
/// garbage, not a size).
pub fn parse_size_reply(reply: &Reply) -> Result<u64> {
    let text = String::from_utf8_lossy(reply.first_line());
    parse_decimal(text.trim())
        .filter(|&size| size <= i64::MAX as u64)
        .ok_or_else(|| Error::protocol("SIZE", format!("not a size: {:?}", reply.text())))
}

fn last_line_text(reply: &Reply) -> String {
    let line = reply.lines.last().map(Vec::as_slice).unwrap_or_default();
    let text = match line.get(..4) {
        Some(prefix) if prefix[..3].iter().all(u8::is_ascii_digit) => &line[4..],
        _ => line,
    };
    String::from_utf8_lossy(text).into_owned()
}

fn digest_bytes(hex: &str, algorithm: DigestAlgorithm) -> Option<Vec<u8>> {
    from_hex(hex).filter(|bytes| bytes.len() == algorithm.digest_len())
}

fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::script::{parse, run, Expected, Lines};
    use super::*;
    use crate::digest::to_hex;

    const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const SHA1_ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";

    /// A range asked for, as `digest` takes it.
    type Range = Option<(u64, u64)>;
    /// A conversation's case: range, algorithm selected before, replies,
    /// commands sent, outcome.
    type Case<'a> = (
        Range,
        Option<DigestAlgorithm>,
        Vec<&'a str>,
        Lines,
        Expected<&'a str>,
    );

    fn hex_of(outcome: Result<Hashed>) -> std::result::Result<String, String> {
        outcome.map(shown).map_err(|e| e.to_string())
    }

    fn shown(hashed: Hashed) -> String {
        match hashed {
            Hashed::Digest(d) => to_hex(&d),
            Hashed::RangeIgnored => "range ignored".into(),
        }
    }

    #[test]
    fn hash_replies() {
        use DigestAlgorithm::*;
        let long = format!("213 SHA-256 0-2 {SHA256_ABC} with spaces.txt");
        let upper = format!("213 sha-256 0-2 {} f", SHA256_ABC.to_uppercase());
        let multi = format!("213-Computing SHA-256 digest\r\n213 SHA-256 0-3 {SHA256_ABC} f");
        let draft_range = format!("213 SHA-256 10-49 {SHA256_ABC} f");
        let proftpd_range = format!("213 SHA-256 10-50 {SHA256_ABC} f");
        let whole_not_range = format!("213 SHA-256 0-99 {SHA256_ABC} f");
        let too_far = format!("213 SHA-256 10-51 {SHA256_ABC} f");
        let too_late = format!("213 SHA-256 11-50 {SHA256_ABC} f");
        let wrong_algo = format!("213 SHA-1 0-2 {SHA1_ABC} f");
        let short = format!("213 SHA-256 0-2 {} f", &SHA256_ABC[..62]);
        let long_digest = format!("213 SHA-256 0-2 {SHA256_ABC}00 f");
        let non_hex = format!("213 SHA-256 0-2 {}zz f", &SHA256_ABC[..62]);
        let backwards = format!("213 SHA-256 5-2 {SHA256_ABC} f");
        let negative = format!("213 SHA-256 -1-2 {SHA256_ABC} f");
        #[rustfmt::skip]
        let table: Vec<(&str, DigestAlgorithm, Range, Expected<&str>)> = vec![
            (&long, Sha256, None, Ok(SHA256_ABC)),
            (&upper, Sha256, None, Ok(SHA256_ABC)),
            (&multi, Sha256, None, Ok(SHA256_ABC)),
            (&draft_range, Sha256, Some((10, 50)), Ok(SHA256_ABC)),
            (&proftpd_range, Sha256, Some((10, 50)), Ok(SHA256_ABC)),
            (&whole_not_range, Sha256, Some((10, 50)), Ok("range ignored")),
            (&whole_not_range, Sha256, Some((0, 50)), Ok("range ignored")),
            (&too_late, Sha256, Some((10, 50)), Err("hashed bytes 11-50, not the range asked for")),
            (&too_far, Sha256, Some((10, 50)), Err("not the range asked for")),
            (&draft_range, Sha256, None, Err("hashed bytes 10-49")),
            (&wrong_algo, Sha256, None, Err("answered with SHA-1, not SHA-256")),
            (&wrong_algo, Sha1, None, Ok(SHA1_ABC)),
            (&short, Sha256, None, Err("not a SHA-256 digest")),
            (&long_digest, Sha256, None, Err("not a SHA-256 digest")),
            (&non_hex, Sha256, None, Err("not a SHA-256 digest")),
            (&backwards, Sha256, None, Err("not a byte range")),
            (&negative, Sha256, None, Err("not a byte range")),
            ("213 SHA-256 0-2", Sha256, None, Err("not a HASH reply")),
            ("213 Computing", Sha256, None, Err("not a HASH reply")),
            ("213 CRC32 0-8 cbf43926 f", Crc32, None, Ok("cbf43926")),
            ("213 CRC32 0-8 cbf4392 f", Crc32, None, Err("not a CRC32 digest")),
        ];
        for (text, algorithm, range, expected) in table {
            let actual = hex_of(parse_hash_reply(&parse(text), algorithm, range));
            match expected {
                Ok(hex) => assert_eq!(actual, Ok(hex.to_string()), "{text}"),
                Err(part) => {
                    let err = actual.expect_err(text);
                    assert!(err.contains(part), "{text}: {err}");
                    assert!(err.starts_with("protocol error: HASH"), "{err}");
                }
            }
        }
    }

    #[test]
    fn x_replies() {
        use DigestAlgorithm::*;
        let plain = format!("213 {SHA256_ABC}");
        let proftpd = format!(
            "250-Computing SHA256 digest\r\n250 {}",
            SHA256_ABC.to_uppercase()
        );
        let with_path = format!("213 f {SHA256_ABC}");
        let sha1_for_sha256 = format!("213 {SHA1_ABC}");
        #[rustfmt::skip]
        let table: Vec<(&str, DigestAlgorithm, Option<&str>)> = vec![
            (&plain, Sha256, Some(SHA256_ABC)),
            (&proftpd, Sha256, Some(SHA256_ABC)),
            (&with_path, Sha256, None),
            (&sha1_for_sha256, Sha256, None),
            (&sha1_for_sha256, Sha1, Some(SHA1_ABC)),
            ("213 CBF43926", Crc32, Some("cbf43926")),
            ("213 cbf43926 ", Crc32, Some("cbf43926")),
            ("213 0xcbf43926", Crc32, None),
            ("213 ", Crc32, None),
            ("250 Computing", Crc32, None),
        ];
        for (text, algorithm, expected) in table {
            let actual = parse_x_reply(&parse(text), algorithm).map(|d| to_hex(&d));
            match expected {
                Some(hex) => assert_eq!(actual.unwrap(), hex, "{text}"),
                None => {
                    let err = actual.expect_err(text);
                    assert_eq!(err.kind(), crate::ftp::error::Kind::Protocol, "{text}");
                }
            }
        }
    }

    #[test]
    fn size_replies() {
        let table: &[(&str, Option<u64>)] = &[
            ("213 0", Some(0)),
            ("213 5368709120", Some(5_368_709_120)),
            ("213  42 ", Some(42)),
            ("213 9223372036854775807", Some(i64::MAX as u64)),
            ("213 9223372036854775808", None),
            ("213 18446744073709551616", None),
            ("213 -1", None),
            ("213 +5", None),
            ("213 5.0", None),
            ("213 1e3", None),
            ("213 ", None),
            ("213 File status", None),
            ("213 12 bytes", None),
        ];
        for &(text, expected) in table {
            let actual = parse_size_reply(&parse(text));
            match expected {
                Some(size) => assert_eq!(actual.unwrap(), size, "{text}"),
                None => {
                    let err = actual.expect_err(text);
                    assert!(err.to_string().contains("not a size"), "{err}");
                }
            }
        }
    }

    #[test]
    fn hash_conversations() {
        use DigestAlgorithm::*;
        let ok = format!("213 SHA-256 0-2 {SHA256_ABC} f");
        let ranged = format!("213 SHA-256 3-9 {SHA256_ABC} f");
        let whole = format!("213 SHA-256 0-99 {SHA256_ABC} f");
        let sha1 = format!("213 SHA-1 0-2 {SHA1_ABC} f");
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            // Selected already: HASH alone.
            (None, Some(Sha256), vec![&ok], &["HASH f"], Ok(SHA256_ABC)),
            (None, Some(Sha1), vec!["200 SHA-256", &ok], &["OPTS HASH SHA-256", "HASH f"], Ok(SHA256_ABC)),
            (None, None, vec!["200 SHA-256", &ok], &["OPTS HASH SHA-256", "HASH f"], Ok(SHA256_ABC)),
            (None, None, vec!["200 OK", &ok], &["OPTS HASH SHA-256", "HASH f"], Ok(SHA256_ABC)),
            (None, None, vec!["200 SHA-1"], &["OPTS HASH SHA-256"],
                Err("protocol error: OPTS HASH SHA-256: the server selected SHA-1 instead")),
            (None, None, vec!["501 Unsupported algorithm"], &["OPTS HASH SHA-256"],
                Err("server refused OPTS HASH SHA-256: Unsupported algorithm (501)")),
            // The server ignored OPTS HASH: the reply names another algorithm.
            (None, None, vec!["200 SHA-256", &sha1], &["OPTS HASH SHA-256", "HASH f"],
                Err("answered with SHA-1, not SHA-256")),
            (None, Some(Sha256), vec!["550 f: No such file or directory"], &["HASH f"],
                Err("server refused HASH f: f: No such file or directory (550)")),
            // A range: RANG first (end inclusive), reset after.
            (Some((3, 10)), Some(Sha256), vec!["350 Restarting at 3. Ending byte at 9", &ranged, "350 Reset"],
                &["RANG 3 9", "HASH f", "RANG 1 0"], Ok(SHA256_ABC)),
            // Reset after a failed HASH too.
            (Some((3, 10)), Some(Sha256), vec!["350 ok", "556 policy", "350 Reset"],
                &["RANG 3 9", "HASH f", "RANG 1 0"], Err("server refused HASH f: policy (556)")),
            // A server that ignored the range and hashed the whole file.
            (Some((3, 10)), Some(Sha256), vec!["350 ok", &whole, "350 Reset"],
                &["RANG 3 9", "HASH f", "RANG 1 0"], Ok("range ignored")),
            (Some((3, 10)), Some(Sha256), vec!["500 RANG not understood"], &["RANG 3 9"],
                Err("server refused RANG 3 9: RANG not understood (500)")),
            (Some((3, 10)), Some(Sha256), vec!["350 ok", &ranged, "500 what"],
                &["RANG 3 9", "HASH f", "RANG 1 0"],
                Err("protocol error: RANG 1 0: the server did not reset the byte range (500 what); the session is dropped")),
        ];
        for (range, selected, events, sent, expected) in table {
            let (actual_sent, actual) = run(Hash::new(Sha256, b"f", range, selected), &events);
            assert_eq!(&actual_sent, sent, "{events:?}");
            let actual = actual.map(shown);
            match expected {
                Ok(hex) => assert_eq!(actual, Ok(hex.to_string()), "{events:?}"),
                Err(part) => {
                    let err = actual.expect_err("should fail");
                    assert!(err.contains(part), "{events:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn a_failed_reset_breaks_the_session() {
        let ranged = format!("213 SHA-256 3-9 {SHA256_ABC} f");
        let err = super::super::script::error_of(
            Hash::new(
                DigestAlgorithm::Sha256,
                b"f",
                Some((3, 10)),
                Some(DigestAlgorithm::Sha256),
            ),
            &["350 ok", &ranged, "421 bye"],
        );
        assert!(err.breaks_session(), "{err}");
        let err = super::super::script::error_of(
            Hash::new(
                DigestAlgorithm::Sha256,
                b"f",
                None,
                Some(DigestAlgorithm::Sha256),
            ),
            &["550 no"],
        );
        assert!(!err.breaks_session(), "{err}");
    }
}
