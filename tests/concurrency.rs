//! Many processes competing for one lock: no two holders may ever overlap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::Backend;

/// What one holder did, by the test process's monotonic clock: from the moment its acquire
/// returned until the moment its release started. The real holding time contains this interval,
/// so any overlap here is a real overlap.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub worker: usize,
    pub start: Instant,
    pub end: Instant,
}

/// Runs `workers` threads, each taking and releasing the lock `cycles` times through the real
/// binary, and returns every holding interval. Panics on any overlap.
pub fn contend(b: &Backend, env: &str, workers: usize, cycles: usize) -> Vec<Interval> {
    let inside = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let inside = Arc::clone(&inside);
            let log = Arc::clone(&log);
            scope.spawn(move || {
                let build = format!("w{worker}");
                for _ in 0..cycles {
                    b.cmd()
                        .env("DEPLOY_LOCK_BUILD_ID", &build)
                        .env("DEPLOY_LOCK_POLL_SECONDS", "0.02")
                        .args(["acquire", env, "--wait=5"])
                        .run()
                        .code(0);
                    let start = Instant::now();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    std::thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let end = Instant::now();
                    log.lock()
                        .expect("log")
                        .push(Interval { worker, start, end });
                    b.cmd()
                        .env("DEPLOY_LOCK_BUILD_ID", &build)
                        .args(["release", env])
                        .run()
                        .code(0);
                }
            });
        }
    });
    let mut intervals = log.lock().expect("log").clone();
    assert_no_overlap(&mut intervals);
    assert_eq!(intervals.len(), workers * cycles);
    intervals
}

pub fn assert_no_overlap(intervals: &mut [Interval]) {
    intervals.sort_by_key(|i| i.start);
    for pair in intervals.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "worker {} held the lock while worker {} still did",
            pair[1].worker,
            pair[0].worker
        );
    }
}

#[test]
fn sixteen_processes_ten_cycles_local_store() {
    contend(&Backend::file(), "race", 16, 10);
}

#[test]
fn sixteen_processes_ten_cycles_azurite() {
    contend(&Backend::azurite("race"), "race", 16, 10);
}

#[cfg(unix)]
#[test]
fn a_signal_during_a_wait_leaves_no_lock() {
    for b in crate::support::backends() {
        for signal in ["-TERM", "-INT"] {
            b.cmd()
                .env("DEPLOY_LOCK_BUILD_ID", "holder")
                .args(["acquire", "sig"])
                .run()
                .code(0);
            let waiter = b
                .cmd()
                .env("DEPLOY_LOCK_BUILD_ID", "waiter")
                .args(["acquire", "sig", "--wait=1"])
                .spawn();
            std::thread::sleep(Duration::from_millis(400));
            b.cmd()
                .env("DEPLOY_LOCK_BUILD_ID", "holder")
                .args(["release", "sig"])
                .run()
                .code(0);
            // The waiter is now racing to take the lock; interrupt it at once.
            let pid = waiter.id().to_string();
            let killed = std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
            assert!(killed.success());
            let out = crate::support::Out::from(waiter.wait_with_output().expect("waiter"));
            assert!(
                out.code == 0 || out.code == 130,
                "{signal}: {}{}",
                out.stdout,
                out.stderr
            );
            if out.code == 130 {
                // Interrupted: whatever it had taken it gave back.
                b.cmd()
                    .env("DEPLOY_LOCK_BUILD_ID", "third")
                    .args(["check", "sig"])
                    .run()
                    .code(0);
            } else {
                b.cmd()
                    .env("DEPLOY_LOCK_BUILD_ID", "waiter")
                    .args(["release", "sig"])
                    .run()
                    .code(0);
            }
        }
    }
}
