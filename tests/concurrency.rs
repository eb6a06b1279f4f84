//! Many processes competing for one lock: no two holders may ever overlap.

use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::proxy::XorShift;
use crate::support::{Backend, Cmd, Out};

/// What one holder did, by the test process's monotonic clock: from the moment its acquire
/// returned until the moment its release started. The real holding time contains this interval,
/// so any overlap here is a real overlap.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interval {
    pub(crate) worker: usize,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// How a contention run is set up.
#[derive(Debug, Clone)]
pub(crate) struct Contention {
    pub(crate) workers: usize,
    pub(crate) cycles: usize,
    /// Extra environment for every process, after the backend's (a proxy's connection string).
    pub(crate) env: Vec<(String, String)>,
    /// `--wait` of every acquire: each process must get the lock within it.
    pub(crate) wait_minutes: u32,
    /// Faults are injected, so a run may fail (exit 1) with a clear message; it is tried again.
    pub(crate) faults: bool,
    /// Percent of the binary's runs killed with SIGKILL at a random moment (0: none).
    pub(crate) kill_percent: u64,
    pub(crate) seed: u64,
}

impl Contention {
    pub(crate) fn new(workers: usize, cycles: usize) -> Self {
        Self {
            workers,
            cycles,
            env: Vec::new(),
            wait_minutes: 2,
            faults: false,
            kill_percent: 0,
            seed: 1,
        }
    }
}

/// What a contention run saw besides the intervals.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) intervals: Vec<Interval>,
    /// Runs that ended in a reported failure (exit 1), and their distinct first lines.
    pub(crate) failures: usize,
    pub(crate) messages: std::collections::BTreeSet<String>,
    /// Runs killed with SIGKILL.
    pub(crate) kills: usize,
    /// Releases whose failed first run had landed: the retry found the lock already taken by
    /// another worker.
    pub(crate) released_unanswered: usize,
    pub(crate) elapsed: Duration,
}

/// Checks one finished run: never a panic; a failure is one clear error line with exit 1
/// (allowed only when faults are injected). Returns the message for a failure.
#[track_caller]
pub(crate) fn judge(out: &Out, what: &str, failures_allowed: bool) -> Option<String> {
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "{what} panicked:\n{}{}",
        out.stdout,
        out.stderr
    );
    match out.code {
        0 => None,
        1 if failures_allowed => {
            let line = out
                .stderr
                .lines()
                .find(|l| l.starts_with("error: "))
                .unwrap_or_else(|| {
                    panic!("{what}: exit 1 without an `error:` line:\n{}", out.stderr)
                });
            assert!(
                line.len() > 40 && line.to_lowercase().contains("storage"),
                "{what}: unclear failure message: {line}"
            );
            Some(line.to_owned())
        }
        code => panic!(
            "{what}: unexpected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout, out.stderr
        ),
    }
}

/// Runs a command, killing it with SIGKILL at a random moment when `kill` is given.
/// `None` when it was killed before it finished.
fn run_maybe_killed(cmd: Cmd, kill: Option<Duration>) -> Option<Out> {
    let Some(after) = kill else {
        return Some(cmd.run());
    };
    let mut child: Child = cmd.spawn();
    let deadline = Instant::now() + after;
    loop {
        if child.try_wait().expect("poll the child").is_some() {
            return Some(Out::from(child.wait_with_output().expect("child output")));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().expect("reap the child");
            let out = Out::from(child.wait_with_output().expect("child output"));
            // It may have finished just before the signal: then the run counts as it ended.
            return status.code().map(|_| out);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `workers` threads, each taking and releasing the lock `cycles` times through the real
/// binary, and returns every holding interval. Panics on any overlap.
pub(crate) fn contend(b: &Backend, env: &str, workers: usize, cycles: usize) -> Vec<Interval> {
    contend_with(b, env, &Contention::new(workers, cycles)).intervals
}

/// The same under faults: every worker completes `cycles` acquire/release pairs, trying a failed
/// or killed run again (bounded). A failed acquire may have landed (its answer lost): the
/// worker's next acquire is re-entrant for its own run and job, so it finds its lock again.
pub(crate) fn contend_with(b: &Backend, env: &str, c: &Contention) -> Report {
    let started = Instant::now();
    let inside = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(Mutex::new(Report::default()));
    // Every run of a worker may fail or be killed; beyond this many, something is stuck.
    let max_runs = c.cycles * 2 * 10 + 20;
    std::thread::scope(|scope| {
        for worker in 0..c.workers {
            let inside = Arc::clone(&inside);
            let report = Arc::clone(&report);
            scope.spawn(move || {
                let mut rng = XorShift::new(c.seed.wrapping_mul(1000).wrapping_add(worker as u64));
                let build = format!("w{worker}");
                let mut runs = 0;
                let cmd = || {
                    let mut cmd = b
                        .cmd()
                        .env("DEPLOY_LOCK_BUILD_ID", &build)
                        .env("DEPLOY_LOCK_POLL_SECONDS", "0.02");
                    for (k, v) in &c.env {
                        cmd = cmd.env(k, v);
                    }
                    cmd
                };
                // `retry`: a release run again after a failed one. Its first run may have
                // landed with the answer lost, and someone else may hold the lock by now: then
                // "not yours" (exit 3) is the truth, and the release is done.
                let mut attempt = |args: &[&str], rng: &mut XorShift, retry: bool| -> Option<Out> {
                    runs += 1;
                    assert!(runs <= max_runs, "worker {worker} made {runs} runs: stuck");
                    let kill = (c.kill_percent > 0 && rng.chance(c.kill_percent))
                        .then(|| Duration::from_millis(rng.below(40)));
                    let out = run_maybe_killed(cmd().args(args), kill);
                    let Some(out) = out else {
                        report.lock().expect("report").kills += 1;
                        return None;
                    };
                    if retry && out.code == 3 {
                        report.lock().expect("report").released_unanswered += 1;
                        return Some(out);
                    }
                    // Judged before the report is locked: a failed judgement panics, and the
                    // other workers should not then fail on a poisoned lock.
                    let what = format!("worker {worker}: {args:?}");
                    let verdict = judge(&out, &what, c.faults);
                    if let Some(msg) = verdict {
                        let mut r = report.lock().expect("report");
                        r.failures += 1;
                        // Digits vary (ports, request ids, attempt counts).
                        r.messages
                            .insert(msg.replace(|ch: char| ch.is_ascii_digit(), "#"));
                        return None;
                    }
                    Some(out)
                };
                let wait = format!("--wait={}", c.wait_minutes);
                for _ in 0..c.cycles {
                    loop {
                        if let Some(out) = attempt(&["acquire", env, &wait], &mut rng, false) {
                            assert!(
                                out.stdout.contains("Acquired the deployment lock")
                                    || out.stdout.contains("Still hold"),
                                "worker {worker}: exit 0 without a confirmation:\n{}",
                                out.stdout
                            );
                            break;
                        }
                    }
                    let start = Instant::now();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    std::thread::sleep(Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let end = Instant::now();
                    report
                        .lock()
                        .expect("report")
                        .intervals
                        .push(Interval { worker, start, end });
                    let mut retry = false;
                    while attempt(&["release", env], &mut rng, retry).is_none() {
                        retry = true;
                    }
                }
            });
        }
    });
    let mut report = std::mem::take(&mut *report.lock().expect("report"));
    assert_no_overlap(&mut report.intervals);
    assert_eq!(report.intervals.len(), c.workers * c.cycles);
    report.elapsed = started.elapsed();
    report
}

pub(crate) fn assert_no_overlap(intervals: &mut [Interval]) {
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
            send_signal(&waiter, signal);
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

/// The lock as stored, with the store's clock, read through the library (no binary involved).
fn stored(b: &Backend, env: &str) -> deploy_lock::store::Read {
    use deploy_lock::store::Store as _;
    let key = format!("deployment-lock-{env}");
    match b {
        Backend::File(dir) => {
            deploy_lock::store::file::FileStore::new(dir.path(), "deployment-locks").get(&key)
        }
        Backend::Azurite { .. } => b.azure_store().get(&key),
    }
    .expect("read the lock directly")
}

fn token_in(read: &deploy_lock::store::Read) -> Option<String> {
    let blob = read.blob.as_ref()?;
    deploy_lock::lock::record::Holder::parse(&blob.data)
        .record()
        .map(|r| r.token.clone())
}

/// A holder killed with SIGKILL (its heartbeat dies with it) is taken over by a waiter only once
/// its ttl has passed by the store's clock: every look at the store before `Last-Modified + ttl`
/// still finds the holder, and the waiter's own write is at least a ttl later.
#[cfg(unix)]
#[test]
fn a_killed_holder_is_taken_over_after_its_ttl_never_before() {
    let ttl = chrono::Duration::seconds(2);
    for b in crate::support::backends() {
        let mut holder = b
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "holder")
            .args(["run", "crash", "--ttl-minutes", "2s", "--", "sleep", "20"])
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while stored(&b, "crash").blob.is_none() {
            assert!(
                Instant::now() < deadline,
                "{}: the holder never took the lock",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        holder.kill().expect("SIGKILL the holder");
        holder.wait().expect("reap the holder");
        // A renewal sent just before the kill may still land: let it.
        std::thread::sleep(Duration::from_millis(300));
        let last = stored(&b, "crash");
        let holder_token = token_in(&last).expect("the holder's record");
        let holder_modified = last.blob.as_ref().expect("blob").last_modified;

        let waiter = b
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "waiter")
            .args(["acquire", "crash", "--wait=1", "--output", "json"])
            .spawn();
        let waiter_pid = waiter.id();
        let waiter = std::thread::spawn(move || waiter.wait_with_output());
        let mut looks_before_ttl = 0;
        while !waiter.is_finished() {
            let read = stored(&b, "crash");
            if read.now <= holder_modified + ttl {
                looks_before_ttl += 1;
                assert_eq!(
                    token_in(&read).as_deref(),
                    Some(holder_token.as_str()),
                    "{}: the lock changed hands before the ttl by the store's clock",
                    b.name()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Out::from(waiter.join().expect("join").expect("waiter output"));
        let json = out.code(0).json();
        assert_eq!(json["stolen_from"]["build_id"], "holder", "{}", b.name());
        let after = stored(&b, "crash");
        assert_eq!(token_in(&after).as_deref(), json["token"].as_str());
        let taken = after.blob.expect("blob").last_modified;
        assert!(
            taken - holder_modified >= ttl,
            "{}: taken over at {taken}, only {} after the holder's last write",
            b.name(),
            taken - holder_modified
        );
        eprintln!(
            "{}: waiter (pid {waiter_pid}) took over {} after the holder's last write; {looks_before_ttl} looks before the ttl",
            b.name(),
            taken - holder_modified
        );
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "waiter")
            .args(["release", "crash"])
            .run()
            .code(0);
    }
}

/// SIGTERM or SIGINT while `acquire --wait` is still blocked: the waiter exits 130 and the store
/// is exactly as it was (the holder's lock untouched, nothing of the waiter's left).
#[cfg(unix)]
#[test]
fn a_signal_while_blocked_leaves_the_store_as_it_was() {
    use std::io::BufRead as _;
    for b in crate::support::backends() {
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "holder")
            .args(["acquire", "blocked"])
            .run()
            .code(0);
        for signal in ["-TERM", "-INT"] {
            let before = b.snapshot();
            let mut waiter = b
                .cmd()
                .env("DEPLOY_LOCK_BUILD_ID", "waiter")
                .args(["acquire", "blocked", "--wait=1"])
                .spawn();
            // It announces the wait before its first look at the lock; a few poll intervals
            // later, alive while the holder still holds, it is blocked in the wait.
            let stderr = waiter.stderr.take().expect("stderr");
            let (seen_tx, seen_rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut lines = Vec::new();
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains("waiting up to") {
                        let _ = seen_tx.send(());
                    }
                    lines.push(line);
                }
                lines.join("\n")
            });
            seen_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the waiter never started waiting");
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                waiter.try_wait().expect("poll").is_none(),
                "the waiter ended by itself"
            );
            send_signal(&waiter, signal);
            let status = waiter.wait().expect("waiter");
            let stderr = reader.join().expect("reader");
            assert_eq!(status.code(), Some(130), "{signal}: {stderr}");
            assert!(stderr.contains("interrupted"), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(
                before,
                b.snapshot(),
                "{}: {signal} changed the store",
                b.name()
            );
        }
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "holder")
            .args(["release", "blocked"])
            .run()
            .code(0);
    }
}

/// Sends `signal` (`-TERM`, `-INT`) to a child process, as a runner or a terminal would.
#[cfg(unix)]
fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal} failed");
}
