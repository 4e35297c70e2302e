//! Until a connector's credentials have been accepted once, one session at a
//! time sends them; the others wait (their TCP and TLS handshakes done) for
//! its answer, and a refusal ends them all with the same error.
//!
//! A refusal also stands, without asking the server, for [`REFUSAL_HOLDS`]
//! after it: a mount whose password was changed on the server sends one
//! wrong password per that time, not one per operation a program tries.
//!
//! Why: servers lock an account, or ban the address, after a few failed
//! logins (Pure-FTPd, FileZilla Server, fail2ban on vsftpd's log). Start-up
//! logs its sessions in at once, so a wrong password would otherwise count
//! one failure per session on every mount attempt.
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{Error, Result};

/// How long a refusal answers for the server.
pub(super) const REFUSAL_HOLDS: Duration = Duration::from_secs(5);

pub(super) struct LoginGate {
    state: Mutex<State>,
    settled: Condvar,
    refusal_holds: Duration,
}

impl Default for LoginGate {
    fn default() -> LoginGate {
        LoginGate::holding_refusals_for(REFUSAL_HOLDS)
    }
}

#[derive(Default)]
struct State {
    /// The server accepted the credentials: every session may send them.
    accepted: bool,
    /// A session is sending them and the others wait for its answer.
    trying: bool,
    /// How many times the server refused them, and its last refusal.
    refusals: u64,
    last_refusal: Option<Refusal>,
}

struct Refusal {
    command: String,
    code: u16,
    text: String,
    at: Instant,
}

impl LoginGate {
    pub(super) fn holding_refusals_for(refusal_holds: Duration) -> LoginGate {
        LoginGate {
            state: Mutex::default(),
            settled: Condvar::new(),
            refusal_holds,
        }
    }

    /// How many refusals so far: taken when a session starts connecting, and
    /// given to [`LoginGate::enter`].
    pub(super) fn refusals(&self) -> u64 {
        self.state.lock().refusals
    }

    /// Waits until this session may send the credentials: at once when they
    /// were accepted before, else when no other session is trying them. A
    /// refusal that came since `refusals_before` (while this session
    /// connected or waited), or less than the hold time ago, is returned as
    /// this session's error. The wait is bounded by `at_most` (the other
    /// login should have ended by then); after it, this session goes ahead.
    pub(super) fn enter(&self, refusals_before: u64, at_most: Duration) -> Result<Pass<'_>> {
        let deadline = Instant::now() + at_most;
        let mut state = self.state.lock();
        loop {
            if let Some(refusal) = &state.last_refusal {
                if state.refusals != refusals_before || refusal.at.elapsed() < self.refusal_holds {
                    return Err(Error::Reply {
                        command: refusal.command.clone(),
                        code: refusal.code,
                        text: refusal.text.clone(),
                    });
                }
            }
            if !state.trying || state.accepted {
                break;
            }
            if self.settled.wait_until(&mut state, deadline).timed_out() {
                return Ok(Pass::waiter(self));
            }
        }
        if state.accepted {
            return Ok(Pass::waiter(self));
        }
        state.trying = true;
        Ok(Pass {
            gate: self,
            trying: true,
        })
    }

    fn settle(&self, trying: bool, outcome: Option<&Result<()>>) {
        let mut state = self.state.lock();
        if trying {
            state.trying = false;
        }
        match outcome {
            Some(Ok(())) => state.accepted = true,
            Some(Err(Error::Reply {
                command,
                code,
                text,
            })) if (500..600).contains(code) => {
                // Refused for good (530 and the like), not "try later": the
                // credentials are wrong, also for sessions that came after.
                state.accepted = false;
                state.refusals += 1;
                state.last_refusal = Some(Refusal {
                    command: command.clone(),
                    code: *code,
                    text: text.clone(),
                    at: Instant::now(),
                });
            }
            // The connection failed or the server said "later": the next
            // session tries again.
            _ => {}
        }
        self.settled.notify_all();
    }
}

/// The right to send the credentials; says how it went with [`Pass::settle`].
/// Dropped unsettled (an early return), it lets the next session try.
pub(super) struct Pass<'a> {
    gate: &'a LoginGate,
    /// This session is the one the others wait for.
    trying: bool,
}

impl<'a> Pass<'a> {
    fn waiter(gate: &'a LoginGate) -> Pass<'a> {
        Pass {
            gate,
            trying: false,
        }
    }

    /// Records the login's outcome, which the waiting sessions act on.
    pub(super) fn settle(self, outcome: &Result<()>) {
        self.gate.settle(self.trying, Some(outcome));
        std::mem::forget(self);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.settle(self.trying, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn refused() -> Result<()> {
        Err(Error::Reply {
            command: "login (PASS)".into(),
            code: 530,
            text: "Login incorrect.".into(),
        })
    }

    #[test]
    fn a_refusal_ends_the_sessions_that_waited_for_it() {
        let gate = Arc::new(LoginGate::holding_refusals_for(Duration::from_millis(300)));
        let first = gate.enter(0, Duration::from_secs(5)).unwrap();
        let waiter = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.enter(0, Duration::from_secs(5)).map(drop))
        };
        std::thread::sleep(Duration::from_millis(100));
        first.settle(&refused());
        let err = waiter.join().unwrap().expect_err("the same refusal");
        assert_eq!(err.code(), Some(530));
        // A session that started connecting before the refusal and comes
        // to the gate after it is refused too, without trying.
        let late = gate.enter(0, Duration::from_secs(5)).map(drop);
        assert_eq!(late.expect_err("refused").code(), Some(530));
        // So is a new one right after it.
        let soon = gate
            .enter(gate.refusals(), Duration::from_secs(5))
            .map(drop);
        assert_eq!(soon.expect_err("refused").code(), Some(530));
        // Once the refusal no longer holds, the server is asked again.
        std::thread::sleep(Duration::from_millis(400));
        let again = gate
            .enter(gate.refusals(), Duration::from_millis(10))
            .unwrap();
        assert!(again.trying);
    }

    #[test]
    fn once_accepted_nobody_waits() {
        let gate = LoginGate::default();
        gate.enter(0, Duration::from_secs(5))
            .unwrap()
            .settle(&Ok(()));
        let a = gate.enter(0, Duration::from_secs(5)).unwrap();
        let b = gate.enter(0, Duration::from_secs(5)).unwrap();
        assert!(!a.trying && !b.trying);
    }

    #[test]
    fn a_try_that_ends_without_an_answer_lets_the_next_one_try() {
        let gate = Arc::new(LoginGate::default());
        let first = gate.enter(0, Duration::from_secs(5)).unwrap();
        let next = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.enter(0, Duration::from_secs(5)).map(|p| p.trying))
        };
        std::thread::sleep(Duration::from_millis(100));
        drop(first); // connection lost before the server answered
        assert_eq!(next.join().unwrap().ok(), Some(true));
    }

    #[test]
    fn a_try_that_never_ends_does_not_block_for_ever() {
        let gate = LoginGate::default();
        let _stuck = gate.enter(0, Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let pass = gate.enter(0, Duration::from_millis(200)).unwrap();
        assert!(!pass.trying);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
