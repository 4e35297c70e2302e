//! What the control socket asks of a mount. The mount implements it over
//! its filesystem core and session pool (`run`); tests implement it over a
//! core on the in-memory store.
use super::status::Status;

pub trait Target: Send + Sync {
    fn status(&self) -> Status;
    /// Forgets cached listings and attributes under `path` (relative to the
    /// mount's root; empty for all), in the mount and in the kernel. The
    /// message says what was forgotten.
    fn refresh(&self, path: &[u8]) -> Result<String, String>;
    /// Uploads every pending change; `progress` is told how far it got
    /// after each file. Ok with a summary, or an error naming what failed.
    fn sync(&self, progress: &mut dyn FnMut(&str)) -> Result<String, String>;
}
