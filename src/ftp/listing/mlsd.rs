//! MLSD and MLST lines (RFC 3659): `fact=value;fact=value; name`.
//!
//! Fact names are case-insensitive and come in any order; the name is every byte
//! after the space that ends the facts, kept exactly (it may hold spaces, `;`,
//! `=`). Symbolic links come in three spellings in the field: `type=OS.unix=symlink`
//! (ProFTPD, the RFC errata), `type=OS.unix=slink:target` (Pure-FTPd, the RFC's
//! examples) and a separate `OS.unix=` fact.
use super::{Entry, EntryKind};
use crate::ftp::time::{parse_decimal, parse_ftp_timestamp};

/// Entries of an MLSD body; blank, unparsable, `cdir`/`pdir`, `.` and `..` lines
/// are left out.
pub fn parse_mlsd(body: &[u8]) -> Vec<Entry> {
    body.split(|&byte| byte == b'\n')
        .filter_map(parse_mlsd_line)
        .collect()
}

/// One line of an MLSD body. None for the directory itself and its parent
/// (`type=cdir`/`pdir`, names `.` and `..`) and for lines that are not facts.
pub fn parse_mlsd_line(line: &[u8]) -> Option<Entry> {
    let (facts, name) = split_facts_and_name(strip_line_end(line))?;
    if name == b"." || name == b".." {
        return None;
    }
    match facts.listed_kind()? {
        ListedKind::Entry(kind) => Some(facts.into_entry(name, kind)),
        ListedKind::CurrentOrParent => None,
    }
}

/// The fact line of an MLST reply (`250-` … ` facts; name` … `250 End`), with or
/// without its leading space. The object was named by the client, so `cdir`
/// (which old ProFTPD sends for a directory) is a directory here, and the name is
/// returned as sent, usually a full path.
pub fn parse_mlst_fact_line(line: &[u8]) -> Option<Entry> {
    let line = strip_line_end(line);
    let line = line.strip_prefix(b" ").unwrap_or(line);
    let (facts, name) = split_facts_and_name(line)?;
    match facts.listed_kind()? {
        ListedKind::Entry(kind) => Some(facts.into_entry(name, kind)),
        ListedKind::CurrentOrParent => Some(facts.into_entry(name, EntryKind::Dir)),
    }
}

enum ListedKind {
    Entry(EntryKind),
    CurrentOrParent,
}

/// The facts of one line that a mount can use; the others (perm, unique, owner…)
/// are skipped.
#[derive(Default)]
struct Facts<'a> {
    kind: Option<&'a [u8]>,
    os_unix: Option<&'a [u8]>,
    size: Option<&'a [u8]>,
    sizd: Option<&'a [u8]>,
    modify: Option<&'a [u8]>,
    unix_mode: Option<&'a [u8]>,
}

impl<'a> Facts<'a> {
    fn parse(facts: &'a [u8]) -> Self {
        let mut parsed = Facts::default();
        for fact in facts.split(|&byte| byte == b';') {
            if let Some((name, value)) = split_once(fact, b'=') {
                parsed.record(name, value);
            }
        }
        parsed
    }

    fn record(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"type" => &mut self.kind,
            b"os.unix" => &mut self.os_unix,
            b"size" => &mut self.size,
            b"sizd" => &mut self.sizd,
            b"modify" => &mut self.modify,
            b"unix.mode" => &mut self.unix_mode,
            _ => return,
        };
        *slot = Some(value);
    }

    /// None when the line has no `type` fact: file and directory can't be told apart.
    fn listed_kind(&self) -> Option<ListedKind> {
        if let Some(target) = self.os_unix.and_then(unix_symlink_target) {
            return Some(ListedKind::Entry(EntryKind::Symlink { target }));
        }
        let kind = self.kind.filter(|kind| !kind.is_empty())?;
        Some(match kind.to_ascii_lowercase().as_slice() {
            b"file" => ListedKind::Entry(EntryKind::File),
            b"dir" => ListedKind::Entry(EntryKind::Dir),
            b"cdir" | b"pdir" => ListedKind::CurrentOrParent,
            _ => ListedKind::Entry(os_specific_kind(kind)),
        })
    }

    fn into_entry(self, name: &[u8], kind: EntryKind) -> Entry {
        let modified = self.modify.and_then(parse_ftp_timestamp);
        Entry {
            name: name.to_vec(),
            kind,
            size: self.size.or(self.sizd).and_then(parse_decimal),
            modified,
            modified_exact: modified.is_some(),
            mode: self.unix_mode.and_then(parse_octal_mode),
        }
    }
}

/// `OS.unix=slink:/t`, `OS.unix=symlink` … as a symlink; any other OS-specific
/// type (devices, sockets, `unknown`) as Other.
fn os_specific_kind(type_value: &[u8]) -> EntryKind {
    strip_prefix_ignore_case(type_value, b"os.unix=")
        .and_then(unix_symlink_target)
        .map_or(EntryKind::Other, |target| EntryKind::Symlink { target })
}

/// For the part after `OS.unix=`: Some(target) when it names a symlink, the target
/// being None when absent or empty (Pure-FTPd sends `slink:` with nothing after
/// it for logged-in users).
fn unix_symlink_target(value: &[u8]) -> Option<Option<Vec<u8>>> {
    let after_word = strip_prefix_ignore_case(value, b"symlink")
        .or_else(|| strip_prefix_ignore_case(value, b"slink"))?;
    match after_word {
        [] | [b':'] => Some(None),
        [b':', target @ ..] => Some(Some(target.to_vec())),
        _ => None,
    }
}

/// `UNIX.mode` in octal (`0644`, `644`, `04755`); some servers include the file
/// type bits (`0100644`), which are dropped.
fn parse_octal_mode(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(|byte| (b'0'..=b'7').contains(byte)) {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 8).ok().map(|mode| mode & 0o7777)
}

/// Splits at the first `"; "`: facts end with `;` and one space, and values hold
/// no spaces, so that is where the name begins whatever the name holds.
fn split_facts_and_name(line: &[u8]) -> Option<(Facts<'_>, &[u8])> {
    let end_of_facts = line.windows(2).position(|pair| pair == b"; ")?;
    let facts = line.get(..end_of_facts)?;
    let name = line.get(end_of_facts + 2..)?;
    if name.is_empty() {
        return None;
    }
    Some((Facts::parse(facts), name))
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&byte| byte == separator)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        bytes.get(prefix.len()..)
    } else {
        None
    }
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::time::system_time_from_unix;

    fn line(text: &[u8]) -> Entry {
        parse_mlsd_line(text).unwrap()
    }

    #[test]
    fn file_with_all_facts() {
        let entry =
            line(b"type=file;size=1234;modify=20240115103000;UNIX.mode=0644;perm=adfrw; a b");
        assert_eq!(
            entry,
            Entry {
                name: b"a b".to_vec(),
                kind: EntryKind::File,
                size: Some(1234),
                modified: system_time_from_unix(1_705_314_600, 0),
                modified_exact: true,
                mode: Some(0o644),
            }
        );
    }

    #[test]
    fn fact_names_and_type_values_ignore_case() {
        let entry = line(b"TYPE=DIR;SIZD=4096;MODIFY=20240115103000;unix.MODE=755; d");
        assert_eq!(entry.kind, EntryKind::Dir);
        assert_eq!(entry.size, Some(4096));
        assert_eq!(entry.mode, Some(0o755));
        assert!(entry.modified.is_some());
    }

    #[test]
    fn name_keeps_spaces_semicolons_equals_and_strips_only_the_line_end() {
        assert_eq!(line(b"type=file;  lead").name, b" lead");
        assert_eq!(line(b"type=file; trail \r\n").name, b"trail ");
        assert_eq!(line(b"type=file; a; b=c;d ").name, b"a; b=c;d ");
        assert_eq!(line(b"type=file; tab\there").name, b"tab\there");
    }

    #[test]
    fn skips_current_and_parent_directory() {
        assert_eq!(
            parse_mlsd_line(b"type=cdir;modify=20240115103000; /pub"),
            None
        );
        assert_eq!(parse_mlsd_line(b"Type=pdir; .."), None);
        assert_eq!(parse_mlsd_line(b"type=dir; ."), None);
        assert_eq!(parse_mlsd_line(b"type=dir; .."), None);
        assert!(parse_mlsd_line(b"type=dir; ...").is_some());
    }

    #[test]
    fn symlink_spellings() {
        let kind = |text: &[u8]| line(text).kind;
        let link = |target: Option<&[u8]>| EntryKind::Symlink {
            target: target.map(<[u8]>::to_vec),
        };
        assert_eq!(kind(b"type=OS.unix=symlink; l"), link(None));
        assert_eq!(kind(b"type=os.UNIX=SYMLINK; l"), link(None));
        assert_eq!(kind(b"type=OS.unix=slink; l"), link(None));
        assert_eq!(kind(b"type=OS.unix=slink:; l"), link(None));
        assert_eq!(
            kind(b"type=OS.unix=slink:/Etc/Hosts; l"),
            link(Some(b"/Etc/Hosts"))
        );
        assert_eq!(kind(b"type=OS.unix=symlink:rel; l"), link(Some(b"rel")));
        assert_eq!(kind(b"type=file;OS.unix=slink:/x; l"), link(Some(b"/x")));
        assert_eq!(kind(b"OS.unix=symlink;type=dir; l"), link(None));
    }

    #[test]
    fn other_os_types_are_other() {
        for text in [
            &b"type=OS.unix=chr-13/29; device"[..],
            b"type=OS.unix=blk-11/108; block",
            b"type=OS.unix=slinky; odd",
            b"type=unknown; fifo",
        ] {
            assert_eq!(line(text).kind, EntryKind::Other, "{:?}", text);
        }
    }

    #[test]
    fn bad_values_leave_the_field_unknown() {
        let entry = line(b"type=file;size=-1;modify=2024;UNIX.mode=0798; f");
        assert_eq!(
            (entry.size, entry.modified, entry.modified_exact, entry.mode),
            (None, None, false, None)
        );
        assert_eq!(line(b"type=file;UNIX.mode=0100644; f").mode, Some(0o644));
        assert_eq!(line(b"type=file;UNIX.mode=77777777777777; f").mode, None);
    }

    #[test]
    fn size_prefers_size_over_sizd() {
        assert_eq!(line(b"type=dir;sizd=4096;size=7; d").size, Some(7));
        assert_eq!(
            line(b"type=file;size=18446744073709551615; f").size,
            Some(u64::MAX)
        );
    }

    #[test]
    fn not_fact_lines() {
        for text in [
            &b""[..],
            b"\r",
            b"type=file",
            b"type=file;",
            b"type=file; ",
            b"type=file;size=3 name",
            b"size=3; no type",
            b"type=; empty type",
            b" name",
            b"drwxr-xr-x 2 u g 4096 Jan 15 10:30 dir",
        ] {
            assert_eq!(parse_mlsd_line(text), None, "{:?}", text);
        }
    }

    #[test]
    fn mlsd_body_with_mixed_line_ends() {
        let body =
            b"type=cdir; .\r\ntype=file;size=1; a\ntype=dir; b\r\n\r\ngarbage\r\ntype=file; c";
        let names: Vec<Vec<u8>> = parse_mlsd(body).into_iter().map(|e| e.name).collect();
        assert_eq!(names, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn mlst_fact_line_tolerates_the_leading_space_and_treats_cdir_as_dir() {
        let entry = parse_mlst_fact_line(b" type=cdir;modify=20240115103000; /pub\r\n").unwrap();
        assert_eq!(
            (entry.name.as_slice(), entry.kind),
            (&b"/pub"[..], EntryKind::Dir)
        );
        let entry = parse_mlst_fact_line(b"type=file;size=5; /pub/a file").unwrap();
        assert_eq!(entry.name, b"/pub/a file");
        assert_eq!(entry.size, Some(5));
        assert_eq!(
            parse_mlst_fact_line(b" type=dir; .").unwrap().kind,
            EntryKind::Dir
        );
        assert_eq!(parse_mlst_fact_line(b"250 End"), None);
    }
}
