//! Round trips over a slow link: through the fault proxy with 20 ms added
//! each way, the mount must not spend a command it can do without. A cold
//! `ls -lR` lists each directory once; stat of a listed file and opening a
//! file for reading send no SIZE or MDTM; a small file's upload is one data
//! connection and one SIZE (the check that the server stored it whole,
//! `--verify`, sent with the end of its bytes). Counted from the server's
//! protocol log (the seconds are in `scripts/bench --latency-ms 20`, not
//! here). Each transfer's EPSV is sent as the transfer before it on the
//! same session ends (the data connection is set up ahead), so a window of
//! the log holds as many EPSV as transfers give or take one per session.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::mount::ok;
use common::proxied::Proxied;
use common::proxy::Kind;
use common::scratch::Scratch;

const DIRS: usize = 50;
const FILES_PER_DIR: usize = 4;

/// How many times each verb appears in `commands`.
fn verbs(commands: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in commands {
        let verb = c.split(' ').next().unwrap_or("").to_string();
        *counts.entry(verb).or_insert(0) += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
}

/// Sessions of the mount (its default).
const SESSIONS: usize = 4;

/// The verbs but EPSV, after checking that EPSV came once per transfer,
/// give or take one per session (set up ahead before the window, or
/// after its last transfer for the next).
fn without_epsv(mut counts: BTreeMap<String, usize>, transfers: usize) -> BTreeMap<String, usize> {
    let epsv = counts.remove("EPSV").unwrap_or(0);
    assert!(
        epsv + SESSIONS >= transfers && epsv <= transfers + SESSIONS,
        "{epsv} EPSV for {transfers} transfers"
    );
    counts
}

#[test]
fn a_slow_link_costs_no_command_the_listing_already_answered() {
    let rig = Proxied::start(&[]);
    for kind in [Kind::Control, Kind::Data] {
        rig.proxy.set_latency(kind, Duration::from_millis(20));
    }
    let root = &rig.info.root;
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            std::fs::write(dir.join(format!("f{f}")), vec![b'x'; 1000 + f]).unwrap();
        }
    }
    let mount = rig.mount(&[]);
    let log = || rig.server.commands();
    let since = |before: usize| log()[before..].to_vec();

    // Cold ls -lR: one listing (EPSV + LIST) per directory, the root's included.
    let before = log().len();
    let started = Instant::now();
    ok("ls", &["-lR", &mount.path_str("")], 120);
    let listing_time = started.elapsed();
    assert_eq!(
        without_epsv(verbs(&since(before)), DIRS + 1),
        counts(&[("LIST", DIRS + 1)])
    );

    // stat of listed files: answered from the listing.
    let before = log().len();
    for f in 0..FILES_PER_DIR {
        ok("stat", &[&mount.path_str(&format!("d00/f{f}"))], 30);
    }
    // (An EPSV may still arrive: the one set up ahead after the last listing.)
    let sent: Vec<String> = since(before).into_iter().filter(|c| c != "EPSV").collect();
    assert_eq!(sent, Vec::<String>::new());

    // Opening a listed file for reading: the download and nothing else.
    let before = log().len();
    let body = ok("cat", &[&mount.path_str("d01/f2")], 30).stdout;
    assert_eq!(body, vec![b'x'; 1002]);
    let sent: Vec<String> = since(before).into_iter().filter(|c| c != "EPSV").collect();
    assert_eq!(sent, vec!["RETR d01/f2".to_string()]);

    // 200 small files into a new directory: one data connection each, and
    // the check of its size.
    let local = Scratch::new("latency-upload");
    let tree = local.path("up");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..200 {
        std::fs::write(tree.join(format!("s{i:03}")), format!("small file {i}\n")).unwrap();
    }
    let before = log().len();
    let started = Instant::now();
    ok("cp", &["-r", &local.str("up"), &mount.path_str("up")], 300);
    let upload_time = started.elapsed();
    assert_eq!(
        without_epsv(verbs(&since(before)), 200),
        counts(&[("MKD", 1), ("SIZE", 200), ("STOR", 200)])
    );
    eprintln!(
        "20 ms each way: cold ls -lR of {} dirs {:.2} s; cp -r of 200 small files {:.2} s",
        DIRS + 1,
        listing_time.as_secs_f64(),
        upload_time.as_secs_f64()
    );
}
