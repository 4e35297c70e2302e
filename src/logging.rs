//! A small logger: one line per record, UTC time, level, message; to stderr
//! or to a file. Nothing that reaches it ever contains a password (the
//! credentials type cannot be printed).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

use parking_lot::Mutex;

struct Logger {
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

enum Sink {
    Stderr,
    File(File),
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
            && (is_ours(metadata.target()) || metadata.level() <= log::Level::Warn)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:5} {}\n",
            crate::ftp::time::format_ftp_timestamp(SystemTime::now()),
            record.level(),
            record.args()
        );
        // A log that cannot be written must not stop the filesystem.
        let _ = match &mut *self.sink.lock() {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(file) => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        if let Sink::File(file) = &mut *self.sink.lock() {
            let _ = file.flush();
        }
    }
}

/// Our own records, and warnings or worse from the libraries (rustls and
/// fuser are chatty at debug level).
fn is_ours(target: &str) -> bool {
    target.starts_with("ftpsfs")
}

/// Installs the logger once for the process.
pub fn init(level: log::LevelFilter, file: Option<&Path>) -> Result<(), String> {
    let sink = match file {
        None => Sink::Stderr,
        Some(path) => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?,
        ),
    };
    let logger = Box::new(Logger {
        level,
        sink: Mutex::new(sink),
    });
    log::set_boxed_logger(logger).map_err(|e| format!("logger: {e}"))?;
    log::set_max_level(level);
    Ok(())
}
