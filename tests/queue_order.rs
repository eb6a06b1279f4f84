//! Priority and supersede keys through the real binary, on the local store and Azurite
//! (docs/guarantees.md, "Queue order"): a high-priority waiter goes ahead of normal ones, and a
//! newer run with the same supersede key makes older waiters leave with exit code 6.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::output::validate;
use crate::support::{Backend, Cmd, Out, TempDir};

const ENV: &str = "prod";

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", build)
        .env("DEPLOY_LOCK_POLL_SECONDS", "0.05")
}

/// Waits (bounded) until `f` holds for the environment's queue as `status --output json` shows
/// it, and returns that queue.
#[track_caller]
fn until_queue(b: &Backend, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = as_build(b, "observer")
            .args(["status", "--output", "json"])
            .run();
        let status: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        let queue = status["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["environment"] == ENV)
            .and_then(|e| e["queue"].as_array().cloned())
            .unwrap_or_default();
        if f(&queue) {
            return queue;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never came; last {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn builds(queue: &[Value]) -> Vec<&str> {
    queue
        .iter()
        .map(|w| w["holder"]["build_id"].as_str().unwrap_or_default())
        .collect()
}

/// The queue tickets' versions: their etag on Azure, their modification time on the local store.
fn ticket_versions(b: &Backend) -> Vec<(String, String)> {
    let prefix = format!("deployment-queue-{ENV}.");
    match b {
        Backend::File(dir) => std::fs::read_dir(dir.join("deployment-locks"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let modified = e.metadata().ok()?.modified().ok()?;
                name.starts_with(&prefix)
                    .then(|| (name, format!("{modified:?}")))
            })
            .collect(),
        Backend::Azurite { .. } => {
            use deploy_lock::store::Store as _;
            let listing = b.azure_store().list(&prefix).expect("list the queue");
            listing
                .entries
                .into_iter()
                .map(|e| (e.key, e.etag))
                .collect()
        }
    }
}

/// Waits until the normal waiter's ticket (the one without a priority tag) was rewritten twice:
/// it lists the queue right after each rewrite, so it has seen everything that was there before.
fn until_normal_waiter_looked_twice(b: &Backend) {
    let normal = |versions: &[(String, String)]| {
        versions
            .iter()
            .find(|(key, _)| !key.contains(".h"))
            .map(|(_, v)| v.clone())
    };
    let mut last = normal(&ticket_versions(b));
    let mut rewrites = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rewrites < 2 {
        assert!(
            Instant::now() < deadline,
            "the normal waiter never refreshed"
        );
        std::thread::sleep(Duration::from_millis(20));
        let now = normal(&ticket_versions(b));
        if now.is_some() && now != last {
            rewrites += 1;
            last = now;
        }
    }
}

fn finish(child: Child) -> Out {
    Out::from(child.wait_with_output().expect("the waiter's output"))
}

fn a_high_priority_waiter_goes_ahead_of_a_normal_one_that_waited_longer(b: &Backend) {
    as_build(b, "holder").args(["acquire", ENV]).run().code(0);
    let normal = as_build(b, "normal")
        .args(["acquire", ENV, "--wait", "2m"])
        .spawn();
    until_queue(b, "the normal waiter", |q| builds(q) == ["normal"]);
    let hotfix = as_build(b, "hotfix")
        .args(["acquire", ENV, "--wait", "2m", "--priority", "high"])
        .spawn();
    let queue = until_queue(b, "the hotfix ahead", |q| builds(q) == ["hotfix", "normal"]);
    assert_eq!(queue[0]["priority"], "high");
    assert_eq!(queue[1]["priority"], "normal");
    let text = as_build(b, "observer").args(["status"]).run();
    assert!(
        text.stdout.contains("1. local build hotfix, high priority"),
        "{}",
        text.all()
    );
    until_normal_waiter_looked_twice(b);
    as_build(b, "holder").args(["release", ENV]).run().code(0);
    let hotfix = finish(hotfix);
    hotfix.code(0);
    assert!(hotfix.stdout.contains("Acquired"), "{}", hotfix.all());
    let check = as_build(b, "observer").args(["check", ENV]).run();
    assert!(check.stdout.contains("build hotfix"), "{}", check.all());
    // The normal waiter is still in line, and gets the lock next.
    assert_eq!(
        builds(&until_queue(b, "the normal waiter", |q| !q.is_empty())),
        ["normal"]
    );
    as_build(b, "hotfix").args(["release", ENV]).run().code(0);
    finish(normal).code(0);
    let history = as_build(b, "observer").args(["history", ENV]).run();
    let acquired_by_hotfix = history
        .stdout
        .lines()
        .find(|l| l.contains("acquire") && l.contains("build hotfix"))
        .unwrap_or_default();
    assert!(
        acquired_by_hotfix.contains("priority high"),
        "{}",
        history.all()
    );
}

#[test]
fn a_high_priority_waiter_goes_ahead_of_a_normal_one_that_waited_longer_local_store() {
    a_high_priority_waiter_goes_ahead_of_a_normal_one_that_waited_longer(&Backend::file());
}

#[test]
fn a_high_priority_waiter_goes_ahead_of_a_normal_one_that_waited_longer_azurite() {
    a_high_priority_waiter_goes_ahead_of_a_normal_one_that_waited_longer(&Backend::azurite(
        "priority",
    ));
}

fn a_newer_run_with_the_same_key_supersedes_the_older_waiter(b: &Backend) {
    let dir = TempDir::new("superseded-json");
    as_build(b, "holder").args(["acquire", ENV]).run().code(0);
    let key = ["--supersede", "deploy.yml@refs/heads/main"];
    let older = as_build(b, "41")
        .args(["acquire", ENV, "--wait", "2m", "--output", "json"])
        .args(key)
        .spawn();
    // Another branch's waiter is not superseded by the newer run of main.
    let other_branch = as_build(b, "40")
        .args(["acquire", ENV, "--wait", "2m"])
        .args(["--supersede", "deploy.yml@refs/heads/feature"])
        .spawn();
    until_queue(b, "the older runs", |q| builds(q).len() == 2);
    let newer = as_build(b, "42")
        .args(["acquire", ENV, "--wait", "2m"])
        .args(key)
        .spawn();
    let older = finish(older);
    older.code(6);
    assert!(
        older.stderr.contains("superseded by local build 42"),
        "{}",
        older.all()
    );
    let answer: Value = serde_json::from_str(older.stdout.trim()).expect("one JSON object");
    assert_eq!(answer["state"], "superseded");
    assert_eq!(answer["superseded_by"]["build_id"], "42");
    validate(dir.path(), &[("superseded", "superseded", answer)]);
    // It left the queue; the newer run and the other branch wait on.
    until_queue(b, "the older run gone", |q| {
        let mut waiting = builds(q);
        waiting.sort_unstable();
        waiting == ["40", "42"]
    });
    let history = as_build(b, "observer").args(["history", ENV]).run();
    assert!(
        history
            .stdout
            .lines()
            .any(|l| l.contains("superseded") && l.contains("superseded by local build 42")),
        "{}",
        history.all()
    );
    // The lock passes to the waiters left, first come first served.
    as_build(b, "holder").args(["release", ENV]).run().code(0);
    let other_branch = finish(other_branch);
    other_branch.code(0);
    as_build(b, "40").args(["release", ENV]).run().code(0);
    finish(newer).code(0);
}

#[test]
fn a_newer_run_with_the_same_key_supersedes_the_older_waiter_local_store() {
    a_newer_run_with_the_same_key_supersedes_the_older_waiter(&Backend::file());
}

#[test]
fn a_newer_run_with_the_same_key_supersedes_the_older_waiter_azurite() {
    a_newer_run_with_the_same_key_supersedes_the_older_waiter(&Backend::azurite("supersede"));
}

#[test]
fn priority_and_supersede_refuse_bad_values_sets_and_shared_environments() {
    let b = Backend::file();
    for (args, says) in [
        (&["--priority", "urgent"][..], "must be high or normal"),
        (&["--supersede", "true"][..], "there is none here"),
        (
            &["--priority", "high", "--capacity", "2"][..],
            "has no queue",
        ),
        (&["--supersede", "k", "--capacity", "2"][..], "has no queue"),
    ] {
        let out = as_build(&b, "1").args(["acquire", ENV]).args(args).run();
        out.code(2);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.all());
    }
    let out = as_build(&b, "1")
        .args(["acquire", "eu,us", "--priority", "high"])
        .run();
    out.code(2);
    assert!(out.stderr.contains("without a queue"), "{}", out.all());
    assert!(
        b.snapshot().is_empty(),
        "nothing written: {:?}",
        b.snapshot()
    );
}

#[test]
fn a_superseded_run_never_starts_its_command() {
    let b = Backend::file();
    let marker = TempDir::new("superseded-run");
    let ran = marker.join("ran");
    as_build(&b, "holder").args(["acquire", ENV]).run().code(0);
    let older = as_build(&b, "41")
        .args([
            "run",
            ENV,
            "--wait",
            "2m",
            "--supersede",
            "app@main",
            "--",
            "touch",
        ])
        .args([&ran])
        .spawn();
    until_queue(&b, "the older run", |q| builds(q) == ["41"]);
    let newer = as_build(&b, "42")
        .args(["acquire", ENV, "--wait", "2m", "--supersede", "app@main"])
        .spawn();
    let older = finish(older);
    older.code(6);
    assert!(!ran.exists(), "the superseded run's command ran");
    as_build(&b, "holder").args(["release", ENV]).run().code(0);
    finish(newer).code(0);
}
