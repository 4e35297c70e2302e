//! What `ftpsfs status` shows, and its two renderings: text for people and
//! JSON for scripts. Built by the mount (`target`), rendered there too, so
//! the command only prints what it receives.
use std::fmt::Write as _;
use std::time::Duration;

pub use crate::store::transfers::Direction;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub version: String,
    /// host:port and directory, never the user's password.
    pub server: String,
    pub mountpoint: String,
    pub pid: u32,
    pub uptime: Duration,
    pub sessions: Sessions,
    pub transfers: Vec<Transfer>,
    pub uploads: Uploads,
    pub cache: CacheUse,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    pub open: usize,
    pub busy: usize,
    pub limit: usize,
    /// The TLS version of the most recent login ("TLSv1.3").
    pub tls: Option<String>,
    pub logins: u64,
    pub commands: u64,
    pub data_connections: u64,
    /// Data connections that resumed their control session's TLS session,
    /// and those that needed a full handshake.
    pub resumed_handshakes: u64,
    pub full_handshakes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub direction: Direction,
    pub path: String,
    pub done: u64,
    /// The file's size where known (a file being written has none yet).
    pub size: Option<u64>,
    pub elapsed: Duration,
}

impl Transfer {
    /// Bytes per second since the transfer started.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploads {
    /// Open files whose changes are not on the server yet.
    pub pending_files: usize,
    pub pending_bytes: u64,
    /// Files kept locally because their upload failed (see the log), by
    /// this mount or earlier ones.
    pub failed: Vec<String>,
    pub streamed: u64,
    pub staged: u64,
    pub appended: u64,
    /// Files saved by sending only their changed ranges (patched in place).
    pub patched: u64,
    /// What `REST n` + `STOR` does on the server, as the mount's probe
    /// found: "in place", "truncates", "refused", "unknown" (the probe
    /// could not tell), "probing", "not probed".
    pub rest_stor: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// Attribute entries and directory listings held.
    pub entries: usize,
    pub listings: usize,
    pub hits: u64,
    pub misses: u64,
    /// The content cache on disk (None: off).
    pub content: Option<ContentUse>,
}

/// Blocks of file contents: reads served from them (hits) and not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentUse {
    pub bytes: u64,
    pub limit: u64,
    pub blocks: usize,
    pub hits: u64,
    pub misses: u64,
    pub damaged: u64,
}

fn hit_rate(hits: u64, misses: u64) -> String {
    match hits + misses {
        0 => "no lookups yet".into(),
        total => format!("{:.0}% hits", hits as f64 * 100.0 / total as f64),
    }
}

impl Status {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let s = &self.sessions;
        let _ = writeln!(out, "ftpsfs {} (pid {})", self.version, self.pid);
        let _ = writeln!(out, "mount:     {} on {}", self.server, self.mountpoint);
        let _ = writeln!(out, "uptime:    {}", duration(self.uptime));
        let _ = writeln!(
            out,
            "sessions:  {} open ({} busy, {} idle), at most {}; {}",
            s.open,
            s.busy,
            s.open.saturating_sub(s.busy),
            s.limit,
            s.tls.as_deref().unwrap_or("TLS version not known yet")
        );
        let _ = writeln!(
            out,
            "protocol:  {} logins, {} commands, {} data connections \
             ({} resumed TLS, {} full handshakes)",
            s.logins, s.commands, s.data_connections, s.resumed_handshakes, s.full_handshakes
        );
        if self.transfers.is_empty() {
            let _ = writeln!(out, "transfers: none");
        } else {
            let _ = writeln!(out, "transfers: {}", self.transfers.len());
            for t in &self.transfers {
                let arrow = match t.direction {
                    Direction::Download => "down",
                    Direction::Upload => "up  ",
                };
                let of = match t.size {
                    Some(size) => format!(" of {}", bytes(size)),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {arrow} {}{of}, {}/s  {}",
                    bytes(t.done),
                    bytes(t.rate() as u64),
                    t.path
                );
            }
        }
        let u = &self.uploads;
        let _ = writeln!(
            out,
            "uploads:   {} pending ({}), {} failed; done: {} streamed, {} staged, {} appended, {} patched",
            u.pending_files,
            bytes(u.pending_bytes),
            u.failed.len(),
            u.streamed,
            u.staged,
            u.appended,
            u.patched
        );
        for path in &u.failed {
            let _ = writeln!(out, "  kept locally: {path}");
        }
        let _ = writeln!(out, "REST+STOR: {}", u.rest_stor);
        let c = &self.cache;
        let _ = writeln!(
            out,
            "cache:     {} entries, {} listings; {} hits, {} misses ({})",
            c.entries,
            c.listings,
            c.hits,
            c.misses,
            hit_rate(c.hits, c.misses)
        );
        match &c.content {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "contents:  {} of {} in {} blocks; {} hits, {} misses ({}), {} damaged",
                    bytes(b.bytes),
                    bytes(b.limit),
                    b.blocks,
                    b.hits,
                    b.misses,
                    hit_rate(b.hits, b.misses),
                    b.damaged
                );
            }
            None => {
                let _ = writeln!(out, "contents:  not cached (--cache-size 0)");
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        let s = &self.sessions;
        let transfers: Vec<String> = self
            .transfers
            .iter()
            .map(|t| {
                format!(
                    "{{\"direction\":{},\"path\":{},\"bytes_done\":{},\"size\":{},\
                     \"seconds\":{:.3},\"bytes_per_second\":{:.0}}}",
                    string(match t.direction {
                        Direction::Download => "download",
                        Direction::Upload => "upload",
                    }),
                    string(&t.path),
                    t.done,
                    optional(t.size),
                    t.elapsed.as_secs_f64(),
                    t.rate()
                )
            })
            .collect();
        let failed: Vec<String> = self.uploads.failed.iter().map(|p| string(p)).collect();
        let u = &self.uploads;
        let c = &self.cache;
        format!(
            "{{\"version\":{},\"server\":{},\"mountpoint\":{},\"pid\":{},\"uptime_seconds\":{},\
             \"sessions\":{{\"open\":{},\"busy\":{},\"idle\":{},\"limit\":{},\"tls\":{},\
             \"logins\":{},\"commands\":{},\"data_connections\":{},\
             \"resumed_handshakes\":{},\"full_handshakes\":{}}},\
             \"transfers\":[{}],\
             \"uploads\":{{\"pending_files\":{},\"pending_bytes\":{},\"failed\":[{}],\
             \"streamed\":{},\"staged\":{},\"appended\":{},\"patched\":{},\"rest_stor\":{}}},\
             \"cache\":{{\"entries\":{},\"listings\":{},\"hits\":{},\"misses\":{},\"content\":{}}}}}",
            string(&self.version),
            string(&self.server),
            string(&self.mountpoint),
            self.pid,
            self.uptime.as_secs(),
            s.open,
            s.busy,
            s.open.saturating_sub(s.busy),
            s.limit,
            s.tls.as_deref().map_or("null".into(), string),
            s.logins,
            s.commands,
            s.data_connections,
            s.resumed_handshakes,
            s.full_handshakes,
            transfers.join(","),
            u.pending_files,
            u.pending_bytes,
            failed.join(","),
            u.streamed,
            u.staged,
            u.appended,
            u.patched,
            string(&u.rest_stor),
            c.entries,
            c.listings,
            c.hits,
            c.misses,
            c.content.as_ref().map_or("null".into(), |b| format!(
                "{{\"bytes\":{},\"limit\":{},\"blocks\":{},\"hits\":{},\"misses\":{},\"damaged\":{}}}",
                b.bytes, b.limit, b.blocks, b.hits, b.misses, b.damaged
            ))
        )
    }
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn optional(n: Option<u64>) -> String {
    n.map_or("null".into(), |n| n.to_string())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            version: "0.1.0".into(),
            server: "ftp.example.org:21/backup".into(),
            mountpoint: "/mnt/a \"quoted\"\\dir".into(),
            pid: 42,
            uptime: Duration::from_secs(3725),
            sessions: Sessions {
                open: 3,
                busy: 1,
                limit: 4,
                tls: Some("TLSv1.3".into()),
                logins: 3,
                commands: 100,
                data_connections: 10,
                resumed_handshakes: 9,
                full_handshakes: 1,
            },
            transfers: vec![Transfer {
                direction: Direction::Download,
                path: "big\tfile\u{1}".into(),
                done: 3 * 1024 * 1024,
                size: Some(8 * 1024 * 1024),
                elapsed: Duration::from_secs(2),
            }],
            uploads: Uploads {
                pending_files: 1,
                pending_bytes: 10,
                failed: vec!["/var/cache/x".into()],
                streamed: 1,
                staged: 2,
                appended: 3,
                patched: 4,
                rest_stor: "in place".into(),
            },
            cache: CacheUse {
                entries: 5,
                listings: 2,
                hits: 3,
                misses: 1,
                content: Some(ContentUse {
                    bytes: 2 << 20,
                    limit: 1 << 30,
                    blocks: 2,
                    hits: 9,
                    misses: 1,
                    damaged: 0,
                }),
            },
        }
    }

    #[test]
    fn the_text_names_every_part() {
        let text = sample().to_text();
        for part in [
            "pid 42",
            "1 h 2 min",
            "3 open (1 busy, 2 idle), at most 4; TLSv1.3",
            "9 resumed TLS, 1 full handshakes",
            "down 3.0 MiB of 8.0 MiB, 1.5 MiB/s",
            "1 pending (10 B), 1 failed",
            "2 staged, 3 appended, 4 patched",
            "kept locally: /var/cache/x",
            "REST+STOR: in place",
            "75% hits",
            "2.0 MiB of 1.0 GiB in 2 blocks; 9 hits, 1 misses (90% hits)",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_json_escapes_what_it_must() {
        let json = sample().to_json();
        assert!(
            json.contains(r#""mountpoint":"/mnt/a \"quoted\"\\dir""#),
            "{json}"
        );
        assert!(json.contains(r#""path":"big\tfile\u0001""#), "{json}");
        assert!(json.contains(r#""tls":"TLSv1.3""#), "{json}");
        assert!(json.contains(r#""rest_stor":"in place""#), "{json}");
        assert!(json.contains(r#""size":8388608"#), "{json}");
        assert!(
            json.contains(r#""content":{"bytes":2097152,"limit":1073741824"#),
            "{json}"
        );
        assert!(!json.contains('\n'));
        // Balanced, as a parser would need (no brace inside strings here).
        let open = json.matches('{').count();
        assert_eq!(open, json.matches('}').count());
        let mut unknown = sample();
        unknown.sessions.tls = None;
        unknown.transfers[0].size = None;
        let json = unknown.to_json();
        assert!(json.contains(r#""tls":null"#) && json.contains(r#""size":null"#));
    }
}
