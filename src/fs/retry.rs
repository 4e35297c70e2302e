//! How long and how often a cut transfer is tried again: at once (a reset
//! connection is most often fine on a new one), then after waits that
//! double from 0.2 s up to 5 s, for at most `retry_time` without progress (an
//! upload that gets further between two cuts starts its clock again, so a
//! long transfer cut now and then is not failed for being long).
use std::thread;
use std::time::{Duration, Instant};

use crate::store;

/// The first wait after an attempt again at once failed; it doubles up to
/// the next.
const FIRST: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(5);

pub(super) struct Backoff {
    limit: Duration,
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    pub fn new(limit: Duration) -> Backoff {
        Backoff {
            limit,
            next: Duration::ZERO,
            deadline: Instant::now() + limit,
        }
    }

    /// The transfer got further: the time limit and the waits start again.
    pub fn progressed(&mut self) {
        self.next = Duration::ZERO;
        self.deadline = Instant::now() + self.limit;
    }

    /// Sleeps before the next attempt, or gives up with `err` if that would
    /// pass the deadline.
    pub fn wait(&mut self, err: store::Error) -> store::Result<()> {
        if Instant::now() + self.next > self.deadline {
            return Err(err);
        }
        thread::sleep(self.next);
        self.next = (self.next * 2).clamp(FIRST, MAX);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_at_the_deadline_and_progress_restarts_the_clock() {
        let mut b = Backoff::new(Duration::from_millis(700));
        let err = || store::Error::new(store::ErrorKind::Unavailable, "cut");
        b.wait(err()).expect("at once");
        b.wait(err()).expect("0.2 s");
        b.wait(err()).expect("0.4 s");
        assert!(b.wait(err()).is_err(), "0.8 s more would pass 0.7 s");
        b.progressed();
        b.wait(err()).expect("the clock started again");
    }
}
