//! Lock sets on the command line (`eu,us`): all or nothing, one token and fence per member,
//! waiting for the whole set, and release, check and wait on each member, on every store.

use std::time::Duration;

use crate::support::{Backend, Cmd, Out, backends};

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", build)
        .env("DEPLOY_LOCK_POLL_SECONDS", "0.2")
}

#[test]
fn a_set_is_taken_whole_with_a_token_and_fence_per_member() {
    for b in backends() {
        let name = b.name();
        let out = as_build(&b, "1")
            .args(["--output", "json", "acquire", "github", "us,eu"])
            .run();
        out.code(0);
        let members = out.json();
        let members = members["environments"]
            .as_array()
            .expect("one object per member");
        let envs: Vec<&str> = members
            .iter()
            .map(|m| m["environment"].as_str().expect("environment"))
            .collect();
        assert_eq!(envs, ["eu", "us"], "{name}: name order");
        assert_ne!(members[0]["token"], members[1]["token"], "{name}");
        for m in members {
            assert_eq!(m["state"], "acquired", "{name}");
            assert!(
                m["fence"].as_u64().is_some_and(|f| f > 0),
                "{name}: each member has its own fencing number: {m}"
            );
        }
        assert_eq!(
            b.locks().keys().cloned().collect::<Vec<_>>(),
            ["deployment-lock-eu", "deployment-lock-us"],
            "{name}"
        );
        as_build(&b, "2").args(["check", "eu,us"]).run().code(3);
        as_build(&b, "1")
            .args(["release", "github", "eu,us"])
            .run()
            .code(0)
            .contains("Released the deployment lock on us");
        assert!(b.locks().is_empty(), "{name}");
        as_build(&b, "2").args(["check", "eu,us"]).run().code(0);
    }
}

#[test]
fn a_held_member_refuses_the_set_and_leaves_no_member_taken() {
    for b in backends() {
        let name = b.name();
        as_build(&b, "1").args(["acquire", "us"]).run().code(0);
        as_build(&b, "2")
            .args(["acquire", "eu,us,zz"])
            .run()
            .code(3)
            .contains("us is locked by local build 1");
        assert_eq!(
            b.locks().keys().cloned().collect::<Vec<_>>(),
            ["deployment-lock-us"],
            "{name}: nothing of the set is left half-taken"
        );
        // Its wait runs out the same way, with nothing held.
        as_build(&b, "2")
            .args(["acquire", "eu,us", "--wait=1s"])
            .run()
            .code(4);
        assert_eq!(b.locks().len(), 1, "{name}");
    }
}

#[test]
fn a_waiting_set_is_taken_once_its_held_member_is_released() {
    for b in backends() {
        as_build(&b, "1").args(["acquire", "us"]).run().code(0);
        let waiter = as_build(&b, "2")
            .args(["acquire", "us,eu", "--wait=1"])
            .spawn();
        std::thread::sleep(Duration::from_millis(500));
        as_build(&b, "1").args(["release", "us"]).run().code(0);
        let out = Out::from(waiter.wait_with_output().expect("waiter"));
        out.code(0)
            .contains("Acquired the deployment lock on eu")
            .contains("Acquired the deployment lock on us");
        as_build(&b, "2").args(["release", "eu,us"]).run().code(0);
        as_build(&b, "3")
            .args(["wait", "eu,us", "1s"])
            .run()
            .code(0);
    }
}

#[test]
fn a_set_with_an_empty_or_bad_member_is_exit_2_and_writes_nothing() {
    let b = Backend::file();
    for bad in ["eu,,us", "eu,a/b", ","] {
        as_build(&b, "1").args(["acquire", bad]).run().code(2);
        as_build(&b, "1").args(["release", bad]).run().code(2);
    }
    assert!(b.snapshot().is_empty());
}

/// `run eu,us`: every member held while the command runs (renewed past its ttl), the command sees
/// each member's environment, token and fence comma-separated in name order, and every member is
/// given back at the end.
#[cfg(unix)]
#[test]
fn run_holds_the_whole_set_renews_every_member_and_releases_them_all() {
    for b in backends() {
        let name = b.name();
        let run = as_build(&b, "1")
            .args([
                "run",
                "us,eu",
                "--ttl-minutes",
                "1.5s",
                "--",
                "sh",
                "-c",
                "echo \"env=$DEPLOY_LOCK_ENVIRONMENT token=$DEPLOY_LOCK_TOKEN \
                 fence=$DEPLOY_LOCK_FENCE\"; sleep 4",
            ])
            .spawn();
        std::thread::sleep(Duration::from_secs(3));
        // Past the ttl: only renewals keep both members held.
        for env in ["eu", "us"] {
            as_build(&b, "2").args(["acquire", env]).run().code(3);
        }
        let out = Out::from(run.wait_with_output().expect("run"));
        out.code(0).contains("env=eu,us ");
        let fences: Vec<&str> = out
            .stdout
            .split("fence=")
            .nth(1)
            .and_then(|f| f.split_whitespace().next())
            .expect("the fences")
            .split(',')
            .collect();
        assert!(
            fences.len() == 2 && fences.iter().all(|f| f.parse::<u64>().is_ok_and(|f| f > 0)),
            "{name}: one fencing number per member: {fences:?}"
        );
        let tokens = out
            .stdout
            .split("token=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .expect("the tokens")
            .to_owned();
        let tokens: Vec<&str> = tokens.split(',').collect();
        assert_eq!(tokens.len(), 2, "{name}: {tokens:?}");
        assert!(tokens.iter().all(|t| t.len() == 32), "{name}: {tokens:?}");
        assert!(b.locks().is_empty(), "{name}: every member given back");
    }
}

/// A member of a running set lost: exit 5 like a lost single lock; the other member is given back.
#[cfg(unix)]
#[test]
fn run_over_a_set_exits_5_when_a_member_is_lost() {
    for b in backends() {
        let name = b.name();
        let run = as_build(&b, "1")
            .args([
                "run",
                "eu,us",
                "--ttl-minutes",
                "1.5s",
                "--on-lost",
                "kill",
                "--",
                "sleep",
                "60",
            ])
            .spawn();
        std::thread::sleep(Duration::from_millis(700));
        as_build(&b, "admin")
            .args(["force-break", "us", "--reason", "test"])
            .run()
            .code(0);
        let out = Out::from(run.wait_with_output().expect("run"));
        out.code(5)
            .contains("the lock on us was lost while the command runs");
        assert!(b.locks().is_empty(), "{name}: eu was given back");
    }
}

/// A held member refuses `run` over the set: the command never runs and nothing is left taken.
#[test]
fn run_over_a_set_with_a_held_member_is_refused_and_runs_nothing() {
    for b in backends() {
        let name = b.name();
        as_build(&b, "1").args(["acquire", "us"]).run().code(0);
        let out = as_build(&b, "2")
            .args(["run", "eu,us", "--", "echo", "the command ran"])
            .run();
        out.code(3);
        assert!(!out.stdout.contains("the command ran"), "{name}");
        assert_eq!(
            b.locks().keys().cloned().collect::<Vec<_>>(),
            ["deployment-lock-us"],
            "{name}"
        );
    }
}
