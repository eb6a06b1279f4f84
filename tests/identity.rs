//! Who is the holder: outside CI every process is its own; re-entrancy only for a caller that
//! proves it is the holder (the same CI job, an explicit build id, or the token), and a nested
//! acquire or run leaves the lock held, with its ttl, for the holder that took it.

use std::path::Path;

use crate::support::{Cmd, Out, TempDir, backends, bin, eventually, github_job};

/// A shell command that says it started, then holds until `go` exists, and leaves `done` behind.
fn hold_until_go(dir: &Path) -> String {
    let d = dir.display();
    format!("touch '{d}/started'; while [ ! -e '{d}/go' ]; do sleep 0.02; done; touch '{d}/done'")
}

/// The JSON line of a command's output (on Azure DevOps, output variables come first).
#[track_caller]
fn json_line(out: &Out) -> serde_json::Value {
    let line = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.all()))
}

fn check_json(cmd: Cmd, env: &str) -> serde_json::Value {
    json_line(&cmd.args(["--output", "json", "check", env]).run())
}

#[cfg(unix)]
#[test]
fn two_terminals_of_one_user_never_share_a_lock() {
    for b in backends() {
        let name = b.name();
        let dir = TempDir::new("terminals");
        let first = b
            .cmd()
            .args(["run", "prod", "--", "sh", "-c", &hold_until_go(dir.path())])
            .spawn();
        eventually("the first command", || dir.join("started").exists());
        let held = check_json(b.cmd(), "prod");
        // A second terminal (same USER and host, no token) is refused and changes nothing.
        b.cmd()
            .args(["run", "prod", "--", "true"])
            .run()
            .code(3)
            .contains("taken by tester on testhost from another process");
        b.cmd()
            .args(["acquire", "prod"])
            .run()
            .code(3)
            .contains("--token or DEPLOY_LOCK_TOKEN");
        assert_eq!(
            check_json(b.cmd(), "prod")["holder"],
            held["holder"],
            "{name}"
        );
        // With --wait it runs only after the first command ended.
        let waiter = b
            .cmd()
            .args(["run", "prod", "--wait=1", "--", "test", "-e"])
            .args([dir.join("done")])
            .spawn();
        eventually("the waiter's queue ticket", || {
            b.snapshot()
                .keys()
                .any(|k| k.starts_with("deployment-queue-prod"))
        });
        assert_eq!(
            check_json(b.cmd(), "prod")["holder"],
            held["holder"],
            "{name}"
        );
        std::fs::write(dir.join("go"), b"").expect("let the first command end");
        let first = Out::from(first.wait_with_output().expect("first run"));
        first
            .code(0)
            .contains("Released the deployment lock on prod (held");
        assert!(
            !first.all().contains("already gone"),
            "{name}: {}",
            first.all()
        );
        Out::from(waiter.wait_with_output().expect("waiting run"))
            .code(0)
            .contains("Released the deployment lock on prod (held");
        b.cmd().args(["check", "prod"]).run().code(0);
    }
}

#[test]
fn a_terminal_user_releases_their_own_lock_and_nobody_elses() {
    for b in backends() {
        b.cmd().args(["acquire", "prod"]).run().code(0);
        b.cmd()
            .args(["release", "prod"])
            .run()
            .code(0)
            .contains("Released the deployment lock on prod, taken by tester on testhost (held");
        let out = b.cmd().args(["--output", "json", "acquire", "prod"]).run();
        let token = out.code(0).json()["token"]
            .as_str()
            .expect("token")
            .to_owned();
        for (var, value) in [("USER", "mallory"), ("HOSTNAME", "otherhost")] {
            b.cmd()
                .env(var, value)
                .args(["release", "prod"])
                .run()
                .code(3)
                .contains("not released");
        }
        // Release only: acquire and renew need the token.
        b.cmd().args(["acquire", "prod"]).run().code(3);
        b.cmd()
            .args(["renew", "prod"])
            .run()
            .code(3)
            .contains("renew it with its token");
        b.cmd()
            .args(["renew", "prod", "--token", &token])
            .run()
            .code(0);
        b.cmd()
            .env("DEPLOY_LOCK_TOKEN", &token)
            .args(["acquire", "prod"])
            .run()
            .code(0)
            .contains("Still hold");
        b.cmd().args(["release", "prod"]).run().code(0);
        b.cmd().args(["check", "prod"]).run().code(0);
    }
}

#[test]
fn a_nested_run_in_a_ci_job_leaves_the_jobs_lock_held_with_its_ttl() {
    for b in backends() {
        let dir = TempDir::new("nested-ci");
        let github = |cmd: Cmd| github_job(cmd, "4100", dir.path());
        let azdo = |cmd: Cmd| {
            cmd.env("TF_BUILD", "True")
                .env("BUILD_BUILDID", "4200")
                .env("SYSTEM_JOBID", "job-1")
                .env("SYSTEM_JOBATTEMPT", "1")
                .env("AGENT_NAME", "agent-1")
        };
        for (platform, job) in [("github", &github as &dyn Fn(Cmd) -> Cmd), ("azdo", &azdo)] {
            let env = format!("nested-{platform}");
            let out = job(b.cmd())
                .args(["--output", "json", "acquire", &env, "--ttl-minutes", "120"])
                .run();
            let token = json_line(out.code(0))["token"]
                .as_str()
                .expect("token")
                .to_owned();
            let before = check_json(job(b.cmd()), &env);
            let nested = job(b.cmd()).args(["run", &env, "--", "true"]).run();
            nested
                .code(0)
                .contains("is the outer holder's")
                .contains("stays held");
            assert!(!nested.all().contains("Released"), "{}", nested.all());
            job(b.cmd())
                .args(["acquire", &env])
                .run()
                .code(0)
                .contains("Still hold");
            let after = check_json(job(b.cmd()), &env);
            assert_eq!(after["state"], "ours", "{platform}: {after}");
            assert_eq!(after["ttl_seconds"], 7200, "{platform}: the ttl was cut");
            for field in ["acquired_at", "fence", "build_id", "job"] {
                assert_eq!(
                    after["holder"][field], before["holder"][field],
                    "{platform}: {field}"
                );
            }
            // The holder's own token still releases it: the acquisition is unchanged.
            b.cmd()
                .args(["release", &env, "--token", &token])
                .run()
                .code(0);
        }
    }
}

#[cfg(unix)]
#[test]
fn a_run_nested_in_a_run_leaves_the_outer_lock_held() {
    for b in backends() {
        let dir = TempDir::new("nested-run");
        let inner = format!(
            "'{bin}' run prod -- true && '{bin}' --output json check prod > '{json}'",
            bin = bin().display(),
            json = dir.join("inner.json").display()
        );
        let out = b
            .cmd()
            .args([
                "run",
                "prod",
                "--ttl-minutes",
                "10",
                "--",
                "sh",
                "-c",
                &inner,
            ])
            .run();
        out.code(0)
            .contains("is the outer holder's")
            .contains("Released the deployment lock on prod (held");
        assert!(!out.all().contains("already gone"), "{}", out.all());
        let seen: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("inner.json")).expect("inner check"))
                .expect("json");
        // Inside, after the nested run ended: held, by the outer run's token, with its ttl.
        assert_eq!(seen["state"], "ours", "{seen}");
        assert_eq!(seen["ttl_seconds"], 600, "{seen}");
        b.cmd().args(["check", "prod"]).run().code(0);
    }
}

#[test]
fn another_attempt_of_the_job_takes_the_lock_over_and_releases_it() {
    for b in backends() {
        let dir = TempDir::new("rerun");
        let attempt = |n: &str| {
            b.cmd()
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_RUN_ID", "4300")
                .env("GITHUB_RUN_ATTEMPT", n)
                .env("GITHUB_JOB", "deploy")
                .env("RUNNER_NAME", format!("runner-{n}"))
                .env("GITHUB_OUTPUT", dir.join("out"))
        };
        attempt("1").args(["acquire", "rerun"]).run().code(0);
        // The re-run is a new holder, not a nested one: its run releases the lock at its end.
        attempt("2")
            .args(["run", "rerun", "--", "true"])
            .run()
            .code(0)
            .contains("from an earlier attempt of this job")
            .contains("Released the deployment lock on rerun");
        b.cmd().args(["check", "rerun"]).run().code(0);
    }
}

#[test]
fn the_action_nested_in_a_job_that_holds_the_lock_leaves_it_to_the_holder() {
    for b in backends() {
        let dir = TempDir::new("nested-step");
        let state = dir.join("github-state");
        let job = || github_job(b.cmd(), "4400", dir.path());
        job().args(["acquire", "step"]).run().code(0);
        job()
            .env("INPUT_ENVIRONMENT", "step")
            .env("INPUT_HEARTBEAT", "false")
            .args(["step", "main"])
            .run()
            .code(0)
            .contains("stays held");
        // Nothing saved for the post step: it releases nothing, the holder keeps the lock.
        let saved = std::fs::read_to_string(&state).unwrap_or_default();
        assert!(!saved.contains("TOKEN"), "{saved}");
        job().args(["step", "post"]).run().code(0);
        job()
            .args(["check", "step"])
            .run()
            .code(0)
            .contains("locked by us");
    }
}
