//! The real binary, every command and exit code, against every store.

use std::time::{Duration, Instant};

use crate::support::{Backend, Cmd, TempDir, backends};

const LEGACY: &[u8] = b"github|2025-09-27 17:30:00 UTC|1234567890";

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd().env("DEPLOY_LOCK_BUILD_ID", build)
}

#[test]
fn acquire_check_release_cycle() {
    for b in backends() {
        let name = b.name();
        as_build(&b, "100")
            .args(["check", "sandbox"])
            .run()
            .code(0)
            .contains("sandbox is free");
        let out = as_build(&b, "100")
            .args(["acquire", "github", "sandbox", "--reason", "release 1.2"])
            .run();
        out.code(0)
            .contains("Acquired the deployment lock on sandbox");
        // Anyone else sees it held, with the holder's details.
        let check = as_build(&b, "200").args(["check", "sandbox"]).run();
        check.code(3);
        for needle in ["github build 100", "release 1.2", "stale in", "age"] {
            assert!(
                check.stdout.contains(needle),
                "{name}: {needle} in {}",
                check.stdout
            );
        }
        // Another run is refused, with who holds it.
        as_build(&b, "200")
            .args(["acquire", "azdevops", "sandbox"])
            .run()
            .code(3)
            .contains("locked by github build 100");
        // Releasing someone else's lock is refused and leaves it.
        as_build(&b, "200")
            .args(["release", "azdevops", "sandbox"])
            .run()
            .code(3)
            .contains("not released");
        as_build(&b, "200").args(["check", "sandbox"]).run().code(3);
        // Ours to release.
        as_build(&b, "100")
            .args(["release", "github", "sandbox"])
            .run()
            .code(0)
            .contains("Released");
        as_build(&b, "200").args(["check", "sandbox"]).run().code(0);
        // A second (cleanup) release is a warning, not a failure.
        as_build(&b, "100")
            .args(["release", "github", "sandbox"])
            .run()
            .code(0)
            .contains("no lock on sandbox to release");
    }
}

#[test]
fn reentrant_for_the_same_run_and_job_but_not_another_job() {
    for b in backends() {
        let job = |j: &str| as_build(&b, "7").env("DEPLOY_LOCK_JOB", j);
        job("deploy")
            .args(["acquire", "github", "prod"])
            .run()
            .code(0);
        job("deploy")
            .args(["acquire", "github", "prod"])
            .run()
            .code(0)
            .contains("Still hold");
        job("other")
            .args(["acquire", "github", "prod"])
            .run()
            .code(3);
        // The seed's cleanup release from a later job of the same run is allowed.
        job("cleanup")
            .args(["release", "github", "prod"])
            .run()
            .code(0);
        job("other")
            .args(["acquire", "github", "prod"])
            .run()
            .code(0);
    }
}

#[test]
fn token_release_touches_only_that_acquisition() {
    for b in backends() {
        let out = as_build(&b, "1")
            .args(["acquire", "github", "qa", "--output", "json"])
            .run();
        let token = out.code(0).json()["token"]
            .as_str()
            .expect("token")
            .to_owned();
        assert_eq!(token.len(), 32);
        as_build(&b, "1")
            .args(["release", "github", "qa", "--token", &"0".repeat(32)])
            .run()
            .code(3);
        as_build(&b, "999")
            .args(["release", "qa", "--token", &token])
            .run()
            .code(0);
    }
}

#[test]
fn wait_options_time_out_and_succeed() {
    for b in backends() {
        as_build(&b, "1").args(["acquire", "staging"]).run().code(0);
        let started = Instant::now();
        as_build(&b, "2")
            .args(["acquire", "staging", "--wait", "0.01"])
            .run()
            .code(4)
            .contains("gave up after waiting");
        assert!(started.elapsed() >= Duration::from_millis(500));
        as_build(&b, "2")
            .args(["wait", "staging", "1s"])
            .run()
            .code(4);
        // A waiter gets the lock once the holder releases it.
        let waiter = as_build(&b, "2")
            .args(["acquire", "--wait=1", "local", "staging"])
            .spawn();
        std::thread::sleep(Duration::from_millis(300));
        as_build(&b, "1").args(["release", "staging"]).run().code(0);
        let out = crate::support::Out::from(waiter.wait_with_output().expect("waiter"));
        out.code(0).contains("Acquired");
        as_build(&b, "3")
            .args(["check", "staging"])
            .run()
            .code(3)
            .contains("local build 2");
        as_build(&b, "2")
            .args(["release", "local", "staging"])
            .run()
            .code(0);
        as_build(&b, "3")
            .args(["wait", "staging", "0.1"])
            .run()
            .code(0);
    }
}

#[test]
fn stale_locks_are_taken_over_by_the_store_clock() {
    for b in backends() {
        as_build(&b, "1")
            .args(["acquire", "dev", "--ttl-minutes", "2s"])
            .run()
            .code(0);
        as_build(&b, "2").args(["acquire", "dev"]).run().code(3);
        std::thread::sleep(Duration::from_millis(3200));
        as_build(&b, "2")
            .args(["check", "dev"])
            .run()
            .code(0)
            .contains("stale");
        as_build(&b, "2")
            .args(["acquire", "dev"])
            .run()
            .code(0)
            .contains("took over a stale lock");
        // The old holder's release no longer touches the new lock.
        as_build(&b, "1").args(["release", "dev"]).run().code(3);
    }
}

#[test]
fn force_break_says_whose_lock_it_broke() {
    for b in backends() {
        as_build(&b, "1")
            .args(["acquire", "github", "prod", "--reason", "hotfix"])
            .run()
            .code(0);
        as_build(&b, "2")
            .args(["force-break", "prod"])
            .run()
            .code(2);
        as_build(&b, "2")
            .args(["force-break", "prod", "--reason", "runner died"])
            .run()
            .code(0)
            .contains("github build 1");
        as_build(&b, "2").args(["check", "prod"]).run().code(0);
        as_build(&b, "2")
            .args(["force-break", "prod", "--reason", "again"])
            .run()
            .code(0)
            .contains("no lock on prod");
    }
}

#[test]
fn status_lists_every_environment() {
    for b in backends() {
        b.cmd().args(["status"]).run().code(0).contains("No locks");
        as_build(&b, "1")
            .args(["acquire", "github", "alpha"])
            .run()
            .code(0);
        as_build(&b, "2")
            .args(["acquire", "azdevops", "beta"])
            .run()
            .code(0);
        let table = b.cmd().args(["status"]).run();
        table.code(0);
        assert!(table.stdout.starts_with("ENVIRONMENT"), "{}", table.stdout);
        assert!(table.stdout.contains("alpha") && table.stdout.contains("azdevops build 2"));
        let json = b.cmd().args(["status", "--output", "json"]).run().json();
        let envs: Vec<&str> = json["environments"]
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v["environment"].as_str().expect("env"))
            .collect();
        assert_eq!(envs, ["alpha", "beta"], "{}", b.name());
        assert_eq!(json["environments"][0]["holder"]["pipeline"], "github");
    }
}

#[test]
fn check_json_has_the_holder_fields() {
    for b in backends() {
        let free = b.cmd().args(["check", "x1", "--output", "json"]).run();
        assert_eq!(free.code(0).json()["state"], "free");
        as_build(&b, "55")
            .args(["acquire", "github", "x1", "--reason", "r"])
            .run()
            .code(0);
        let v = as_build(&b, "56")
            .args(["--output", "json", "check", "x1"])
            .run();
        let v = v.code(3).json();
        assert_eq!(v["environment"], "x1");
        assert_eq!(v["state"], "held");
        assert_eq!(v["holder"]["build_id"], "55");
        assert_eq!(v["holder"]["reason"], "r");
        assert!(v["expires_in_seconds"].as_i64().expect("number") > 1700);
        assert!(
            v["holder"].get("token").is_none(),
            "the token is the holder's"
        );
    }
}

#[test]
fn the_seed_scripts_lock_is_honoured() {
    for b in backends() {
        b.put_raw("deployment-lock-sandbox", LEGACY);
        let check = as_build(&b, "5").args(["check", "sandbox"]).run();
        check.code(3).contains("github build 1234567890");
        as_build(&b, "5")
            .args(["acquire", "github", "sandbox"])
            .run()
            .code(3);
        as_build(&b, "5")
            .args(["release", "github", "sandbox"])
            .run()
            .code(3);
        // The same run (pipeline and build id) owns it, as with the seed script.
        as_build(&b, "1234567890")
            .args(["acquire", "github", "sandbox"])
            .run()
            .code(0)
            .contains("Still hold");
        as_build(&b, "1234567890")
            .args(["release", "github", "sandbox"])
            .run()
            .code(0);
    }
}

#[test]
fn a_seed_lock_past_the_seeds_timeout_is_stale() {
    for b in backends() {
        b.put_raw("deployment-lock-old", LEGACY);
        std::thread::sleep(Duration::from_millis(2200));
        as_build(&b, "5")
            .env("LOCK_TIMEOUT_MINUTES", "1s")
            .args(["acquire", "old", "--ttl-minutes", "10"])
            .run()
            .code(0)
            .contains("took over a stale lock on old from github build 1234567890");
    }
}

/// A lock without a ttl of its own (the seed script's, or one nobody can read) is held for the
/// seed's timeout, `LOCK_TIMEOUT_MINUTES` (30 minutes), whatever ttl the reader uses for its own
/// locks: a `run` with a short ttl does not take over a lock its writer still holds, and `check`
/// says the same.
#[test]
fn a_lock_without_a_ttl_is_judged_by_the_seeds_timeout_not_the_readers_ttl() {
    for b in backends() {
        for (env, blob) in [("seed", LEGACY), ("corrupt", &b"nonsense"[..])] {
            b.put_raw(&format!("deployment-lock-{env}"), blob);
            // Older than the reader's 1.2-second ttl, far younger than 30 minutes.
            std::thread::sleep(Duration::from_millis(2200));
            let before = b.locks();
            let run = as_build(&b, "5")
                .args(["run", env, "--ttl-minutes", "0.02", "--", "true"])
                .run();
            run.code(3);
            assert_eq!(before, b.locks(), "{}: {env} was taken over", b.name());
            let check = as_build(&b, "5")
                .args(["check", env, "--ttl-minutes", "0.02", "--output", "json"])
                .run();
            let v = check.code(3).json();
            assert_eq!(v["ttl_seconds"], 1800, "{}: {env}", b.name());
            let expires = v["expires_in_seconds"].as_i64().expect("expires_in");
            assert!(
                (1700..1800).contains(&expires),
                "{}: {env} expires in {expires} s",
                b.name()
            );
            // The seed's own setting still applies, to both.
            as_build(&b, "5")
                .env("LOCK_TIMEOUT_MINUTES", "1s")
                .args(["check", env, "--ttl-minutes", "10", "--output", "json"])
                .run()
                .code(0)
                .contains("\"stale\":true");
        }
    }
}

#[test]
fn a_corrupt_lock_is_held_by_an_unknown_holder_until_stale() {
    for b in backends() {
        for (i, blob) in [&b""[..], b"\xff\xfe", b"{\"pipeline\": 5}", b"nonsense"]
            .iter()
            .enumerate()
        {
            let env = format!("bad{i}");
            let key = format!("deployment-lock-{env}");
            b.put_raw(&key, blob);
            let before = b.locks();
            as_build(&b, "1")
                .args(["check", &env])
                .run()
                .code(3)
                .contains("unknown holder");
            as_build(&b, "1")
                .args(["acquire", &env])
                .run()
                .code(3)
                .contains("force-break");
            as_build(&b, "1").args(["release", &env]).run().code(3);
            assert_eq!(
                before,
                b.locks(),
                "{}: a corrupt lock was changed",
                b.name()
            );
        }
        std::thread::sleep(Duration::from_millis(2200));
        as_build(&b, "1")
            .env("LOCK_TIMEOUT_MINUTES", "1s")
            .args(["acquire", "bad3"])
            .run()
            .code(0)
            .contains("took over a stale lock");
    }
}

#[test]
fn bad_input_is_exit_2_and_writes_nothing() {
    let long = "a".repeat(64);
    let cases: Vec<Vec<&str>> = vec![
        vec!["acquire", ""],
        vec!["acquire", &long],
        vec!["acquire", "a/b"],
        vec!["acquire", ".."],
        vec!["acquire", "a..b"],
        vec!["acquire", "new\nline"],
        vec!["acquire", "tab\t"],
        vec!["acquire", "semi;colon"],
        vec!["acquire", "bad pipe", "env"],
        vec!["acquire", "env", "--ttl-minutes", "abc"],
        vec!["acquire", "env", "--ttl-minutes", "-5"],
        vec!["acquire", "env", "--ttl-minutes", "0"],
        vec!["acquire", "env", "--ttl-minutes", "99999999"],
        vec!["acquire", "env", "--wait", "forever"],
        vec!["acquire", "env", "--poll-seconds", "NaN"],
        vec!["wait", "env", "1e999"],
        vec!["release", "env", "--token", "not-a-token"],
        vec!["acquire", "env", "--container", "Bad_Container"],
        vec!["acquire", "one", "two", "three"],
        vec!["frobnicate", "env"],
        vec!["check"],
    ];
    for b in backends() {
        let before = b.snapshot();
        for args in &cases {
            let out = b.cmd().args(args).run();
            assert_eq!(
                out.code,
                2,
                "{}: {args:?}\n{}{}",
                b.name(),
                out.stdout,
                out.stderr
            );
            assert!(!out.stderr.trim().is_empty(), "{args:?}: no message");
            assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        }
        assert_eq!(
            before,
            b.snapshot(),
            "{}: bad input wrote to the store",
            b.name()
        );
    }
}

#[test]
fn bad_store_urls_are_exit_2() {
    for url in ["ftp://x/y", "s3://bucket", "file:", "nonsense"] {
        Cmd::new()
            .env("DEPLOY_LOCK_STORE", url)
            .args(["check", "env"])
            .run()
            .code(2)
            .contains("--store");
    }
}

#[test]
fn in_ci_without_a_store_it_refuses_to_lock_locally() {
    for (var, value) in [("GITHUB_ACTIONS", "true"), ("TF_BUILD", "True")] {
        Cmd::new()
            .env(var, value)
            .args(["acquire", "sandbox"])
            .run()
            .code(2)
            .contains("no lock store is configured");
    }
}

#[test]
fn the_local_default_store_is_a_per_user_state_directory() {
    let home = TempDir::new("home");
    let run = |args: &[&str]| {
        Cmd::new()
            .env("HOME", home.path())
            .env("XDG_STATE_HOME", home.join("state"))
            .args(args)
            .run()
    };
    run(&["acquire", "local-env"]).code(0);
    assert!(
        home.join("state/deploy-lock/deployment-locks/deployment-lock-local-env")
            .exists()
    );
    run(&["release", "local-env"]).code(0);
    let help = run(&["--help"]);
    help.code(0).contains("Exit codes").contains("deploy-lock");
    assert!(
        help.stdout
            .contains(&home.join("state/deploy-lock").display().to_string())
    );
}

#[test]
fn github_actions_outputs_and_annotations() {
    for b in backends() {
        let dir = TempDir::new("gh");
        let gh = |build: &str| {
            b.cmd()
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_RUN_ID", build)
                .env("GITHUB_RUN_ATTEMPT", "1")
                .env("GITHUB_JOB", "deploy")
                .env("GITHUB_SERVER_URL", "https://github.com")
                .env("GITHUB_REPOSITORY", "octo/app")
                .env("GITHUB_ACTOR", "octocat")
                .env("GITHUB_OUTPUT", dir.join(&format!("out-{build}")))
        };
        gh("111").args(["acquire", "env1"]).run().code(0);
        let outputs = std::fs::read_to_string(dir.join("out-111")).expect("outputs");
        assert!(outputs.contains("acquired<<"), "{outputs}");
        assert!(outputs.contains("\ntrue\n"));
        assert!(outputs.contains("https://github.com/octo/app/actions/runs/111/attempts/1"));
        let blocked = gh("222").args(["acquire", "env1"]).run();
        blocked.code(3);
        assert!(
            blocked.stderr.contains("::error title=Deployment lock held::env1 is locked by github build 111 (job deploy on testhost) by octocat"),
            "{}",
            blocked.stderr
        );
        assert!(
            blocked
                .stderr
                .contains("https://github.com/octo/app/actions/runs/111")
        );
        let outputs = std::fs::read_to_string(dir.join("out-222")).expect("outputs");
        assert!(
            outputs.contains("acquired<<deploy_lock_eof\nfalse\n"),
            "{outputs}"
        );
        assert!(outputs.contains("holder-url<<"));
    }
}

#[test]
fn azure_devops_outputs_and_issues() {
    for b in backends() {
        let az = |build: &str| {
            b.cmd()
                .env("TF_BUILD", "True")
                .env("BUILD_BUILDID", build)
                .env("BUILD_BUILDNUMBER", "20250927.1")
                .env("SYSTEM_JOBID", "job-guid")
                .env(
                    "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI",
                    "https://dev.azure.com/org/",
                )
                .env("SYSTEM_TEAMPROJECT", "Infra Project")
                .env("BUILD_REQUESTEDFOR", "Ada")
        };
        let ok = az("31").args(["acquire", "env2"]).run();
        ok.code(0)
            .contains("##vso[task.setvariable variable=acquired;isoutput=true]true")
            .contains("##vso[task.setvariable variable=holderUrl;isoutput=true]https://dev.azure.com/org/Infra%AZP2520Project/_build/results?buildId=31");
        let blocked = az("32").args(["acquire", "env2"]).run();
        blocked
            .code(3)
            .contains("##vso[task.logissue type=error]env2 is locked by azdevops build 31")
            .contains("variable=acquired;isoutput=true]false");
    }
}

#[test]
fn hostile_holder_fields_are_printed_escaped() {
    let evil = "x\n::add-mask::secret\n##vso[task.setvariable variable=a]b ::error::boom";
    for b in backends() {
        as_build(&b, "1")
            .args(["acquire", "github", "evil", "--reason", evil])
            .run()
            .code(0);
        for (var, value) in [
            ("GITHUB_ACTIONS", "true"),
            ("TF_BUILD", "True"),
            ("X", "local"),
        ] {
            for args in [
                vec!["check", "evil"],
                vec!["acquire", "evil"],
                vec!["check", "evil", "--output", "json"],
                vec!["status"],
            ] {
                let out = as_build(&b, "2").env(var, value).args(&args).run();
                for line in out.stdout.lines().chain(out.stderr.lines()) {
                    assert!(
                        !line.starts_with("::add-mask::secret"),
                        "{var} {args:?}: {line}"
                    );
                    assert!(!line.trim_start().starts_with("::error::boom"), "{line}");
                    if var == "TF_BUILD" {
                        let lower = line.to_ascii_lowercase();
                        let commands = lower.matches("##vso[").count();
                        let ours = lower.starts_with("##vso[task.") && commands == 1;
                        assert!(commands == 0 || ours, "{args:?}: {line}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_readme_documents_every_command_option_and_exit_code() {
    let readme = include_str!("../README.md");
    let help = Cmd::new().args(["--help"]).run();
    help.code(0);
    let commands: Vec<&str> = help
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.len() >= 9, "{}", help.stdout);
    for command in commands {
        assert!(
            readme.contains(&format!("| `{command}")),
            "README's command table lacks `{command}`"
        );
    }
    for option in help
        .stdout
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
    {
        let option = option.trim_end_matches(',');
        if option != "--help" && option != "--version" {
            assert!(readme.contains(option), "README lacks {option}");
        }
    }
    for code in [
        "| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |", "| 130 |",
    ] {
        assert!(readme.contains(code), "README's exit codes lack {code}");
        assert!(
            help.stdout
                .contains(&format!("  {} ", code.trim_matches(&['|', ' '][..])))
        );
    }
}

#[test]
fn github_matrix_legs_exclude_each_other_and_a_rerun_takes_over() {
    for b in backends() {
        let dir = TempDir::new("matrix");
        let leg = |attempt: &str, runner: &str| {
            b.cmd()
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_RUN_ID", "900")
                .env("GITHUB_JOB", "deploy")
                .env("GITHUB_RUN_ATTEMPT", attempt)
                .env("RUNNER_NAME", runner)
                .env("GITHUB_OUTPUT", dir.join("out"))
        };
        leg("1", "runner-a")
            .args(["acquire", "shared"])
            .run()
            .code(0);
        // Another leg of the same matrix job: same run, job and attempt, another runner.
        leg("1", "runner-b")
            .args(["acquire", "shared"])
            .run()
            .code(3);
        // A later step of the first leg still holds it.
        leg("1", "runner-a")
            .args(["acquire", "shared"])
            .run()
            .code(0)
            .contains("Still hold");
        // A re-run of the job (a new attempt) takes over its own job's lock, as a new holder.
        leg("2", "runner-c")
            .args(["acquire", "shared"])
            .run()
            .code(0)
            .contains("took over the lock on shared from an earlier attempt of this job");
    }
}

#[test]
fn slips_in_pipeline_env_are_caught_before_anything_is_written() {
    let b = Backend::file();
    for (args, needle) in [
        (
            ["acquire", "sandbox", "60"],
            "looks like a number of minutes",
        ),
        (["acquire", "sandbox", "5m"], "--wait=5m"),
        (["release", "sandbox", "github"], "`github sandbox`"),
    ] {
        as_build(&b, "100")
            .args(args)
            .run()
            .code(2)
            .contains(needle);
    }
    assert!(b.snapshot().is_empty(), "{:?}", b.snapshot().keys());
}
