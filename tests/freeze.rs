//! Freeze windows on every store: an acquire refuses during a freeze (exit 3, JSON state
//! `frozen`, naming the freeze and its reason), a waiter waits it out within its budget,
//! `--override-freeze --reason` takes the lock and is recorded, `unfreeze` ends it. A freeze that
//! begins while an acquire waits for the lock holds that acquire too.

use std::process::Child;
use std::time::Duration;

use crate::support::{Backend, Ci, Cmd, Out, assert_no_injection, backends, eventually};

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", build)
        .env("DEPLOY_LOCK_POLL_SECONDS", "0.2")
}

#[test]
fn an_acquire_during_a_freeze_is_refused_naming_it_unless_overridden() {
    for b in backends() {
        let name = b.name();
        as_build(&b, "1")
            .args(["freeze", "prod", "--for", "2h", "--reason", "release week"])
            .run()
            .code(0)
            .contains("in force");
        as_build(&b, "2")
            .args(["acquire", "prod"])
            .run()
            .code(3)
            .contains("prod is frozen")
            .contains("release week");
        let out = as_build(&b, "2")
            .args(["--output", "json", "acquire", "eu,prod"])
            .run();
        out.code(3);
        let v = out.json();
        assert_eq!(v["state"], "frozen", "{name}");
        assert_eq!(v["freeze"]["reason"], "release week", "{name}");
        assert!(
            b.locks().is_empty(),
            "{name}: nothing taken during the freeze"
        );
        // A waiter whose budget ends before the freeze: timed out, nothing taken.
        as_build(&b, "2")
            .args(["acquire", "prod", "--wait=1s"])
            .run()
            .code(4);
        as_build(&b, "2")
            .args(["acquire", "prod", "--override-freeze"])
            .run()
            .code(2);
        as_build(&b, "2")
            .args(["acquire", "prod", "--override-freeze", "--reason", "hotfix"])
            .run()
            .code(0)
            .contains("overridden: hotfix");
        let history = as_build(&b, "2")
            .args(["--output", "json", "history", "prod"])
            .run();
        let events: Vec<String> = history.json()["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(events, ["freeze", "freeze-override", "acquire"], "{name}");
        as_build(&b, "2").args(["release", "prod"]).run().code(0);
        as_build(&b, "1")
            .args(["unfreeze", "prod", "--reason", "done"])
            .run()
            .code(0);
        as_build(&b, "2").args(["acquire", "prod"]).run().code(0);
    }
}

/// Build `by` unfreezes `frozen`; the waiter then says it waited for the freeze and takes prod.
fn unfreeze_and_see_it_taken(b: &Backend, by: &str, frozen: &str, waiter: Child) {
    as_build(b, by)
        .args(["unfreeze", frozen, "--reason", "resolved"])
        .run()
        .code(0);
    let out = Out::from(waiter.wait_with_output().expect("waiter"));
    out.code(0)
        .contains("waiting for the freeze to end")
        .contains("Acquired the deployment lock on prod");
}

#[test]
fn a_waiter_waits_out_a_freeze_within_its_budget() {
    for b in backends() {
        as_build(&b, "1")
            .args(["freeze", "prod", "--for", "2h", "--reason", "incident"])
            .run()
            .code(0);
        let waiter = as_build(&b, "2")
            .args(["acquire", "prod", "--wait=1"])
            .spawn();
        std::thread::sleep(Duration::from_millis(500));
        unfreeze_and_see_it_taken(&b, "1", "prod", waiter);
    }
}

/// The events of `env`'s audit log, each as `event` or `event by-build`.
fn events(b: &Backend, env: &str) -> Vec<String> {
    let history = as_build(b, "0")
        .args(["--output", "json", "history", env])
        .run();
    history.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let event = e["event"].as_str().unwrap_or_default();
            match e["build_id"].as_str() {
                Some(build) if event != "freeze" && event != "unfreeze" => {
                    format!("{event} {build}")
                }
                _ => event.to_owned(),
            }
        })
        .collect()
}

#[test]
fn a_freeze_that_begins_while_an_acquire_waits_holds_it_too() {
    for b in backends() {
        let name = b.name();
        // One environment (it waits in the queue), and a set (it waits for its held member).
        for (target, frozen) in [("prod", "prod"), ("prod,stage", "stage")] {
            as_build(&b, "1").args(["acquire", "prod"]).run().code(0);
            let waiter = as_build(&b, "2")
                .args(["acquire", target, "--wait=2"])
                .spawn();
            if target.contains(',') {
                // A set waits without a queue: time to find prod held and wait for it.
                std::thread::sleep(Duration::from_secs(1));
            } else {
                eventually("the waiter to join the queue", || {
                    b.snapshot()
                        .keys()
                        .any(|k| k.starts_with("deployment-queue-prod"))
                });
            }
            as_build(&b, "3")
                .args(["freeze", frozen, "--for", "2h", "--reason", "incident"])
                .run()
                .code(0);
            as_build(&b, "1").args(["release", "prod"]).run().code(0);
            // The lock is free now, and frozen: the waiter sees the freeze and keeps waiting.
            std::thread::sleep(Duration::from_millis(1500));
            assert!(
                !b.locks().contains_key("deployment-lock-prod"),
                "{name} {target}: taken during the freeze"
            );
            // One environment: the waiter keeps its place in the queue through the freeze.
            if !target.contains(',') {
                assert!(
                    b.snapshot()
                        .keys()
                        .any(|k| k.starts_with("deployment-queue-prod")),
                    "{name}: the waiter left the queue during the freeze"
                );
            }
            unfreeze_and_see_it_taken(&b, "3", frozen, waiter);
            // Taken only after the freeze ended, by the audit log's order.
            let log = events(&b, frozen);
            let unfrozen = log.iter().position(|e| e == "unfreeze");
            let taken = log.iter().rposition(|e| e == "acquire 2");
            assert!(
                unfrozen.is_some() && taken > unfrozen,
                "{name} {target}: {log:?}"
            );
            as_build(&b, "2").args(["release", target]).run().code(0);
        }
    }
}

#[test]
fn freezes_lists_one_off_and_weekly_windows_and_bad_windows_are_exit_2() {
    let b = Backend::file();
    as_build(&b, "1")
        .args([
            "freeze",
            "prod",
            "--weekly",
            "Fri 16:00-Mon 08:00 +02:00",
            "--reason",
            "weekend",
        ])
        .run()
        .code(0);
    as_build(&b, "1")
        .args([
            "freeze",
            "eu",
            "--until",
            "2999-01-01T00:00:00+01:00",
            "--reason",
            "r",
        ])
        .run()
        .code(0);
    as_build(&b, "1")
        .args(["freezes"])
        .run()
        .code(0)
        .contains("weekly Fri 16:00-Mon 08:00 +02:00")
        .contains("in force");
    let before = b.snapshot();
    for bad in [
        vec!["freeze", "prod", "--reason", "r"],
        vec![
            "freeze",
            "prod",
            "--for",
            "1h",
            "--until",
            "2999-01-01T00:00:00Z",
            "--reason",
            "r",
        ],
        vec![
            "freeze",
            "prod",
            "--weekly",
            "Fri 16:00-Mon 08:00",
            "--reason",
            "r",
        ],
        vec!["freeze", "prod", "--until", "tomorrow", "--reason", "r"],
        vec!["freeze", "prod", "--for", "1h"],
        vec!["unfreeze", "prod"],
    ] {
        as_build(&b, "1").args(bad).run().code(2);
    }
    assert_eq!(b.snapshot(), before);
}

#[test]
fn status_names_the_freezes_in_force_escaped_for_ci() {
    let hostile = "  ::error::boom ##[set-output]x ##vso[task.complete]y";
    for b in backends() {
        let name = b.name();
        as_build(&b, "1")
            .args(["freeze", "prod", "--for", "2h", "--reason", hostile])
            .run()
            .code(0);
        // A record written by anyone with access to the store: every field is text to escape.
        let record = serde_json::json!({"schema": 1, "windows": [{
            "kind": "once", "from": 0, "until": 4_102_444_800_i64, "reason": hostile,
            "by": "::add-mask::b ##vso[task.setvariable variable=x]1",
            "created_at": "##[error]c",
        }]});
        b.put_raw("deployment-freeze-qa", record.to_string().as_bytes());
        let out = as_build(&b, "1").args(["status"]).run();
        out.code(0)
            .contains("prod is frozen (from ")
            .contains("qa is frozen (from ")
            .contains("no new acquire until it ends");
        for ci in Ci::ALL {
            let (key, value) = ci.env();
            for (args, code) in [
                (&["status"][..], 0),
                (&["--output", "json", "status"][..], 0),
                (&["freezes"][..], 0),
                (&["--output", "json", "freezes"][..], 0),
                (&["acquire", "qa"][..], 3),
                (&["--output", "json", "acquire", "qa"][..], 3),
            ] {
                let out = as_build(&b, "1").env(key, value).args(args).run();
                out.code(code).contains("qa");
                assert_no_injection(ci, &out, &[], &format!("{name}: {args:?}"));
            }
        }
    }
}

#[test]
fn an_unreadable_freeze_record_stops_acquires_until_unfreeze_clears_it() {
    for b in backends() {
        let name = b.name();
        b.put_raw("deployment-freeze-prod", b"{not json");
        as_build(&b, "1")
            .args(["freeze", "stage", "--for", "1h", "--reason", "ok"])
            .run()
            .code(0);
        // Whether prod is frozen cannot be told: no acquire, and the message says what to do.
        as_build(&b, "1")
            .args(["acquire", "prod"])
            .run()
            .code(1)
            .contains("the freeze record of prod is not readable")
            .contains("deploy-lock unfreeze prod --reason");
        assert!(b.locks().is_empty(), "{name}: nothing taken");
        // The other freezes stay visible.
        as_build(&b, "1")
            .args(["freezes"])
            .run()
            .code(0)
            .contains("stage")
            .contains("the freeze record of prod is not readable");
        as_build(&b, "1")
            .args(["status"])
            .run()
            .code(0)
            .contains("stage is frozen");
        as_build(&b, "1")
            .args(["unfreeze", "prod", "--reason", "corrupt"])
            .run()
            .code(0)
            .contains("Removed the unreadable freeze record of prod.");
        as_build(&b, "1").args(["acquire", "prod"]).run().code(0);
        assert_eq!(
            events(&b, "prod"),
            ["unfreeze", "acquire 1"],
            "{name}: the clearing is recorded"
        );
    }
}
