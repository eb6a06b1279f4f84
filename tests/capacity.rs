//! Capacity (`--capacity N`): up to N holders share an environment, each in a slot — slot 1 the
//! seed-compatible blob, slot k the blob `deployment-lock-{env}..{k}` — on every store.

use std::time::Duration;

use crate::support::{Backend, Cmd, Out, backends};

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", build)
        .env("DEPLOY_LOCK_POLL_SECONDS", "0.2")
}

/// A caller sharing `env` between two holders.
fn shared(b: &Backend, build: &str) -> Cmd {
    as_build(b, build).env("DEPLOY_LOCK_CAPACITY", "2")
}

fn lock_keys(b: &Backend) -> Vec<String> {
    b.locks().keys().cloned().collect()
}

#[test]
fn capacity_two_admits_two_holders_in_slots_and_refuses_a_third() {
    for b in backends() {
        let name = b.name();
        let first = shared(&b, "1")
            .args(["--output", "json", "acquire", "test"])
            .run();
        first.code(0);
        let second = shared(&b, "2")
            .args(["--output", "json", "acquire", "test"])
            .run();
        second.code(0);
        assert_eq!(
            lock_keys(&b),
            ["deployment-lock-test", "deployment-lock-test..2"],
            "{name}: slot 1 is the seed's blob"
        );
        // One fencing sequence for the environment: every holder's number is new and larger.
        let fence = |out: &crate::support::Out| out.json()["fence"].as_u64().expect("a fence");
        assert!(fence(&second) > fence(&first), "{name}");
        shared(&b, "3")
            .args(["acquire", "test"])
            .run()
            .code(3)
            .contains("test is locked by local build 1");
        // status shows the second holder as a slot of test, not as an environment.
        let status = shared(&b, "9").args(["--output", "json", "status"]).run();
        let status = status.json();
        let rows = status["environments"].as_array().expect("rows");
        assert_eq!(rows.len(), 2, "{name}: {status}");
        assert!(rows.iter().all(|r| r["environment"] == "test"), "{name}");
        assert_eq!(rows[1]["slot"], 2, "{name}");
        shared(&b, "9")
            .args(["status"])
            .run()
            .code(0)
            .contains("test (slot 2)");
        // Renew and release find the holder's own slot.
        shared(&b, "2").args(["renew", "test"]).run().code(0);
        shared(&b, "2").args(["release", "test"]).run().code(0);
        assert_eq!(lock_keys(&b), ["deployment-lock-test"], "{name}");
        // Both acquisitions and the release are in the environment's own history.
        let history = shared(&b, "9")
            .args(["--output", "json", "history", "test"])
            .run();
        let text = history.json().to_string();
        assert_eq!(text.matches("\"acquire\"").count(), 2, "{name}: {text}");
        assert_eq!(text.matches("\"release\"").count(), 1, "{name}: {text}");
        shared(&b, "1").args(["release", "test"]).run().code(0);
        assert!(b.locks().is_empty(), "{name}");
    }
}

#[test]
fn a_caller_with_capacity_one_never_takes_slot_two() {
    for b in backends() {
        let name = b.name();
        shared(&b, "1").args(["acquire", "test"]).run().code(0);
        as_build(&b, "2").args(["acquire", "test"]).run().code(3);
        as_build(&b, "2").args(["check", "test"]).run().code(3);
        assert_eq!(lock_keys(&b), ["deployment-lock-test"], "{name}");
    }
}

#[test]
fn a_holder_acquiring_again_stays_in_its_slot() {
    for b in backends() {
        let name = b.name();
        shared(&b, "1").args(["acquire", "test"]).run().code(0);
        shared(&b, "2").args(["acquire", "test"]).run().code(0);
        shared(&b, "1").args(["release", "test"]).run().code(0);
        // Slot 1 is free, but build 2 already holds slot 2: nested, not a second slot.
        shared(&b, "2")
            .args(["acquire", "test"])
            .run()
            .code(0)
            .contains("Still hold");
        assert_eq!(lock_keys(&b), ["deployment-lock-test..2"], "{name}");
    }
}

#[test]
fn a_waiter_takes_the_first_slot_that_frees() {
    for b in backends() {
        let name = b.name();
        shared(&b, "1").args(["acquire", "test"]).run().code(0);
        shared(&b, "2").args(["acquire", "test"]).run().code(0);
        let waiter = shared(&b, "3")
            .args(["acquire", "test", "--wait=1"])
            .spawn();
        shared(&b, "4").args(["wait", "test", "0.5s"]).run().code(4);
        std::thread::sleep(Duration::from_millis(300));
        shared(&b, "2").args(["release", "test"]).run().code(0);
        Out::from(waiter.wait_with_output().expect("waiter")).code(0);
        let slot2 = String::from_utf8_lossy(&b.locks()["deployment-lock-test..2"]).into_owned();
        assert!(slot2.contains("\"build_id\":\"3\""), "{name}: {slot2}");
        shared(&b, "4").args(["wait", "test", "0.5s"]).run().code(4);
        shared(&b, "1").args(["release", "test"]).run().code(0);
        shared(&b, "4").args(["wait", "test", "1s"]).run().code(0);
    }
}

#[cfg(unix)]
#[test]
fn run_in_a_slot_renews_and_releases_it() {
    for b in backends() {
        let name = b.name();
        shared(&b, "1").args(["acquire", "test"]).run().code(0);
        shared(&b, "2")
            .args([
                "run",
                "test",
                "--ttl-minutes",
                "1.5s",
                "--",
                "sh",
                "-c",
                "sleep 2.5",
            ])
            .run()
            .code(0);
        assert_eq!(lock_keys(&b), ["deployment-lock-test"], "{name}");
    }
}

#[test]
fn a_bad_capacity_is_exit_2_and_writes_nothing() {
    let b = Backend::file();
    for bad in ["0", "21", "two", "1.5"] {
        as_build(&b, "1")
            .args(["acquire", "test", "--capacity", bad])
            .run()
            .code(2)
            .contains("--capacity");
    }
    assert!(b.snapshot().is_empty());
}
