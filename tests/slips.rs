//! Slips the CLI catches: a release under another pipeline type, release hints that carry the
//! identity acquire was given.

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
