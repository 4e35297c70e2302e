//! The control socket's wire format, as pure functions.
//!
//! A request is one line: `ftpsfs/1 COMMAND [ARGUMENT]`. A path argument is
//! percent-encoded (names may hold any byte but NUL and `/`, spaces and
//! newlines included). The reply is lines, each starting with a word:
//! `data TEXT` (output for stdout), `progress TEXT` (a progress line for a
//! terminal), then exactly one `ok` or `error MESSAGE`, after which the
//! mount closes the connection.

/// The version word that starts every request; a mount refuses others, so
/// an older `ftpsfs` binary talking to a newer mount fails clearly.
pub const VERSION: &str = "ftpsfs/1";

/// Longest request line the mount reads (a path of 4 KiB, percent-encoded,
/// fits); a longer one is refused without reading it all.
pub const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The mount's state, as text for people or as JSON for scripts.
    Status { json: bool },
    /// Forget cached listings and attributes under a path relative to the
    /// mount's root (empty: everything).
    Refresh { path: Vec<u8> },
    /// Upload every pending change, reporting progress.
    Sync,
}

impl Request {
    pub fn to_line(&self) -> String {
        match self {
            Request::Status { json: false } => format!("{VERSION} status"),
            Request::Status { json: true } => format!("{VERSION} status json"),
            Request::Refresh { path } => {
                format!("{VERSION} refresh {}", crate::percent::encode(path))
            }
            Request::Sync => format!("{VERSION} sync"),
        }
    }

    /// Parses one request line (without its newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.trim_end_matches('\r').splitn(3, ' ');
        match words.next() {
            Some(VERSION) => {}
            Some(other) if other.starts_with("ftpsfs/") => {
                return Err(format!(
                    "this mount speaks {VERSION}, the request {other}: \
                     use the ftpsfs binary that made the mount"
                ))
            }
            _ => return Err("not an ftpsfs control request".into()),
        }
        let command = words.next().unwrap_or("");
        let argument = words.next();
        match (command, argument) {
            ("status", None) => Ok(Request::Status { json: false }),
            ("status", Some("json")) => Ok(Request::Status { json: true }),
            ("refresh", None) => Ok(Request::Refresh { path: Vec::new() }),
            ("refresh", Some(path)) => Ok(Request::Refresh {
                path: decode(path)?,
            }),
            ("sync", None) => Ok(Request::Sync),
            ("status" | "sync", Some(extra)) => {
                Err(format!("unexpected argument to {command}: {extra:?}"))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    }
}

/// One line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyLine {
    Data(String),
    Progress(String),
    Ok,
    Error(String),
}

impl ReplyLine {
    /// The line as sent; newlines inside the text would end it early, so
    /// they become spaces (the text of one line is one line).
    pub fn to_line(&self) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            ReplyLine::Data(text) => format!("data {}", one_line(text)),
            ReplyLine::Progress(text) => format!("progress {}", one_line(text)),
            ReplyLine::Ok => "ok".into(),
            ReplyLine::Error(text) => format!("error {}", one_line(text)),
        }
    }

    pub fn parse(line: &str) -> Result<ReplyLine, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "data" => Ok(ReplyLine::Data(rest.to_string())),
            "progress" => Ok(ReplyLine::Progress(rest.to_string())),
            "ok" if rest.is_empty() => Ok(ReplyLine::Ok),
            "error" => Ok(ReplyLine::Error(rest.to_string())),
            _ => Err(format!("the mount sent an unexpected line: {line:?}")),
        }
    }
}

fn decode(text: &str) -> Result<Vec<u8>, String> {
    let out = crate::percent::decode(text).map_err(|e| format!("{e} in {text:?}"))?;
    if out.contains(&0) {
        return Err("a path cannot hold a NUL byte".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_survive_the_wire() {
        let cases = [
            Request::Status { json: false },
            Request::Status { json: true },
            Request::Sync,
            Request::Refresh { path: Vec::new() },
            Request::Refresh {
                path: b"dir/a name with spaces/%25/\xff\n".to_vec(),
            },
        ];
        for request in cases {
            let line = request.to_line();
            assert!(!line.contains('\n'), "{line:?}");
            assert_eq!(Request::parse(&line), Ok(request), "{line}");
        }
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for line in [
            "",
            " ",
            "GET / HTTP/1.1",
            "ftpsfs/1",
            "ftpsfs/1 ",
            "ftpsfs/1 launch",
            "ftpsfs/1 status xml",
            "ftpsfs/1 sync now",
            "ftpsfs/1 refresh %",
            "ftpsfs/1 refresh %G0",
            "ftpsfs/1 refresh a%00b",
            "ftpsfs/1 refresh %\u{e9}",
            "\u{0}\u{1}\u{2}",
        ] {
            assert!(Request::parse(line).is_err(), "{line:?} parsed");
        }
        let newer = Request::parse("ftpsfs/2 status").unwrap_err();
        assert!(newer.contains("ftpsfs/1"), "{newer}");
    }

    #[test]
    fn reply_lines_survive_the_wire_and_stay_one_line() {
        for reply in [
            ReplyLine::Data("sessions 2".into()),
            ReplyLine::Data(String::new()),
            ReplyLine::Progress("3 of 4".into()),
            ReplyLine::Ok,
            ReplyLine::Error("cannot".into()),
        ] {
            assert_eq!(ReplyLine::parse(&reply.to_line()), Ok(reply));
        }
        let broken = ReplyLine::Error("two\nlines".into()).to_line();
        assert_eq!(broken, "error two lines");
        assert!(ReplyLine::parse("okay").is_err());
        assert!(ReplyLine::parse("ok extra").is_err());
    }
}
