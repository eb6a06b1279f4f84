//! Long deployments: renew, `run` with its heartbeat, fencing numbers and the audit trail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Backend, Out, TempDir, backends};

fn as_build(b: &Backend, build: &str) -> crate::support::Cmd {
    b.cmd().env("DEPLOY_LOCK_BUILD_ID", build)
}

#[test]
fn renew_extends_our_lock_and_reports_a_lost_one() {
    for b in backends() {
        as_build(&b, "1")
            .args(["acquire", "r1", "--ttl-minutes", "2s"])
            .run()
            .code(0);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(900));
            as_build(&b, "1")
                .args(["renew", "r1", "--ttl-minutes", "2s"])
                .run()
                .code(0)
                .contains("Renewed");
        }
        // Three renewals spanned more than the ttl: still held.
        as_build(&b, "2").args(["acquire", "r1"]).run().code(3);
        // Someone who never held it is told who does, and nothing is written.
        let before = b.snapshot();
        as_build(&b, "2")
            .args(["renew", "r1"])
            .run()
            .code(3)
            .contains("nothing was renewed");
        assert_eq!(
            b.snapshot(),
            before,
            "{}: a refused renewal wrote",
            b.name()
        );
        as_build(&b, "1").args(["release", "r1"]).run().code(0);
        let before = b.snapshot();
        as_build(&b, "1")
            .args(["renew", "r1"])
            .run()
            .code(5)
            .contains("gone");
        assert_eq!(
            b.snapshot(),
            before,
            "{}: a renewal of no lock wrote",
            b.name()
        );
        // With the token, a renewal that finds the lock gone reports it lost.
        let token = as_build(&b, "1")
            .args(["acquire", "r1", "--output", "json"])
            .run()
            .code(0)
            .json()["token"]
            .as_str()
            .expect("token")
            .to_owned();
        as_build(&b, "1").args(["release", "r1"]).run().code(0);
        as_build(&b, "1")
            .args(["renew", "r1", "--token", &token])
            .run()
            .code(5)
            .contains("gone");
    }
}

/// A renewal keeps the lock's own ttl unless `--ttl-minutes` gives a new one.
#[test]
fn renew_keeps_the_locks_ttl_unless_one_is_given() {
    for b in backends() {
        let ttl = |b: &Backend| {
            as_build(b, "other")
                .args(["check", "t", "--output", "json"])
                .run()
                .code(3)
                .json()["ttl_seconds"]
                .as_i64()
        };
        as_build(&b, "1")
            .args(["acquire", "t", "--ttl-minutes", "120"])
            .run()
            .code(0);
        as_build(&b, "1")
            .args(["renew", "t"])
            .run()
            .code(0)
            .contains("stale in 2h");
        assert_eq!(ttl(&b), Some(7200), "{}", b.name());
        as_build(&b, "1")
            .args(["renew", "t", "--ttl-minutes", "10"])
            .run()
            .code(0)
            .contains("stale in 10m");
        assert_eq!(ttl(&b), Some(600), "{}", b.name());
        as_build(&b, "other")
            .args(["check", "t"])
            .run()
            .code(3)
            .contains("ttl 10m");
    }
}

#[cfg(unix)]
#[test]
fn run_holds_the_lock_for_longer_than_several_ttls() {
    for b in backends() {
        let run = as_build(&b, "runner")
            .args([
                "run",
                "long",
                "--ttl-minutes",
                "1s",
                "--",
                "sh",
                "-c",
                "sleep 3.5; echo fence=$DEPLOY_LOCK_FENCE; exit 7",
            ])
            .spawn();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        while started.elapsed() < Duration::from_secs(3) {
            as_build(&b, "competitor")
                .args(["acquire", "long"])
                .run()
                .code(3);
            std::thread::sleep(Duration::from_millis(400));
        }
        let out = Out::from(run.wait_with_output().expect("run"));
        out.code(7);
        let fence = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("fence="))
            .expect("fence line");
        assert!(fence.parse::<u64>().is_ok(), "{}", out.stdout);
        // Released when the command ended.
        as_build(&b, "competitor")
            .args(["check", "long"])
            .run()
            .code(0);
    }
}

#[cfg(unix)]
#[test]
fn run_on_lost_kill_stops_the_command_and_exits_5() {
    for b in backends() {
        let run = as_build(&b, "runner")
            .args([
                "run",
                "lost",
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
            .args(["force-break", "lost", "--reason", "test"])
            .run()
            .code(0);
        let started = Instant::now();
        let out = Out::from(run.wait_with_output().expect("run"));
        out.code(5).contains("was lost while the command runs");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the command was not stopped"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_killed_heartbeat_lets_a_competitor_in_after_one_ttl() {
    for b in backends() {
        let mut run = as_build(&b, "runner")
            .args(["run", "crash", "--ttl-minutes", "2s", "--", "sleep", "5"])
            .spawn();
        std::thread::sleep(Duration::from_millis(800));
        run.kill().expect("SIGKILL the holder");
        let _ = run.wait();
        // Fresh: nobody may take it yet.
        as_build(&b, "next")
            .args(["acquire", "crash"])
            .run()
            .code(3);
        // After the ttl by the store's clock it is stale and the waiter takes it over.
        as_build(&b, "next")
            .args(["acquire", "crash", "--wait=0.2"])
            .run()
            .code(0)
            .contains("took over a stale lock");
    }
}

/// The action's detached heartbeat follows the job: it renews the lock for as long as the
/// process that started the main step (here a shell playing the runner's worker) lives, however
/// long that is, and stops once it is gone; the lock then expires after its ttl.
#[cfg(unix)]
#[test]
fn the_detached_heartbeat_lives_as_long_as_the_job() {
    for b in backends() {
        let job = TempDir::new("job");
        let mut runner = crate::support::Cmd::of("sh");
        for (k, v) in b.store_env() {
            runner = runner.env(&k, v);
        }
        for name in ["GITHUB_STATE", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"] {
            std::fs::write(job.join(name), "").expect("job file");
            runner = runner.env(name, job.join(name));
        }
        let mut runner = runner
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_JOB", "deploy")
            .env("RUNNER_TEMP", job.path())
            .env("INPUT_ENVIRONMENT", "hb")
            // The worker runs the main step, then lives on while the job's other steps run. The
            // shell would drop a variable with `-` in its name, so env(1) passes the input.
            .args([
                "-c",
                "env INPUT_LOCK-TIMEOUT-MINUTES=2s \"$0\" step main && exec sleep 300",
            ])
            .args([crate::support::bin()])
            .spawn();
        let done_file = || {
            std::fs::read_dir(job.path())
                .expect("runner temp")
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("deploy-lock-heartbeat-") && n.ends_with(".done")
                    })
                })
        };
        let started = Instant::now();
        while as_build(&b, "next").args(["check", "hb"]).run().code != 3 {
            assert!(started.elapsed() < Duration::from_secs(30), "never held");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Held across several ttls while the job lives.
        let held = Instant::now();
        while held.elapsed() < Duration::from_secs(5) {
            as_build(&b, "next").args(["acquire", "hb"]).run().code(3);
            std::thread::sleep(Duration::from_millis(400));
        }
        assert!(done_file().is_none(), "the heartbeat ended early");
        runner.kill().expect("end the job's process");
        let _ = runner.wait();
        let ended = Instant::now();
        let done = loop {
            if let Some(done) = done_file() {
                break std::fs::read_to_string(done).expect("done file");
            }
            assert!(
                ended.elapsed() < Duration::from_secs(30),
                "{}: the heartbeat outlived the job",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(done.contains("is gone"), "{done}");
        // Nobody releases it: it goes stale after its ttl and the next run takes it over.
        as_build(&b, "next")
            .args(["acquire", "hb", "--wait=0.5"])
            .run()
            .code(0)
            .contains("took over a stale lock");
    }
}

#[test]
fn fencing_numbers_strictly_increase_across_200_competing_acquisitions() {
    for b in backends() {
        let log = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            for worker in 0..8 {
                let log = Arc::clone(&log);
                let b = &b;
                scope.spawn(move || {
                    let build = format!("f{worker}");
                    for cycle in 0..25 {
                        let out = as_build(b, &build)
                            .env("DEPLOY_LOCK_POLL_SECONDS", "0.02")
                            .args(["acquire", "fenced", "--wait=5", "--output", "json"])
                            .run();
                        let fence = out.code(0).json()["fence"].as_u64().expect("fence");
                        log.lock()
                            .expect("log")
                            .push((Instant::now(), fence, worker, cycle));
                        // Every few cycles leave the lock to go stale or be broken instead.
                        match cycle % 10 {
                            3 => as_build(b, "admin")
                                .args(["force-break", "fenced", "--reason", "fence test"])
                                .run(),
                            _ => as_build(b, &build).args(["release", "fenced"]).run(),
                        }
                        .code(0);
                    }
                });
            }
        });
        let mut log = log.lock().expect("log").clone();
        assert_eq!(log.len(), 200);
        log.sort_by_key(|entry| entry.0);
        for pair in log.windows(2) {
            assert!(
                pair[1].1 > pair[0].1,
                "{}: fence {} after {}",
                b.name(),
                pair[1].1,
                pair[0].1
            );
        }
    }
}

#[test]
fn history_shows_every_event_of_a_scenario_in_order() {
    for b in backends() {
        as_build(&b, "A")
            .args(["acquire", "github", "h", "--reason", "deploy v1"])
            .run()
            .code(0);
        as_build(&b, "B")
            .args(["acquire", "azdevops", "h"])
            .run()
            .code(3);
        as_build(&b, "A")
            .args(["release", "github", "h"])
            .run()
            .code(0);
        let token = as_build(&b, "B")
            .args([
                "acquire",
                "azdevops",
                "h",
                "--ttl-minutes",
                "1s",
                "--output",
                "json",
            ])
            .run()
            .code(0)
            .json()["token"]
            .as_str()
            .expect("token")
            .to_owned();
        // Last-Modified and Date have whole seconds: 2.2 s is past a 1 s ttl on any rounding.
        std::thread::sleep(Duration::from_millis(2200));
        as_build(&b, "C").args(["acquire", "h"]).run().code(0);
        as_build(&b, "D")
            .args(["force-break", "h", "--reason", "stuck runner"])
            .run()
            .code(0);
        // With its token, B learns its lock is lost, and that is recorded.
        as_build(&b, "B")
            .args(["renew", "azdevops", "h", "--token", &token])
            .run()
            .code(5);
        let events = b.cmd().args(["history", "h", "--output", "json"]).run();
        let events = events.code(0).json();
        let seen: Vec<(String, String)> = events["events"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap_or_default().to_owned(),
                    e["build_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("acquire", "A"),
            ("blocked", "B"),
            ("release", "A"),
            ("acquire", "B"),
            ("steal", "C"),
            ("force-break", "D"),
            ("renew-failed", "B"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(e, w)| ((*e).to_owned(), (*w).to_owned()))
            .collect();
        assert_eq!(seen, expected, "{}", b.name());
        let all = events["events"].as_array().expect("array");
        assert_eq!(all[0]["reason"], "deploy v1");
        assert_eq!(all[1]["other"], "github build A by tester");
        assert!(all[2]["held_seconds"].is_i64());
        assert_eq!(all[5]["reason"], "stuck runner");
        assert!(all[4]["fence"].as_u64() > all[0]["fence"].as_u64());
        let text = b.cmd().args(["history", "h"]).run();
        text.code(0)
            .contains("took over from")
            .contains("broke the lock of");
        let recent = b
            .cmd()
            .args(["history", "h", "--since", "1h", "--output", "json"])
            .run();
        assert_eq!(
            recent.code(0).json()["events"].as_array().map(Vec::len),
            Some(7)
        );
        let future = b
            .cmd()
            .args([
                "history",
                "h",
                "--since",
                "2999-01-01T00:00:00Z",
                "--output",
                "json",
            ])
            .run();
        assert_eq!(
            future.code(0).json()["events"].as_array().map(Vec::len),
            Some(0)
        );
        b.cmd()
            .args(["history", "h", "--since", "yesterday"])
            .run()
            .code(2);
    }
}

/// Seconds in a `human` duration: `3s`, `1m 5s`.
fn seconds_in(text: &str) -> u64 {
    text.split_whitespace()
        .map(|part| {
            let (n, unit) = part.split_at(part.len() - 1);
            let n: u64 = n
                .parse()
                .unwrap_or_else(|_| panic!("not a duration: {text}"));
            match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => panic!("not a duration: {text}"),
            }
        })
        .sum()
}

/// Age and hold time count from the acquisition, not from the last renewal: with a 3-second ttl
/// renewed every second, `check` after 3 seconds shows an age of at least 3 seconds, and a `run`
/// of a 3-second command was held at least 3 seconds, in its message and in the audit log.
#[test]
fn age_and_hold_time_count_from_the_acquisition_not_the_last_renewal() {
    // Without fencing, the first-request create is the only write before the renewals: the
    // acquisition time must survive them too.
    for (b, fence) in backends()
        .into_iter()
        .map(|b| (b, true))
        .chain([(Backend::file(), false)])
    {
        let mut args = vec!["run", "held", "--ttl-minutes", "0.05"];
        if !fence {
            args.push("--no-fence");
        }
        let mut running = as_build(&b, "long")
            .args(args.iter().chain(&["--", "sleep", "6"]))
            .spawn();
        let until = Instant::now() + Duration::from_secs(10);
        while as_build(&b, "other").args(["check", "held"]).run().code != 3 {
            assert!(
                Instant::now() < until,
                "{}: the run never took the lock",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(3200));
        let check = as_build(&b, "other")
            .args(["check", "held", "--output", "json"])
            .run();
        let v = check.code(3).json();
        let age = v["age_seconds"].as_i64().expect("age");
        assert!(age >= 3, "{}: age {age} s after 3 s held", b.name());
        assert!(
            v["expires_in_seconds"].as_i64() <= Some(3),
            "{}: renewals keep the ttl short: {v}",
            b.name()
        );
        let status = running.wait().expect("run");
        assert!(status.success(), "{}: run failed", b.name());

        let out = as_build(&b, "long")
            .args(["run", "held", "--ttl-minutes", "0.05", "--", "sleep", "3"])
            .run();
        let line = out
            .code(0)
            .stdout
            .lines()
            .find(|l| l.contains("Released"))
            .unwrap_or_else(|| panic!("{}: no release line: {}", b.name(), out.stdout))
            .to_owned();
        let held = line
            .split("(held ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("{}: {line}", b.name()));
        assert!(seconds_in(held) >= 3, "{}: {line}", b.name());
        let events = b.cmd().args(["history", "held", "--output", "json"]).run();
        let events = events.code(0).json();
        let releases: Vec<i64> = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["event"] == "release")
            .map(|e| e["held_seconds"].as_i64().expect("held_seconds"))
            .collect();
        assert_eq!(releases.len(), 2, "{}: {events}", b.name());
        assert!(
            releases.iter().all(|h| *h >= 3),
            "{}: held {releases:?}",
            b.name()
        );
    }
}

/// A holder whose clock is hours off records the store's time, so every reader sees the true age,
/// whatever its own clock says.
#[test]
fn age_is_the_stores_whatever_the_holders_or_readers_clock() {
    let b = Backend::azurite("age-skew");
    for (holder, reader) in [("+5h", "-5h"), ("-5h", "+5h")] {
        crate::skew::skewed(as_build(&b, "skewed"), holder)
            .args(["acquire", "age"])
            .run()
            .code(0);
        let check = crate::skew::skewed(as_build(&b, "other"), reader)
            .args(["check", "age", "--output", "json"])
            .run();
        let v = check.code(3).json();
        let age = v["age_seconds"].as_i64().expect("age");
        assert!((0..=10).contains(&age), "{holder}/{reader}: age {age} s");
        let at = v["holder"]["acquired_at"].as_str().expect("acquired_at");
        let at = chrono::DateTime::parse_from_rfc3339(at).expect("rfc3339");
        let off = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
        assert!(
            off.abs() <= 10,
            "{holder}: acquired_at {at} is off by {off} s"
        );
        crate::skew::skewed(as_build(&b, "skewed"), holder)
            .args(["release", "age"])
            .run()
            .code(0);
    }
}
