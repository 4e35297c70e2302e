//! The allocator setting of `ftpsfs::malloc` (issue 12): memory freed on one
//! thread is reused by the next thread that allocates, instead of each
//! thread's arena keeping its own. Replays what the mount's process does:
//! a 16 MiB buffer freed first (fuser's handshake buffer, which raises
//! glibc's mmap threshold), then FUSE threads that each, in turn, allocate
//! and free MiB-sized buffers (a streaming upload's batches).
//!
//! Its own process, without the test harness: the setting must come before
//! the second thread first allocates, as in `main`, and the harness starts
//! its threads before any test runs.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use std::hint::black_box;
    use std::sync::{Arc, Barrier, Mutex};

    /// Threads that take writes, as the mount's FUSE threads do.
    const THREADS: usize = 12;
    /// What each thread holds during its turn: 8 batches of 1 MiB.
    const HELD: usize = 8;
    const MIB: usize = 1024 * 1024;

    ftpsfs::malloc::share_one_arena();
    drop(black_box(vec![0u8; 16 * MIB + 4096]));

    let all_started = Arc::new(Barrier::new(THREADS + 1));
    let all_done = Arc::new(Barrier::new(THREADS + 1));
    let finished = Arc::new(Barrier::new(THREADS + 1));
    let turn = Arc::new(Mutex::new(()));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (all_started, all_done, finished, turn) = (
                Arc::clone(&all_started),
                Arc::clone(&all_done),
                Arc::clone(&finished),
                Arc::clone(&turn),
            );
            std::thread::spawn(move || {
                // Every thread allocates once while all of them live, so
                // that each would get an arena of its own.
                drop(black_box(vec![1u8; 64]));
                all_started.wait();
                {
                    let _turn = turn.lock().unwrap();
                    let held: Vec<Vec<u8>> =
                        (0..HELD).map(|i| black_box(vec![i as u8; MIB])).collect();
                    drop(black_box(held));
                }
                all_done.wait();
                // Alive until measured: a thread that ends gives its arena
                // to the next new thread.
                finished.wait();
            })
        })
        .collect();
    all_started.wait();
    all_done.wait();
    // SAFETY: mallinfo2(3) only reads the allocator's counters.
    let held = unsafe { libc::mallinfo2() }.arena;
    finished.wait();
    for t in threads {
        t.join().unwrap();
    }
    let turns = THREADS * HELD * MIB;
    println!(
        "arenas hold {:.1} MiB after {THREADS} threads each allocated and freed {HELD} MiB in turn",
        held as f64 / MIB as f64
    );
    // One arena: the 8 MiB of a turn, reused by every turn after it (and
    // little else). One per thread: 8 MiB kept in each, 96 MiB.
    assert!(
        held < 3 * HELD * MIB,
        "the arenas hold {held} bytes after {turns} bytes were allocated and freed \
         one thread after another: each thread's arena kept its own"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    println!("glibc's arenas only: nothing to check here");
}
