//! Reaping: a waiter with a token for its CI asks whether the holder's run ended, and takes the
//! lock over (or removes the queue ticket) only when the run's CI says it completed. GitHub's and
//! Azure DevOps' APIs run on loopback (`reap/api.rs`); the store is a local directory.

#[path = "reap/api.rs"]
mod api;

use api::CiApi;

use crate::support::{Backend, Cmd};

const GH_TOKEN: &str = "ghs_reapCanary0123456789";
const ADO_TOKEN: &str = "adoReapCanary0123456789";

/// A step of GitHub run `run` (attempt 1) of `octo/app`, on the fake GitHub.
fn github(b: &Backend, api: &CiApi, run: &str) -> Cmd {
    b.cmd()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_JOB", "deploy")
        .env("GITHUB_API_URL", api.github())
}

/// GitHub run 100 takes `prod` for an hour.
fn held_by_run_100(b: &Backend, api: &CiApi) {
    github(b, api, "100")
        .args(["acquire", "prod", "--ttl-minutes", "60"])
        .run()
        .code(0);
}

/// A step of Azure DevOps build `build` of project `Web Shop`, on the fake collection.
fn azdo(b: &Backend, api: &CiApi, build: &str) -> Cmd {
    b.cmd()
        .env("TF_BUILD", "True")
        .env("BUILD_BUILDID", build)
        .env("SYSTEM_JOBID", "job-1")
        .env("SYSTEM_TEAMPROJECT", "Web Shop")
        .env("SYSTEM_COLLECTIONURI", api.collection())
}

/// The token appears in no line but the one that masks it.
#[track_caller]
fn never_printed(out: &crate::support::Out, token: &str) {
    for line in out.all().lines() {
        let masking = line.starts_with("::add-mask::") || line.starts_with("##vso[task.setsecret]");
        assert!(masking || !line.contains(token), "token printed: {line}");
    }
}

/// The JSON line of a run in CI (the masking command comes first).
fn json_of(out: &crate::support::Out) -> serde_json::Value {
    let line = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", out.all()))
}

fn history(b: &Backend, env: &str) -> Vec<serde_json::Value> {
    let out = b.cmd().args(["history", env, "--output", "json"]).run();
    out.code(0);
    out.json()["events"]
        .as_array()
        .cloned()
        .expect("{\"events\": [...]}")
}

#[test]
fn acquire_wait_takes_over_from_a_github_run_that_completed() {
    let b = Backend::file();
    let api = CiApi::start();
    held_by_run_100(&b, &api);
    let record = String::from_utf8(b.locks()["deployment-lock-prod"].clone()).expect("text");
    assert!(
        record.contains(r#""ci_run":{"system":"github""#),
        "{record}"
    );
    api.github_run("100", "completed", Some("cancelled"));
    let out = github(&b, &api, "200")
        .env("GITHUB_TOKEN", GH_TOKEN)
        .args([
            "acquire", "prod", "--wait", "1", "--output", "json", "--debug",
        ])
        .run();
    out.code(0).contains("whose run has ended (cancelled)");
    never_printed(&out, GH_TOKEN);
    let taken = json_of(&out);
    assert_eq!(taken["reaped"], "cancelled");
    assert_eq!(taken["stolen_from"]["build_id"], "100");
    let asked = api.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].target,
        "/gh/repos/octo/app/actions/runs/100/attempts/1"
    );
    assert_eq!(asked[0].authorization, format!("Bearer {GH_TOKEN}"));
    let events = history(&b, "prod");
    let reaped = events.last().expect("an event");
    assert_eq!(reaped["event"], "reaped");
    assert_eq!(reaped["conclusion"], "cancelled");
    assert_eq!(reaped["build_id"], "200");
}

#[test]
fn runs_queued_in_progress_unknown_or_unanswered_are_never_reaped() {
    for (status, body) in [
        (200, r#"{"status":"in_progress","conclusion":null}"#),
        (200, r#"{"status":"queued","conclusion":null}"#),
        (404, r#"{"message":"Not Found"}"#),
        (500, "oops"),
        (200, "<html>sign in</html>"),
    ] {
        let b = Backend::file();
        let api = CiApi::start();
        held_by_run_100(&b, &api);
        api.answer("100", status, body);
        let out = github(&b, &api, "200")
            .env("GITHUB_TOKEN", GH_TOKEN)
            .args(["acquire", "prod", "--wait", "1s"])
            .run();
        out.code(4);
        never_printed(&out, GH_TOKEN);
        // Asked once in the wait (once a minute), retried only when the API failed.
        let asked = api.asked().len();
        assert!(
            asked == 1 || (status == 500 && asked == 2),
            "{status}: {asked}"
        );
        github(&b, &api, "100")
            .args(["check", "prod"])
            .run()
            .code(0)
            .contains("locked by us");
    }
}

#[test]
fn without_a_token_nothing_is_asked() {
    let b = Backend::file();
    let api = CiApi::start();
    held_by_run_100(&b, &api);
    api.github_run("100", "completed", Some("failure"));
    github(&b, &api, "200")
        .args(["acquire", "prod", "--wait", "1s"])
        .run()
        .code(4);
    github(&b, &api, "200")
        .args(["reap"])
        .run()
        .code(2)
        .contains("GITHUB_TOKEN");
    assert!(api.asked().is_empty(), "{:?}", api.asked());
}

#[test]
fn a_record_naming_another_api_gets_no_token() {
    let b = Backend::file();
    let api = CiApi::start();
    let attacker = CiApi::start();
    // Written by anyone who can write to the store: a holder "on" another GitHub.
    held_by_run_100(&b, &attacker);
    attacker.github_run("100", "completed", Some("cancelled"));
    api.github_run("100", "completed", Some("cancelled"));
    let out = github(&b, &api, "200")
        .env("GITHUB_TOKEN", GH_TOKEN)
        .args(["acquire", "prod", "--wait", "1s", "--debug"])
        .run();
    out.code(4);
    never_printed(&out, GH_TOKEN);
    let out = github(&b, &api, "200")
        .env("GH_TOKEN", GH_TOKEN)
        .args(["reap"])
        .run();
    out.code(0).contains("Nothing to reap in 1 environment(s)");
    assert!(attacker.asked().is_empty(), "{:?}", attacker.asked());
    assert!(api.asked().is_empty(), "{:?}", api.asked());
}

#[test]
fn a_waiter_whose_run_ended_gives_up_its_place_in_the_queue() {
    let b = Backend::file();
    let api = CiApi::start();
    // A ticket at the head of the queue, refreshed once a minute by its waiter: live.
    let ticket = format!(
        "deployment-queue-prod.0000000000001.{}.60000",
        "a".repeat(32)
    );
    let body = format!(
        r#"{{"ci_run":{{"system":"github","api_url":"{}","repository":"octo/app","run_id":"300","attempt":"1"}}}}"#,
        api.github()
    );
    b.put_raw(&ticket, body.as_bytes());
    // Without a token the ticket stays: the waiter behind it tries only when its wait runs out.
    github(&b, &api, "200")
        .args(["acquire", "prod", "--wait", "1s"])
        .run()
        .code(0);
    assert!(b.snapshot().contains_key(&ticket));
    assert!(api.asked().is_empty());
    github(&b, &api, "200")
        .args(["release", "prod"])
        .run()
        .code(0);
    api.github_run("300", "completed", Some("cancelled"));
    // With one, the ticket of the run that ended is given up at the first look, long before the
    // wait would run out.
    github(&b, &api, "200")
        .env("GITHUB_TOKEN", GH_TOKEN)
        .args(["acquire", "prod", "--wait", "5"])
        .run()
        .code(0);
    assert!(!b.snapshot().contains_key(&ticket));
    assert_eq!(api.asked().len(), 1);
}

#[test]
fn reap_removes_the_locks_and_tickets_of_azure_devops_builds_that_ended() {
    let b = Backend::file();
    let api = CiApi::start();
    azdo(&b, &api, "7")
        .args(["acquire", "web", "--ttl-minutes", "60"])
        .run()
        .code(0);
    azdo(&b, &api, "8")
        .args(["acquire", "api", "--ttl-minutes", "60"])
        .run()
        .code(0);
    let ticket = format!(
        "deployment-queue-api.0000000000001.{}.60000",
        "b".repeat(32)
    );
    let body = format!(
        r#"{{"ci_run":{{"system":"azdevops","api_url":"{}","project":"Web Shop","run_id":"9"}}}}"#,
        api.collection()
    );
    b.put_raw(&ticket, body.as_bytes());
    api.azdo_build("7", "completed", Some("canceled"));
    api.azdo_build("8", "inProgress", None);
    api.azdo_build("9", "completed", Some("failed"));
    let out = azdo(&b, &api, "50")
        .env("SYSTEM_ACCESSTOKEN", ADO_TOKEN)
        .args(["reap", "--output", "json", "--debug"])
        .run();
    out.code(0);
    never_printed(&out, ADO_TOKEN);
    let json = json_of(&out);
    assert_eq!(json["environments_checked"], 2);
    let reaped = json["reaped"].as_array().expect("a list");
    assert_eq!(reaped.len(), 2, "{json}");
    assert!(reaped.iter().any(|r| r["environment"] == "web"
        && r["kind"] == "lock"
        && r["conclusion"] == "canceled"));
    assert!(reaped.iter().any(|r| r["environment"] == "api"
        && r["kind"] == "queue-ticket"
        && r["conclusion"] == "failed"));
    let locks = b.locks();
    assert!(!locks.contains_key("deployment-lock-web"));
    assert!(locks.contains_key("deployment-lock-api"));
    assert!(!b.snapshot().contains_key(&ticket));
    for asked in api.asked() {
        assert!(
            asked
                .target
                .starts_with("/ado/Web%20Shop/_apis/build/builds/"),
            "{asked:?}"
        );
        assert!(asked.target.ends_with("?api-version=7.1"), "{asked:?}");
        assert_eq!(asked.authorization, format!("Bearer {ADO_TOKEN}"));
    }
    let events = history(&b, "web");
    assert_eq!(events.last().expect("an event")["event"], "reaped");
    b.cmd().args(["history", "web"]).run().code(0).contains(
        "reaped the lock of azdevops build 7 (job job-1 on testhost), its run ended: canceled",
    );
    // Text, and only the environments asked for.
    api.azdo_build("8", "completed", Some("succeeded"));
    azdo(&b, &api, "50")
        .env("SYSTEM_ACCESSTOKEN", ADO_TOKEN)
        .args(["reap", "api"])
        .run()
        .code(0)
        .contains("Reaped the lock on api: azdevops build 8")
        .contains("ended (succeeded)");
    assert!(b.locks().is_empty());
}
