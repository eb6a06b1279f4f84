//! Slips the CLI catches: a release under another pipeline type, release hints that carry the
//! identity acquire was given, environments whose names differ only in case.

use crate::support::Backend;

#[test]
fn a_release_under_another_pipeline_type_names_how_the_lock_was_taken() {
    let b = Backend::file();
    b.cmd()
        .args(["acquire", "github", "qa", "--build-id", "77"])
        .run()
        .code(0)
        .contains("Release it with: deploy-lock release github qa --build-id 77");
    let before = b.snapshot();
    b.cmd()
        .args(["release", "azdevops", "qa", "--build-id", "77"])
        .run()
        .code(3)
        .contains("you took it as pipeline github; run `deploy-lock release github qa`");
    assert_eq!(b.snapshot(), before, "nothing written");
    b.cmd()
        .args(["release", "github", "qa", "--build-id", "77"])
        .run()
        .code(0);
}

#[test]
fn the_release_hint_carries_the_token_acquire_was_given() {
    let b = Backend::file();
    let first = b.cmd().args(["--output", "json", "acquire", "qa"]).run();
    let token = first.code(0).json()["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    b.cmd()
        .args(["acquire", "qa", "--token", &token])
        .run()
        .code(0);
    // A nested acquire gives no hint (its outer holder releases); a fresh one with a token does.
    b.cmd()
        .args(["release", "qa", "--token", &token])
        .run()
        .code(0);
    b.cmd()
        .env("DEPLOY_LOCK_TOKEN", &token)
        .args(["acquire", "qa"])
        .run()
        .code(0)
        .contains(&format!(
            "Release it with: deploy-lock release local qa --token {token}"
        ));
}

#[test]
fn force_break_reports_once_in_text_and_in_json() {
    let b = Backend::file();
    b.cmd().args(["acquire", "qa"]).run().code(0);
    let text = b
        .cmd()
        .args(["force-break", "qa", "--reason", "runner died"])
        .run();
    text.code(0)
        .contains("Broke the deployment lock on qa")
        .contains("reason: runner died");
    assert!(text.stderr.is_empty(), "{}", text.stderr);
    b.cmd().args(["acquire", "qa"]).run().code(0);
    let json = b
        .cmd()
        .args(["force-break", "qa", "--reason", "stuck", "--output", "json"])
        .run();
    assert_eq!(json.code(0).json()["state"], "broken");
    assert!(json.stderr.is_empty(), "{}", json.stderr);
    let nothing = b
        .cmd()
        .args(["force-break", "qa", "--reason", "again"])
        .run();
    nothing.code(0);
    assert!(nothing.stdout.is_empty(), "{}", nothing.stdout);
    assert!(nothing.stderr.contains("there is no lock on qa to break"));
}

#[test]
fn an_unknown_command_is_a_usage_error_that_writes_nothing() {
    let b = Backend::file();
    b.cmd().args(["acquire", "qa"]).run().code(0);
    let before = b.snapshot();
    for words in [vec!["aquire", "qa"], vec!["lock", "qa", "--reason", "x"]] {
        b.cmd()
            .args(&words)
            .run()
            .code(2)
            .contains("unrecognized subcommand");
    }
    assert_eq!(b.snapshot(), before);
}

#[test]
fn environments_that_differ_only_in_case_are_named_as_two_locks() {
    for b in crate::support::backends() {
        for env in ["Prod", "prod", "staging"] {
            b.cmd()
                .args(["acquire", env, "--build-id", env])
                .run()
                .code(0);
        }
        let out = b.cmd().args(["status"]).run();
        out.code(0);
        assert!(
            out.stderr
                .contains("Prod and prod differ only in case: they are two different locks"),
            "{}: {}",
            b.name(),
            out.stderr
        );
        assert!(!out.stderr.contains("staging and"), "{}", out.stderr);
    }
}
