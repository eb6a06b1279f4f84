//! The lock under network faults: the real binary talks to Azurite through the fault-injecting
//! proxy. Whatever the network does, no two holders overlap, every acquisition is confirmed or
//! reported as failed, nothing is leaked, and every failure is a clear message, never a panic.

use std::time::{Duration, Instant};

use deploy_lock::lock::record::Holder;
use deploy_lock::store::Store as _;

use crate::concurrency::{Contention, Report, contend_with, judge};
use crate::support::azurite::azurite;
use crate::support::proxy::{Fault, Plan, Proxy};
use crate::support::{Backend, Cmd};

/// One container seen two ways: through the proxy (for the binary under test) and directly (to
/// set up and inspect without faults).
struct Faulty {
    proxy: Proxy,
    via: Backend,
    direct: Backend,
}

fn faulty(plan: Plan, hint: &str) -> Faulty {
    let emulator = azurite();
    let container = emulator.unique_container(hint);
    let proxy = Proxy::start(Plan::pass());
    let via = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container: container.clone(),
    };
    let direct = Backend::Azurite {
        connection_string: emulator.connection_string(),
        container,
    };
    // Create the container without faults, so each test measures the lock, not the setup.
    direct.cmd().args(["acquire", "setup"]).run().code(0);
    direct.cmd().args(["release", "setup"]).run().code(0);
    proxy.set_plan(plan);
    Faulty { proxy, via, direct }
}

impl Faulty {
    fn as_build(&self, build: &str) -> Cmd {
        self.via.cmd().env("DEPLOY_LOCK_BUILD_ID", build)
    }

    /// The lock record as stored, read without faults.
    fn holder(&self, env: &str) -> Option<Holder> {
        let read = self
            .direct
            .azure_store()
            .get(&format!("deployment-lock-{env}"))
            .expect("read the lock directly");
        read.blob.map(|b| Holder::parse(&b.data))
    }

    /// Nothing left behind: the lock is free when looked at without faults.
    #[track_caller]
    fn assert_free(&self, env: &str) {
        self.direct
            .cmd()
            .args(["check", env])
            .run()
            .code(0)
            .contains(&format!("{env} is free"));
    }
}

fn token_of(out: &crate::support::Out) -> String {
    out.json()["token"].as_str().expect("token").to_owned()
}

/// A write that Azurite applied but whose answer was lost (reset, or a 500 after applying) is
/// recognised by its token: the acquire succeeds and the lock holds exactly that token.
#[test]
fn an_applied_but_unanswered_create_is_recognised_by_its_token() {
    for fault in [Fault::ResetAfter, Fault::StatusAfter, Fault::Truncate] {
        let f = faulty(Plan::script(&[fault]).only(&["PUT"]), "applied-create");
        let out = f
            .as_build("1")
            .args(["acquire", "env", "--output", "json"])
            .run();
        judge(&out, "acquire", false);
        let token = token_of(&out);
        assert_eq!(
            out.json()["reentrant"],
            false,
            "{}: our own landed create is no nested acquire",
            fault.name()
        );
        let Some(Holder::Current(record)) = f.holder("env") else {
            panic!("{}: no lock record after a confirmed acquire", fault.name());
        };
        assert_eq!(record.token, token, "{}", fault.name());
        assert_eq!(f.proxy.counts()[fault.name()], 1);
        assert!(
            f.proxy.forwarded()["PUT"] >= 2,
            "{}: the create was not retried: {:?}",
            fault.name(),
            f.proxy.forwarded()
        );
        // The audit log says what happened: an acquisition, not a re-entrant refresh.
        assert_eq!(
            events(&f, "env"),
            [("acquire".to_owned(), "1".to_owned())],
            "{}",
            fault.name()
        );
        // Another run is refused; ours releases it.
        f.as_build("2").args(["acquire", "env"]).run().code(3);
        f.as_build("1")
            .args(["release", "env"])
            .run()
            .code(0)
            .contains("Released");
        f.assert_free("env");
    }
}

/// A `run` whose create landed unanswered holds the lock as its own, so it releases it at its
/// end instead of leaving it to a nested caller that does not exist.
#[test]
fn a_run_whose_create_was_applied_but_unanswered_releases_it_at_its_end() {
    let f = faulty(
        Plan::script(&[Fault::ResetAfter]).only(&["PUT"]),
        "applied-run",
    );
    let out = f.via.cmd().args(["run", "env", "--", "true"]).run();
    judge(&out, "run", false);
    out.contains("Acquired the deployment lock on env")
        .contains("Released the deployment lock on env");
    f.assert_free("env");
}

/// The audit log's events of `env` as (event, build id), read without faults.
fn events(f: &Faulty, env: &str) -> Vec<(String, String)> {
    let out = f
        .direct
        .cmd()
        .args(["history", env, "--output", "json"])
        .run();
    out.code(0).json()["events"]
        .as_array()
        .expect("an array of events")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_owned(),
                e["build_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A takeover of a stale lock whose write was applied but unanswered is a takeover: the audit log
/// says whose lock it took, and the lock holds our token.
#[test]
fn an_applied_but_unanswered_takeover_is_audited_as_a_takeover() {
    for fault in [Fault::ResetAfter, Fault::StatusAfter] {
        let f = faulty(Plan::pass(), "applied-steal");
        f.direct
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "old")
            .args(["acquire", "env", "--ttl-minutes", "1s"])
            .run()
            .code(0);
        // Last-Modified and Date have whole seconds: 2.2 s is past a 1 s ttl on any rounding.
        std::thread::sleep(Duration::from_millis(2200));
        // The first write is the create that finds the lock there; the second takes it over.
        f.proxy
            .set_plan(Plan::script(&[Fault::Pass, fault]).only(&["PUT"]));
        let out = f
            .as_build("new")
            .args(["acquire", "env", "--output", "json"])
            .run();
        judge(&out, "acquire", false);
        assert_eq!(f.proxy.counts()[fault.name()], 1, "{}", fault.name());
        let Some(Holder::Current(record)) = f.holder("env") else {
            panic!(
                "{}: no lock record after a confirmed takeover",
                fault.name()
            );
        };
        assert_eq!(record.token, token_of(&out), "{}", fault.name());
        assert_eq!(out.json()["reentrant"], false, "{}", fault.name());
        let seen = events(&f, "env");
        assert_eq!(
            seen,
            [
                ("acquire".to_owned(), "old".to_owned()),
                ("steal".to_owned(), "new".to_owned())
            ],
            "{}",
            fault.name()
        );
        f.as_build("new").args(["release", "env"]).run().code(0);
        f.assert_free("env");
    }
}

/// A release whose delete was applied but unanswered still ends with the lock free, exit 0.
#[test]
fn an_applied_but_unanswered_release_leaves_the_lock_free() {
    for fault in [Fault::ResetAfter, Fault::StatusAfter, Fault::Truncate] {
        let f = faulty(Plan::pass(), "applied-release");
        f.as_build("1").args(["acquire", "env"]).run().code(0);
        f.proxy.set_plan(Plan::script(&[fault]).only(&["DELETE"]));
        let out = f.as_build("1").args(["release", "env"]).run();
        judge(&out, "release", false);
        assert_eq!(f.proxy.counts()[fault.name()], 1, "{}", fault.name());
        f.assert_free("env");
    }
}

/// Faults that never reached Azurite are retried and the acquire succeeds.
#[test]
fn faults_before_the_store_are_retried() {
    for fault in [
        Fault::ResetBefore,
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        Fault::Status {
            status: 500,
            retry_after: Some(1),
        },
        Fault::Delay(300),
    ] {
        let f = faulty(Plan::script(&[fault, fault]), "before");
        let out = f.as_build("1").args(["acquire", "env"]).run();
        judge(&out, "acquire", false);
        assert_eq!(f.proxy.counts()[fault.name()], 2, "{}", fault.name());
        f.as_build("1").args(["release", "env"]).run().code(0);
        f.assert_free("env");
    }
}

/// `Retry-After` is honoured: the retry comes no sooner than the server asked.
#[test]
fn retry_after_is_honoured() {
    let f = faulty(
        Plan::script(&[Fault::Status {
            status: 503,
            retry_after: Some(2),
        }]),
        "retry-after",
    );
    let started = Instant::now();
    f.as_build("1").args(["check", "env"]).run().code(0);
    // An ordering, not a speed: the answer cannot come before the asked-for pause.
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// When the answer to a create is lost and the store stays unreachable, the acquire reports a
/// failure that says the lock may have landed and how to free it; the lock, if it landed,
/// expires after its ttl and is then taken over.
#[test]
fn an_acquire_that_cannot_learn_its_outcome_fails_clearly_and_expires() {
    let mut plan = Plan::sometimes(Fault::ResetBefore, 100, 3);
    // The read of the environment's freeze windows goes through; the create lands unanswered.
    plan.script.push_back(Fault::Pass);
    plan.script.push_back(Fault::ResetAfter);
    let f = faulty(plan, "unknown-outcome");
    let out = f
        .as_build("1")
        .args(["acquire", "env", "--ttl-minutes", "2s"])
        .run();
    let msg = judge(&out, "acquire", true).expect("a reported failure");
    assert!(msg.contains("--token"), "{msg}");
    assert!(msg.contains("ttl"), "{msg}");
    // It did land: held by build 1 until the ttl runs out by the store's clock.
    assert!(matches!(f.holder("env"), Some(Holder::Current(r)) if r.build_id == "1"));
    let taken = wait_for(Duration::from_secs(30), || {
        let out = f
            .direct
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "2")
            .args(["acquire", "env"])
            .run();
        (out.code == 0).then_some(out)
    });
    taken.contains("took over a stale lock");
}

/// A store that accepts reads but never answers writes must not make the acquire loop forever:
/// it ends, within the retry bounds, with a clear error; or, when the writes land unanswered and
/// the read-back shows our token, with the lock held (and a warning that it has no fencing
/// number).
#[test]
fn a_store_that_never_answers_writes_ends_in_a_clear_error() {
    for fault in [Fault::ResetBefore, Fault::ResetAfter] {
        let f = faulty(Plan::sometimes(fault, 100, 5).only(&["PUT"]), "writes-fail");
        let mut child = f.as_build("1").args(["acquire", "env"]).spawn();
        let finished = wait_for_child(&mut child, Duration::from_secs(90));
        let out = crate::support::Out::from(child.wait_with_output().expect("output"));
        assert!(
            finished,
            "{}: acquire still running after 90 s of failing writes ({} requests so far)\n{}",
            fault.name(),
            f.proxy.counts().values().sum::<u64>(),
            out.stderr
        );
        let failed = judge(&out, "acquire", true);
        if fault == Fault::ResetBefore {
            failed.expect("a reported failure");
        } else if failed.is_none() {
            assert!(
                out.stderr.contains("without a fencing number"),
                "{}",
                out.stderr
            );
        }
        f.proxy.set_plan(Plan::pass());
        f.as_build("1").args(["release", "env"]).run().code(0);
        f.assert_free("env");
    }
}

/// Polls `f` until it returns something, at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a child to exit, killing it after `limit`; true when it exited by itself.
fn wait_for_child(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    false
}

fn print(what: &str, report: &Report, proxy: Option<&Proxy>) {
    eprintln!(
        "{what}: {} holdings in {:.1?}, {} reported failures, {} kills; faults {:?}",
        report.intervals.len(),
        report.elapsed,
        report.failures,
        report.kills,
        proxy.map(Proxy::counts).unwrap_or_default()
    );
    for m in &report.messages {
        eprintln!("  failure: {m}");
    }
}

/// Contention through the proxy with `fault` injected into `percent` of the requests.
fn contend_under(fault: Fault, percent: u64, seed: u64) {
    let f = faulty(Plan::sometimes(fault, percent, seed), fault.name());
    let mut c = Contention::new(4, 3);
    c.faults = true;
    c.seed = seed;
    let report = contend_with(&f.via, "race", &c);
    print(fault.name(), &report, Some(&f.proxy));
    assert!(f.proxy.counts().get(fault.name()).copied().unwrap_or(0) > 0);
    f.assert_free("race");
}

#[test]
fn contention_with_latency() {
    contend_under(Fault::Delay(30), 50, 11);
}

#[test]
fn contention_with_resets_before_the_store() {
    contend_under(Fault::ResetBefore, 20, 12);
}

#[test]
fn contention_with_applied_but_unanswered_writes() {
    contend_under(Fault::ResetAfter, 20, 13);
}

#[test]
fn contention_with_server_errors() {
    contend_under(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        20,
        14,
    );
    contend_under(
        Fault::Status {
            status: 500,
            retry_after: Some(1),
        },
        3,
        15,
    );
    contend_under(Fault::StatusAfter, 20, 16);
}

#[test]
fn contention_with_truncated_responses() {
    contend_under(Fault::Truncate, 20, 17);
}

/// The parallel suite's share of the load. The 32 × 20 runs below take minutes each on a 2-core
/// machine, so they are `--ignored` here and `tests/run.sh` runs them alone, one at a time.
#[test]
fn sixteen_processes_five_cycles_azurite_random_faults() {
    let f = faulty(Plan::random_mix(15, 2026), "mix16");
    let mut c = Contention::new(16, 5);
    c.faults = true;
    c.seed = 2026;
    let report = contend_with(&f.via, "race", &c);
    print("azurite, random faults, 16 x 5", &report, Some(&f.proxy));
    assert!(f.proxy.faults() > 0);
    f.assert_free("race");
}

#[test]
fn sixteen_processes_five_cycles_local_store_with_kills() {
    let b = Backend::file();
    let mut c = Contention::new(16, 5);
    c.kill_percent = 10;
    c.seed = 77;
    let report = contend_with(&b, "race", &c);
    print("local store, SIGKILLs, 16 x 5", &report, None);
    assert!(report.kills > 0);
    b.cmd().args(["check", "race"]).run().code(0);
}

/// The load: 32 processes × 20 cycles, on both stores, with and without faults.
#[test]
#[ignore = "minutes each: tests/run.sh runs them on their own, one at a time"]
fn thirty_two_processes_twenty_cycles_azurite_random_faults() {
    let f = faulty(Plan::random_mix(15, 2026), "mix");
    let mut c = Contention::new(32, 20);
    c.wait_minutes = 5;
    c.faults = true;
    c.seed = 2026;
    let report = contend_with(&f.via, "race", &c);
    print("azurite, random faults", &report, Some(&f.proxy));
    assert!(f.proxy.faults() > 0);
    f.assert_free("race");
}

#[test]
#[ignore = "minutes each: tests/run.sh runs them on their own, one at a time"]
fn thirty_two_processes_twenty_cycles_azurite() {
    let b = Backend::azurite("race32");
    let mut c = Contention::new(32, 20);
    c.wait_minutes = 5;
    let report = contend_with(&b, "race", &c);
    print("azurite", &report, None);
    b.cmd().args(["check", "race"]).run().code(0);
}

#[test]
#[ignore = "minutes each: tests/run.sh runs them on their own, one at a time"]
fn thirty_two_processes_twenty_cycles_local_store() {
    let b = Backend::file();
    let mut c = Contention::new(32, 20);
    c.wait_minutes = 5;
    let report = contend_with(&b, "race", &c);
    print("local store", &report, None);
    b.cmd().args(["check", "race"]).run().code(0);
}

/// Crash faults on the local store: processes killed at random moments (while creating,
/// replacing, deleting, or waiting). A killed acquire may or may not have taken the lock; the
/// worker's next acquire finds it again (same run and job), so nothing stays locked.
#[test]
#[ignore = "minutes each: tests/run.sh runs them on their own, one at a time"]
fn thirty_two_processes_twenty_cycles_local_store_with_kills() {
    let b = Backend::file();
    let mut c = Contention::new(32, 20);
    c.wait_minutes = 5;
    c.kill_percent = 10;
    c.seed = 77;
    let report = contend_with(&b, "race", &c);
    print("local store, SIGKILLs", &report, None);
    assert!(report.kills > 0);
    b.cmd().args(["check", "race"]).run().code(0);
}

/// A renewal whose write Azurite applied but whose answer was lost (the client's retry then meets
/// 412) still carries our token: the renewal succeeded, and the lock stays ours.
#[test]
fn a_renewal_whose_answer_was_lost_keeps_the_lock() {
    for fault in [Fault::ResetAfter, Fault::StatusAfter] {
        let f = faulty(Plan::pass(), "applied-renew");
        f.as_build("1").args(["acquire", "env"]).run().code(0);
        f.proxy.set_plan(Plan::script(&[fault]).only(&["PUT"]));
        f.as_build("1")
            .args(["renew", "env"])
            .run()
            .code(0)
            .contains("Renewed");
        assert_eq!(f.proxy.counts()[fault.name()], 1, "{}", fault.name());
        assert!(
            matches!(f.holder("env"), Some(Holder::Current(r)) if r.build_id == "1"),
            "{}",
            fault.name()
        );
        f.as_build("1").args(["release", "env"]).run().code(0);
        f.assert_free("env");
    }
}

/// `run`'s heartbeat meets the same lost answers: the command runs to its end with the lock.
#[cfg(unix)]
#[test]
fn run_keeps_the_lock_when_renewal_answers_are_lost() {
    for fault in [Fault::ResetAfter, Fault::StatusAfter] {
        let f = faulty(Plan::pass(), "applied-heartbeat");
        let mut run = f
            .as_build("1")
            .args([
                "--no-audit",
                "run",
                "env",
                "--ttl-minutes",
                "2s",
                "--",
                "sh",
                "-c",
                "sleep 4; exit 7",
            ])
            .spawn();
        // Once the lock is taken (and fenced), the next PUT is a renewal.
        wait_for(Duration::from_secs(30), || {
            matches!(f.holder("env"), Some(Holder::Current(r)) if r.fence.is_some()).then_some(())
        });
        f.proxy
            .set_plan(Plan::script(&[fault, fault]).only(&["PUT"]));
        assert!(wait_for_child(&mut run, Duration::from_secs(60)));
        let out = crate::support::Out::from(run.wait_with_output().expect("output"));
        out.code(7);
        assert_eq!(f.proxy.counts()[fault.name()], 2, "{}", fault.name());
        f.assert_free("env");
    }
}

/// A store outage longer than the ttl, with nobody else contending: the heartbeat keeps trying,
/// warns once that the lock may be taken meanwhile, renews when the store is back, and the
/// command's own exit code is `run`'s.
#[cfg(unix)]
#[test]
fn run_outlives_a_store_outage_longer_than_the_ttl() {
    let f = faulty(Plan::pass(), "outage");
    let mut run = f
        .as_build("1")
        .args([
            "run",
            "env",
            "--ttl-minutes",
            "2s",
            "--",
            "sh",
            "-c",
            "sleep 12; exit 7",
        ])
        .spawn();
    wait_for(Duration::from_secs(30), || {
        matches!(f.holder("env"), Some(Holder::Current(r)) if r.fence.is_some()).then_some(())
    });
    // Down: every request is reset before it reaches the store.
    f.proxy
        .set_plan(Plan::sometimes(Fault::ResetBefore, 100, 11));
    wait_for(Duration::from_secs(30), || {
        let refused = f.proxy.counts().get("reset-before").copied().unwrap_or(0);
        // More than the ttl without a renewal: the lock went stale by the store's clock.
        let stale = f
            .direct
            .cmd()
            .args(["check", "env", "--output", "json"])
            .run()
            .json()["stale"]
            .as_bool()
            == Some(true);
        (refused > 0 && stale).then_some(())
    });
    // Still failing for a while after it went stale, then up again.
    std::thread::sleep(Duration::from_secs(2));
    f.proxy.set_plan(Plan::pass());
    assert!(wait_for_child(&mut run, Duration::from_secs(60)));
    let out = crate::support::Out::from(run.wait_with_output().expect("output"));
    out.code(7).contains("Released");
    assert_eq!(
        out.stderr.matches("may have been taken").count(),
        1,
        "one warning per outage\n{}",
        out.stderr
    );
    f.assert_free("env");
}
