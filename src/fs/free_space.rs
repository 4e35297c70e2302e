//! The free space `statfs` shows: what the store says (AVBL), asked at most
//! once per `FREE_SPACE_TTL`, because `df`, file managers and some copy
//! tools call statfs often and each answer costs a round trip. Where the
//! store cannot say, "unknown" (0) as before.
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::store::RemoteStore;

/// How long an answer is shown before the server is asked again.
pub const FREE_SPACE_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct FreeSpace {
    /// The last answer and when it came. Held while asking, so that
    /// concurrent callers wait for one question.
    last: Mutex<Option<(Instant, Option<u64>)>>,
}

impl FreeSpace {
    pub(super) fn bytes(&self, store: &dyn RemoteStore) -> Option<u64> {
        let mut last = self.last.lock();
        if let Some((when, bytes)) = *last {
            if when.elapsed() < FREE_SPACE_TTL {
                return bytes;
            }
        }
        let bytes = store.free_space();
        *last = Some((Instant::now(), bytes));
        bytes
    }
}
