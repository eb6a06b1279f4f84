//! How many requests waiters send (docs/design.md, "Requests"): the waiters' queue paces them by
//! their place, so the store's load stays about three requests a second however many wait, and
//! a freed lock still passes to the first waiter at its next one-second look.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::Backend;
use crate::support::azurite::azurite;
use crate::support::proxy::{Plan, Proxy};

/// Waiter processes: as many as this test's machine runs without distorting the count. The
/// cadence that bounds fifty is the same for ten (`lock::queue::cadence`, unit-tested for 50).
const WAITERS: usize = 10;

fn total(proxy: &Proxy) -> u64 {
    proxy.forwarded().values().sum()
}

#[test]
fn waiters_send_about_three_requests_a_second_and_the_first_gets_a_freed_lock() {
    let proxy = Proxy::start(Plan::pass());
    let b = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container: azurite().unique_container("polling"),
    };
    let lean = ["--no-fence", "--no-audit"];
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "holder")
        .args(["acquire", "env"])
        .args(lean)
        .run()
        .code(0);
    // A poll of one second: without the queue's pacing each waiter would send about three
    // requests a second (refresh its ticket, list the queue, read the lock).
    let mut waiters: Vec<Child> = (0..WAITERS)
        .map(|i| {
            b.cmd()
                .env("DEPLOY_LOCK_BUILD_ID", format!("waiter-{i}"))
                .args(["acquire", "env", "--wait=3", "--poll-seconds", "1"])
                .args(lean)
                .spawn()
        })
        .collect();
    // Every waiter has joined and looked once.
    std::thread::sleep(Duration::from_secs(4));
    let before = total(&proxy);
    let window = Duration::from_secs(8);
    std::thread::sleep(window);
    let sent = total(&proxy) - before;
    // About three a second, with room for the waiters' jitter; unpaced it would be about 240.
    assert!(
        sent <= 4 * window.as_secs(),
        "{WAITERS} waiters sent {sent} requests in {window:?}"
    );
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "holder")
        .args(["release", "env"])
        .args(lean)
        .run()
        .code(0);
    // The first waiter takes the freed lock; the others keep waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut taken = None;
    while taken.is_none() && Instant::now() < deadline {
        for (i, w) in waiters.iter_mut().enumerate() {
            if let Some(status) = w.try_wait().expect("poll a waiter") {
                assert_eq!(status.code(), Some(0), "waiter {i}");
                taken = Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in &mut waiters {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert!(taken.is_some(), "no waiter took the freed lock");
}
