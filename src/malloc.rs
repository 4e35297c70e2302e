//! How the C allocator (glibc's malloc, which Rust's default allocator
//! calls) is set up for the mount's process: one arena shared by all
//! threads, so that memory freed on one thread is reused on any other.
//!
//! Why (issue 12, measured on the cut upload of `scripts/bench` step 9 and
//! plain copies of 1 GiB): fuser frees its 16 MiB request buffer after the
//! handshake, which raises glibc's dynamic mmap threshold to 16 MiB (and
//! the trim threshold to 32 MiB) before the first request. From then on,
//! every buffer under 16 MiB (an upload's batches of 256 KiB to 1 MiB, read
//! replies, even the FUSE threads' own request buffers, 4 KiB short of the
//! new threshold) comes from the arena of the thread that allocates it, and glibc gives each thread its
//! own arena, up to 8 per core (16 here). A streaming upload's batches are
//! allocated on whichever of the FUSE threads takes the write and freed on
//! the upload thread when they leave the window; each arena keeps what was
//! freed in it, and never gives it back (the 32 MiB trim threshold): the
//! process held up to 16 times one arena's own peak. The mount of step 9
//! peaked at 78.9 to 112.3 MiB in seven runs: at the end, 16 arenas, a
//! dozen of about 20 MiB with 4 to 8 MiB resident each, 49 to 64 MiB free
//! in them; with one arena, 41.7 to 42.7 MiB in seven runs (the upload
//! window of 16 MiB, the queue, the FUSE threads' request buffers), at the
//! same speed and CPU time (0.7 to 1.3 s for 1 GiB either way).
//!
//! Not a fixed mmap threshold (`M_MMAP_THRESHOLD`), which also ends the
//! growth: every buffer above it would be a fresh mmap, its pages faulted
//! in and zeroed each time. A cold 1 GiB read took 6.2 s of CPU instead of
//! 3.9 (830,000 page faults instead of 10,000).
//!
//! One arena means one lock for every thread's allocations, but the small
//! ones are served from each thread's cache (tcache) without it, and the
//! large ones are a few per MiB moved: the CPU time of a 1 GiB read or cut
//! upload did not change.

/// Makes every thread allocate from the main arena. To be called at the
/// start of `main`, before any thread exists (glibc fixes the number of
/// arenas when the second thread first allocates).
pub fn share_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt(3) with an integer parameter and value changes a
    // setting of the allocator and touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
