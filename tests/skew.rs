//! Clock skew: the binary runs with its clock hours ahead or behind (`faketime`, installed by
//! tests/setup-faketime.sh) against an Azurite on the true clock. Staleness is the store's `Date`
//! against the blob's `Last-Modified`, so a skewed machine neither steals a fresh lock nor refuses
//! a stale one.
//!
//! Only the Azure store proves anything here: Azurite keeps the true clock while the binary's is
//! faked. The local store has no clock of its own (it compares file times with the local clock),
//! and two processes on one machine share one clock, so skewing one of them is not a situation
//! that store can meet; see docs/guarantees.md.

use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{Backend, Cmd};

/// `LD_PRELOAD` value that the `faketime` wrapper sets (libfaketime's path).
fn preload() -> &'static str {
    static PRELOAD: OnceLock<String> = OnceLock::new();
    PRELOAD.get_or_init(|| {
        let out = std::process::Command::new("faketime")
            .args(["-f", "+0", "printenv", "LD_PRELOAD"])
            .output()
            .expect(
                "faketime is not installed: run `bash tests/setup-faketime.sh` (tests/run.sh does)",
            );
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!path.is_empty(), "faketime did not set LD_PRELOAD");
        path
    })
}

/// The binary with its wall clock moved by `offset` (`+5h`, `-5h`). The monotonic clock stays
/// true: only the wall clock is what another machine would disagree about.
pub(crate) fn skewed(cmd: Cmd, offset: &str) -> Cmd {
    cmd.env("LD_PRELOAD", preload())
        .env("FAKETIME", offset)
        .env("DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
}

#[test]
fn faketime_moves_the_binarys_clock() {
    // The local store's clock is the machine's: its audit times show the skew took effect.
    let dir = crate::support::TempDir::new("skew");
    let store = format!("file:{}", dir.path().display());
    skewed(Cmd::new(), "+5h")
        .env("DEPLOY_LOCK_STORE", &store)
        .args(["acquire", "probe"])
        .run()
        .code(0);
    let out = Cmd::new()
        .env("DEPLOY_LOCK_STORE", &store)
        .args(["history", "probe", "--output", "json"])
        .run();
    let at = out.code(0).json()["events"][0]["at"]
        .as_str()
        .expect("an event time")
        .to_owned();
    let then = chrono::DateTime::parse_from_rfc3339(&at).expect("rfc3339");
    let ahead = then.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::hours(4),
        "faketime had no effect: the acquire was audited at {at}"
    );
}

#[test]
fn a_skewed_clock_neither_steals_a_fresh_lock_nor_refuses_a_stale_one() {
    let b = Backend::azurite("skew");
    for offset in ["+5h", "-5h", "+3d", "-90m"] {
        // Fresh: held by a run on the true clock with the default 30-minute ttl.
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "true-clock")
            .args(["acquire", "skew"])
            .run()
            .code(0);
        let check = skewed(b.cmd(), offset)
            .env("DEPLOY_LOCK_BUILD_ID", "skewed")
            .args(["check", "skew", "--output", "json"])
            .run();
        let v = check.code(3).json();
        assert_eq!(v["stale"], false, "{offset}");
        let expires = v["expires_in_seconds"].as_i64().expect("expires_in");
        assert!(
            (1700..=1800).contains(&expires),
            "{offset}: expires in {expires} s by the store's clock"
        );
        skewed(b.cmd(), offset)
            .env("DEPLOY_LOCK_BUILD_ID", "skewed")
            .args(["acquire", "skew"])
            .run()
            .code(3)
            .contains("locked by local build true-clock");
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "true-clock")
            .args(["release", "skew"])
            .run()
            .code(0);

        // Stale: a 1-second ttl that has run out by the store's clock.
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "true-clock")
            .args(["acquire", "skew", "--ttl-minutes", "1s"])
            .run()
            .code(0);
        std::thread::sleep(Duration::from_millis(2200));
        skewed(b.cmd(), offset)
            .env("DEPLOY_LOCK_BUILD_ID", "skewed")
            .args(["acquire", "skew"])
            .run()
            .code(0)
            .contains("took over a stale lock on skew from local build true-clock");
        skewed(b.cmd(), offset)
            .env("DEPLOY_LOCK_BUILD_ID", "skewed")
            .args(["release", "skew"])
            .run()
            .code(0);
    }
}
