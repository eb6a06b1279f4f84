//! What a waiter shows while it waits (README "Waiting"): the holder at once, its place in line,
//! progress in each platform's form, and the lock handed over when the holder releases.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{Backend, Ci, Cmd, assert_no_injection, backends, bin};

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd().env("DEPLOY_LOCK_BUILD_ID", build)
}

fn hold(b: &Backend) {
    as_build(b, "holder")
        .args(["acquire", "github", "sandbox", "--reason", "release 1.2"])
        .run()
        .code(0);
}

#[test]
fn a_waiter_names_the_holder_at_once_and_its_place_in_line() {
    for b in backends() {
        hold(&b);
        let out = as_build(&b, "waiter")
            .args(["acquire", "github", "sandbox", "--wait=3s"])
            .run();
        out.code(4);
        let err = &out.stderr;
        let holder = err
            .find("sandbox is locked by github build holder")
            .unwrap_or_else(|| panic!("{}: no holder in {err}", b.name()));
        assert!(err.contains("  reason: release 1.2"), "{err}");
        // How long it waited at its first look depends on the machine's load.
        let status = err.find(" of 3s · held by github build holder").expect(err);
        assert!(holder < status, "the holder comes first: {err}");
        // Once the waiter has its ticket, its place in line.
        assert!(err.contains("1st of 1 in line"), "{}: {err}", b.name());
        // Progress is on stderr: stdout keeps the outcome alone.
        assert!(!out.stdout.contains("waited "), "{}", out.stdout);
    }
}

#[test]
fn wait_reports_progress_too() {
    let b = Backend::file();
    hold(&b);
    let out = as_build(&b, "waiter").args(["wait", "sandbox", "1s"]).run();
    out.code(4);
    out.contains("sandbox is locked by github build holder")
        .contains(" of 1s · held by github build holder");
}

#[test]
fn an_estimate_comes_from_the_recent_hold_times() {
    let b = Backend::file();
    hold(&b);
    as_build(&b, "holder")
        .args(["release", "github", "sandbox"])
        .run()
        .code(0);
    hold(&b);
    let out = as_build(&b, "waiter").args(["wait", "sandbox", "1s"]).run();
    out.code(4).contains("usually held 0s: free any time now");
}

#[test]
fn github_groups_the_wait_and_azure_devops_sets_progress() {
    for ci in Ci::ALL {
        let b = Backend::file();
        hold(&b);
        let (k, v) = ci.env();
        let out = as_build(&b, "waiter")
            .env(k, v)
            .env("DEPLOY_LOCK_STORE", format!("file:{}", store_dir(&b)))
            .args(["acquire", "github", "sandbox", "--wait=1s"])
            .run();
        out.code(4);
        match ci {
            Ci::GitHub => {
                let open = out
                    .stderr
                    .find("::group::Waiting for the lock on sandbox (up to 1s)");
                let close = out.stderr.find("::endgroup::");
                let error = out.stderr.find("::error");
                assert!(
                    open.is_some() && open < close && close < error,
                    "{}",
                    out.stderr
                );
            }
            Ci::AzureDevOps => {
                // The percentage of the budget waited at the first look: small, but timing-dependent.
                assert!(
                    out.stderr
                        .lines()
                        .any(|l| l.starts_with("##vso[task.setprogress value=")
                            && l.ends_with(";]Waiting for the lock on sandbox")),
                    "{}",
                    out.stderr
                );
            }
        }
        assert_no_injection(ci, &out, &[], "waiting");
    }
}

fn store_dir(b: &Backend) -> String {
    match b {
        Backend::File(dir) => dir.path().display().to_string(),
        Backend::Azurite { .. } => unreachable!("a file store"),
    }
}

#[test]
fn a_terminal_gets_one_updating_line() {
    let b = Backend::file();
    hold(&b);
    // `script` gives the binary a terminal on stderr.
    let command = format!("{} acquire github sandbox --wait=3s", bin().display());
    let out = Cmd::of("script")
        .env("DEPLOY_LOCK_STORE", format!("file:{}", store_dir(&b)))
        .env("DEPLOY_LOCK_BUILD_ID", "waiter")
        .args(["-qfec", &command, "/dev/null"])
        .run();
    out.code(4);
    assert!(
        out.stdout.matches("\r\x1b[2Kwaited ").count() >= 2,
        "{:?}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("sandbox is locked by github build holder")
    );
}

#[test]
fn a_waiter_takes_the_lock_when_the_holder_releases() {
    for b in backends() {
        hold(&b);
        let mut waiter = as_build(&b, "waiter")
            .args(["acquire", "github", "sandbox", "--wait=1"])
            .spawn();
        let stderr = waiter.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("is locked by github build holder") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the waiter never named the holder");
        as_build(&b, "holder")
            .args(["release", "github", "sandbox"])
            .run()
            .code(0);
        let out = waiter.wait_with_output().expect("waiter");
        reader.join().expect("reader");
        assert_eq!(out.status.code(), Some(0), "{}", b.name());
        as_build(&b, "other")
            .args(["check", "sandbox"])
            .run()
            .code(3)
            .contains("github build waiter");
    }
}
