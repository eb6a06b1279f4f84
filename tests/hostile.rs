//! Hostile and malformed input, table-driven: every case is a clear error with the right exit code
//! (2 for bad input, 1 for refused credentials, 3 for a lock held by an unknown holder), never a
//! panic, and the store is left as it was. Secrets never reach the output.

use crate::support::azurite::{ACCOUNT, KEY, azurite};
use crate::support::{Ci, Out, TempDir, assert_no_injection, backends};

#[track_caller]
fn no_panic(out: &Out, what: &str) {
    assert!(
        !out.stdout.contains("panicked") && !out.stderr.contains("panicked"),
        "{what}: panicked\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[track_caller]
pub(crate) fn expect(out: &Out, code: i32, needle: &str, what: &str) {
    no_panic(out, what);
    assert_eq!(
        out.code, code,
        "{what}\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.all().contains(needle),
        "{what}: expected {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn bad_names_durations_and_urls_are_usage_errors() {
    let long_pipeline = "p".repeat(33);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["acquire", "ä"], "environment name"),
        (vec!["acquire", "a b"], "environment name"),
        (vec!["acquire", "../etc"], "environment name"),
        (vec!["acquire", "x\u{1b}[31m"], "environment name"),
        (vec!["acquire", "##vso[task.complete]"], "environment name"),
        (vec!["acquire", "::error::x", "env"], "pipeline type"),
        (vec!["acquire", &long_pipeline, "env"], "pipeline type"),
        (
            vec!["acquire", "env", "--ttl-minutes", "1e309"],
            "not a duration",
        ),
        (
            vec!["acquire", "env", "--ttl-minutes", "0.001"],
            "at least one second",
        ),
        (
            vec!["acquire", "env", "--ttl-minutes", "5w"],
            "not a duration",
        ),
        (
            vec!["acquire", "env", "--ttl-minutes", "8y"],
            "not a duration",
        ),
        (
            vec!["acquire", "env", "--ttl-minutes", "8d"],
            "longer than a week",
        ),
        (
            vec!["acquire", "env", "--poll-seconds", "0"],
            "poll interval",
        ),
        (vec!["wait", "env", "-1"], "wait"),
        (vec!["acquire", "env", "--wait=NaN"], "--wait"),
        (vec!["acquire", "env", "--build-id", "a\nb"], "line breaks"),
    ];
    for b in backends() {
        let before = b.snapshot();
        for (args, needle) in &cases {
            let out = b.cmd().args(args).run();
            expect(&out, 2, needle, &format!("{}: {args:?}", b.name()));
        }
        assert_eq!(before, b.snapshot(), "{}: bad input wrote", b.name());
    }
}

#[test]
fn bad_store_urls_and_connection_strings_are_usage_errors() {
    let port = azurite().port();
    let with_store = [
        ("http://", "host"),
        ("https://", "host"),
        (
            "https://user:pw@myacct.blob.core.windows.net/c",
            "user name",
        ),
        ("http://127.0.0.1:1", "account name"),
        ("https://myacct.blob.core.windows.net/c/d/e", "not a blob"),
        (
            "https://myacct.blob.core.windows.net/UPPER",
            "container name",
        ),
        ("gopher://x/y", "--store"),
    ];
    for (url, needle) in with_store {
        let out = crate::support::Cmd::new()
            .env("DEPLOY_LOCK_STORE", url)
            .args(["acquire", "env"])
            .run();
        expect(&out, 2, needle, url);
    }
    let endpoint = format!("http://127.0.0.1:{port}/{ACCOUNT}");
    let connection_strings = [
        ("garbage".to_owned(), "without `=`"),
        (";;;;".to_owned(), "empty"),
        (
            format!("AccountName={ACCOUNT};AccountKey=!!!notbase64;BlobEndpoint={endpoint}"),
            "not valid base64",
        ),
        (
            format!("AccountName={ACCOUNT};AccountKey=;BlobEndpoint={endpoint}"),
            "base64",
        ),
        ("Foo=bar;Baz=qux".to_owned(), "neither"),
        (
            "UseDevelopmentStorage=perhaps".to_owned(),
            "`true` or `false`",
        ),
        (
            "DefaultEndpointsProtocol=gopher;AccountName=a".to_owned(),
            "https",
        ),
        (
            format!("BlobEndpoint={endpoint};SharedAccessSignature=sv=1&sp=r"),
            "sig=",
        ),
    ];
    for (cs, needle) in &connection_strings {
        let out = crate::support::Cmd::new()
            .env("AZURE_STORAGE_CONNECTION_STRING", cs)
            .args(["acquire", "env"])
            .run();
        expect(&out, 2, needle, cs);
    }
}

#[test]
fn a_wrong_key_is_exit_1_and_says_the_key_is_wrong() {
    // Valid base64, wrong bytes: Azurite answers 403.
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={wrong};BlobEndpoint={};",
        azurite().blob_endpoint()
    );
    for args in [vec!["check", "env"], vec!["acquire", "env"], vec!["status"]] {
        let out = crate::support::Cmd::new()
            .env("AZURE_STORAGE_CONNECTION_STRING", &cs)
            .args(&args)
            .run();
        expect(&out, 1, "account key is wrong", &format!("{args:?}"));
        assert!(!out.all().contains(wrong), "{}", out.all());
    }
}

/// Lock blobs no client of ours would write. Each is held by an unknown (or the written) holder:
/// `check` and `acquire` say so with exit 3, `release` refuses, and the blob is untouched.
#[test]
fn hostile_lock_blobs_are_held_and_left_alone() {
    let deep = format!("{{\"a\":{}", "[".repeat(100_000));
    let huge = vec![b'x'; 10 * 1024 * 1024];
    let blobs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("binary", vec![0, 159, 146, 150, 255, 254, 0, 1]),
        ("huge", huge),
        ("deep", deep.into_bytes()),
        ("types", br#"{"pipeline":["x"],"build_id":{},"ttl_seconds":"soon"}"#.to_vec()),
        ("negative", br#"{"pipeline":"github","build_id":"1","ttl_seconds":-5}"#.to_vec()),
        (
            "future",
            br#"{"schema":1,"pipeline":"github","build_id":"9","token":"t","acquired_at":"9999-12-31T23:59:59Z","ttl_seconds":1800}"#.to_vec(),
        ),
        (
            "ancient",
            br#"{"schema":1,"pipeline":"github","build_id":"9","token":"t","acquired_at":"1970-01-01T00:00:00Z","ttl_seconds":1800}"#.to_vec(),
        ),
        (
            "maxttl",
            br#"{"schema":1,"pipeline":"github","build_id":"9","token":"t","ttl_seconds":18446744073709551615}"#.to_vec(),
        ),
        ("seedish", b"github|not a time|".to_vec()),
    ];
    for b in backends() {
        for (name, data) in &blobs {
            let env = format!("hostile-{name}");
            b.put_raw(&format!("deployment-lock-{env}"), data);
            let before = locks(&b);
            for args in [
                vec!["check", env.as_str()],
                vec!["acquire", env.as_str()],
                vec!["release", env.as_str()],
                vec!["check", env.as_str(), "--output", "json"],
            ] {
                let out = b.cmd().env("DEPLOY_LOCK_BUILD_ID", "1").args(&args).run();
                no_panic(&out, &format!("{}: {name} {args:?}", b.name()));
                assert_eq!(
                    out.code,
                    3,
                    "{}: {name} {args:?}\n{}{}",
                    b.name(),
                    out.stdout,
                    out.stderr
                );
            }
            let status = b.cmd().args(["status"]).run();
            no_panic(&status, name);
            assert_eq!(
                status.code,
                0,
                "{}: status with {name}: {}",
                b.name(),
                status.stderr
            );
            assert!(before == locks(&b), "{}: {name} was changed", b.name());
        }
    }
}

/// The lock blobs of the store (the audit log may record refused attempts: that is its job).
fn locks(b: &crate::support::Backend) -> std::collections::BTreeMap<String, Vec<u8>> {
    b.snapshot()
        .into_iter()
        .filter(|(k, _)| k.starts_with("deployment-lock-"))
        .collect()
}

/// A way to authenticate: its name, its environment, and the secret values it carries.
type Credentials<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a str>);

fn assert_no_canary(out: &Out, canaries: &[&str], what: &str) {
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        if line.starts_with("::add-mask::") || line.starts_with("##vso[task.setsecret]") {
            continue;
        }
        for canary in canaries {
            assert!(!line.contains(canary), "{what}: secret in output: {line}");
        }
    }
}

/// Every command, with `--debug`, in every platform mode, with canary credentials of every kind:
/// no canary appears in the output except inside the masking commands themselves.
#[test]
fn secrets_never_reach_the_output() {
    let az = azurite();
    let endpoint = az.blob_endpoint();
    let container = az.unique_container("secrets");
    // Valid base64 (so it is sent and refused by Azurite, not rejected while parsing).
    let canary_key = "Q0FOQVJZa2V5Q0FOQVJZa2V5Q0FOQVJZa2V5Q0FOQVJZa2V5";
    let canary_sig = "CANARYSIGNATURE0123456789abcdef%3D";
    let canary_token = "eyJDQU5BUllUT0tFTiI6MX0.eyJjYW5hcnkiOnRydWV9.CANARYTOKENSIG";
    let key_cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={canary_key};BlobEndpoint={endpoint};"
    );
    let dev_cs = az.connection_string();
    let sas_url = format!(
        "{endpoint}/{container}?sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01&sig={canary_sig}"
    );
    let credentials: Vec<Credentials<'_>> = vec![
        (
            "canary key",
            vec![("AZURE_STORAGE_CONNECTION_STRING", key_cs.clone())],
            vec![canary_key, &key_cs],
        ),
        (
            "dev key",
            vec![("AZURE_STORAGE_CONNECTION_STRING", dev_cs.clone())],
            vec![KEY, &dev_cs],
        ),
        (
            "account + key",
            vec![
                ("DEPLOY_LOCK_STORE", format!("{endpoint}/{container}")),
                ("AZURE_STORAGE_KEY", canary_key.to_owned()),
            ],
            vec![canary_key],
        ),
        (
            "sas url",
            vec![("DEPLOY_LOCK_STORE", sas_url.clone())],
            vec![canary_sig, "CANARYSIGNATURE"],
        ),
        (
            "sas token",
            vec![
                ("DEPLOY_LOCK_STORE", format!("{endpoint}/{container}")),
                (
                    "AZURE_STORAGE_SAS_TOKEN",
                    format!("sv=2025-01-05&sp=racwdl&sig={canary_sig}"),
                ),
            ],
            vec![canary_sig, "CANARYSIGNATURE"],
        ),
        (
            "bearer token",
            vec![
                ("DEPLOY_LOCK_STORE", format!("{endpoint}/{container}")),
                ("AZURE_STORAGE_TOKEN", canary_token.to_owned()),
            ],
            vec![canary_token, "CANARYTOKENSIG"],
        ),
    ];
    let modes: [(&str, &[(&str, &str)]); 3] = [
        ("local", &[]),
        (
            "github",
            &[("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ID", "1")],
        ),
        ("azdo", &[("TF_BUILD", "True"), ("BUILD_BUILDID", "1")]),
    ];
    let commands: [&[&str]; 7] = [
        &["check", "env"],
        &["acquire", "env"],
        &["release", "env"],
        &["wait", "env", "0.01"],
        &["force-break", "env", "--reason", "test"],
        &["status"],
        &["run", "env", "--", "true"],
    ];
    for (cred, env, canaries) in &credentials {
        for (mode, mode_env) in &modes {
            for args in commands {
                let mut cmd = crate::support::Cmd::new()
                    .env("DEPLOY_LOCK_CONTAINER", &container)
                    .env("DEPLOY_LOCK_DEBUG", "1");
                for (k, v) in env {
                    cmd = cmd.env(k, v);
                }
                for (k, v) in *mode_env {
                    cmd = cmd.env(k, v);
                }
                let out = cmd.args(args).run();
                let what = format!("{cred} / {mode} / {args:?}");
                no_panic(&out, &what);
                assert_no_canary(&out, canaries, &what);
            }
        }
    }
}

/// Text that a CI runner or agent would read as a command if it were printed raw: the legacy
/// `##[` form anywhere, `::` after leading whitespace (spaces, a tab, a no-break space, an
/// ideographic space), `##vso[` in any case, and multi-line values with such lines.
const INJECTIONS: &[&str] = &[
    "##[set-output name=x;]1",
    "  ::add-mask::x",
    "\t::warning::x",
    "\u{a0}\u{3000}::error::x",
    "##VSO[task.setvariable variable=X]1",
    "a ##v\u{17f}o[task.setvariable variable=X]1",
    "ok\n##[set-output name=x;]1\n  ::add-mask::x\n\t::warning::x\n##vso[task.complete result=Failed]",
    "#\u{200b}#[set-output name=x;]1 \u{feff}::add-mask::x",
];

/// A lock record as another client could write it, with `value` in every field it shows.
fn hostile_record(value: &str) -> Vec<u8> {
    serde_json::json!({
        "schema": 1,
        "environment": "target",
        "pipeline": "github",
        "build_id": value,
        "job": value,
        "attempt": value,
        "token": "0123456789abcdef0123456789abcdef",
        "acquired_at": value,
        "ttl_seconds": 1800,
        "run_url": value,
        "repository": value,
        "ref": value,
        "commit": value,
        "actor": value,
        "reason": value,
        "host": value,
    })
    .to_string()
    .into_bytes()
}

/// Runs the binary in `ci` mode with `$GITHUB_OUTPUT` and the job summary in `dir`, and checks
/// that nothing in its output or in those files could become a command.
fn run_in_ci(b: &crate::support::Backend, ci: Ci, dir: &TempDir, args: &[&str]) -> Out {
    run_in_ci_with(b, ci, dir, &[], args)
}

fn run_in_ci_with(
    b: &crate::support::Backend,
    ci: Ci,
    dir: &TempDir,
    vars: &[(&str, &str)],
    args: &[&str],
) -> Out {
    let output = dir.join("output");
    let summary = dir.join("summary");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&summary);
    let (var, value) = ci.env();
    let mut cmd = b.cmd();
    for (k, v) in vars {
        cmd = cmd.env(k, v);
    }
    let out = cmd
        .env(var, value)
        .env("DEPLOY_LOCK_BUILD_ID", "2")
        .env("DEPLOY_LOCK_DEBUG", "1")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(args)
        .run();
    let what = format!("{}: {args:?}", b.name());
    no_panic(&out, &what);
    let files: Vec<String> = [output, summary]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect();
    assert_no_injection(ci, &out, &files, &what);
    out
}

/// The JSON document among the platform's command lines on stdout.
#[track_caller]
fn json_line(out: &Out) -> serde_json::Value {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON on stdout:\n{}\n{}", out.stdout, out.stderr));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Holder fields, reasons and audit events carrying command text are printed neutralised by
/// every command that shows them, in text and JSON, on both platforms; JSON keeps the values.
#[test]
fn holder_fields_never_become_commands() {
    for b in backends() {
        let dir = TempDir::new("injection");
        for (i, value) in INJECTIONS.iter().enumerate() {
            let env = format!("inject-{i}");
            let key = format!("deployment-lock-{env}");
            for ci in Ci::ALL {
                b.put_raw(&key, &hostile_record(value));
                // The acquirer's own fields come from the platform's variables.
                let (var, flag) = ci.env();
                let own = format!("own-{i}");
                let taken = b
                    .cmd()
                    .env(var, flag)
                    .env("GITHUB_RUN_ID", "7")
                    .env("BUILD_BUILDID", "7")
                    .env("GITHUB_ACTOR", value)
                    .env("GITHUB_REPOSITORY", value)
                    .env("GITHUB_REF", value)
                    .env("BUILD_REQUESTEDFOR", value)
                    .env("BUILD_REPOSITORY_NAME", value)
                    .env("BUILD_SOURCEBRANCH", value)
                    .args(["acquire", &own, "--reason", value])
                    .run();
                assert_eq!(taken.code, 0, "{}: {}", b.name(), taken.all());
                assert_no_injection(ci, &taken, &[], &format!("{}: acquire {own}", b.name()));
                let text: Vec<(Vec<&str>, i32)> = vec![
                    (vec!["check", &env], 3),
                    (vec!["acquire", &env], 3),
                    (vec!["acquire", &env, "--wait", "0.001"], 4),
                    (vec!["wait", &env, "0.001"], 4),
                    (vec!["release", &env], 3),
                    (vec!["history", &env], 0),
                    (vec!["history", &own], 0),
                    (vec!["status"], 0),
                    (vec!["check", &own], 3),
                ];
                let json = text.iter().map(|(args, code)| {
                    let mut args = args.clone();
                    args.extend(["--output", "json"]);
                    (args, *code)
                });
                let commands: Vec<_> = text.clone().into_iter().chain(json).collect();
                for (args, code) in &commands {
                    let out = run_in_ci(&b, ci, &dir, args);
                    assert_eq!(out.code, *code, "{}: {args:?}\n{}", b.name(), out.all());
                    if args.contains(&"json") {
                        let json = json_line(&out);
                        if args[0] == "check" && args[1] == env {
                            assert_eq!(json["holder"]["reason"], *value, "{args:?}");
                        }
                    }
                }
                for format in ["text", "json"] {
                    let out = run_in_ci(
                        &b,
                        ci,
                        &dir,
                        &["force-break", &env, "--reason", value, "--output", format],
                    );
                    assert_eq!(out.code, 0, "{}: force-break\n{}", b.name(), out.all());
                    b.put_raw(&key, &hostile_record(value));
                }
                // The action's and the task's step: blocked (annotation, summary, task.complete),
                // then acquired by a run whose own fields are hostile (summary, outputs).
                let step = [
                    ("INPUT_ENVIRONMENT", env.as_str()),
                    ("INPUT_HEARTBEAT", "false"),
                    ("INPUT_REASON", value),
                ];
                let blocked = run_in_ci_with(&b, ci, &dir, &step, &["step", "main"]);
                assert_ne!(blocked.all().len(), 0);
                let mine = format!("step-{i}");
                let acquire = [
                    ("INPUT_ENVIRONMENT", mine.as_str()),
                    ("INPUT_HEARTBEAT", "false"),
                    ("GITHUB_ACTOR", value),
                    ("BUILD_REQUESTEDFOR", value),
                ];
                let taken = run_in_ci_with(&b, ci, &dir, &acquire, &["step", "main"]);
                assert_eq!(taken.code, 0, "{}", taken.all());
                b.cmd()
                    .env("DEPLOY_LOCK_BUILD_ID", "9")
                    .args(["force-break", &mine, "--reason", "test"])
                    .run()
                    .code(0);
                let out = run_in_ci(&b, ci, &dir, &["history", &env, "--output", "json"]);
                assert!(
                    json_line(&out).to_string().contains("force-break"),
                    "{}",
                    out.stdout
                );
                b.cmd()
                    .env("DEPLOY_LOCK_BUILD_ID", "9")
                    .args(["force-break", &own, "--reason", "test"])
                    .run()
                    .code(0);
            }
        }
    }
}

/// Blob names that are not environment names, as anyone who can write to the container can
/// create them.
const ODD_NAMES: &[&str] = &[
    "::add-mask::x",
    "##vso[task.setvariable variable=EVIL]1",
    "##[set-output name=x;]1",
    "  ::warning::x",
    "\u{3000}::error::x",
];

/// Runs `status` in both platform modes, text and JSON: exit 0, the valid lock listed, every
/// odd name shown escaped and marked, and nothing that could become a command.
fn status_lists_odd_names(b: &crate::support::Backend, odd: usize, others: usize) {
    let dir = TempDir::new("status");
    for ci in Ci::ALL {
        let text = run_in_ci(b, ci, &dir, &["status"]);
        assert_eq!(text.code, 0, "{}: {}", b.name(), text.all());
        assert!(text.stdout.contains("fine"), "{}", text.stdout);
        assert_eq!(
            text.stdout.matches("(invalid name)").count(),
            odd,
            "{}: {}",
            b.name(),
            text.stdout
        );
        let json = run_in_ci(b, ci, &dir, &["status", "--output", "json"]);
        assert_eq!(json.code, 0, "{}: {}", b.name(), json.all());
        let rows = json_line(&json);
        let rows = rows["environments"].as_array().expect("a list");
        assert_eq!(rows.len(), odd + others + 1, "{}", json.stdout);
        let marked = rows.iter().filter(|r| r["invalid_name"] == true).count();
        assert_eq!(marked, odd, "{}", json.stdout);
        assert!(
            rows.iter()
                .any(|r| r["environment"] == "fine" && r["state"] == "held")
        );
    }
}

/// Reproduced: on Azure, blobs named `deployment-lock-::add-mask::x` and
/// `deployment-lock-##vso[…]` became commands when `status` listed them.
#[test]
fn status_shows_odd_blob_names_escaped_and_marked() {
    let b = crate::support::Backend::azurite("oddnames");
    b.cmd().args(["acquire", "fine"]).run().code(0);
    for name in ODD_NAMES {
        b.put_raw(&format!("deployment-lock-{name}"), &hostile_record(name));
    }
    status_lists_odd_names(&b, ODD_NAMES.len(), 0);
}

/// Reproduced: one odd file in the local store made `status` fail. Odd names, a directory and
/// an unreadable file are each reported in their row; the rest is still listed.
#[test]
fn odd_files_in_the_local_store_never_stop_status() {
    let b = crate::support::Backend::file();
    b.cmd().args(["acquire", "fine"]).run().code(0);
    let crate::support::Backend::File(root) = &b else {
        unreachable!()
    };
    let container = root.join("deployment-locks");
    let mut odd = 0;
    for name in ODD_NAMES.iter().copied().chain(["a\nb\n::add-mask::x"]) {
        std::fs::write(
            container.join(format!("deployment-lock-{name}")),
            hostile_record(name),
        )
        .expect("write an odd file");
        odd += 1;
    }
    std::fs::create_dir(container.join("deployment-lock-a-directory")).expect("mkdir");
    let unreadable = container.join("deployment-lock-unreadable");
    std::fs::write(&unreadable, b"{}").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000))
            .expect("chmod");
    }
    status_lists_odd_names(&b, odd, 2);
    let out = b.cmd().args(["status"]).run();
    out.code(0).contains("a-directory");
    let json = b.cmd().args(["status", "--output", "json"]).run();
    let rows = json.json();
    let directory = rows["environments"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["environment"] == "a-directory"))
        .expect("the directory has a row");
    assert_eq!(directory["state"], "unreadable", "{directory}");
}

/// Queue tickets named by someone else: a poll too large for any integer, and a declared poll of
/// a week. Waiters neither abort nor wait on them for long, and leave no ticket of their own.
#[test]
fn hostile_queue_tickets_neither_crash_nor_hold_up_waiters() {
    let hostile = [
        "deployment-queue-q.0000000000000.0123456789abcdef0123456789abcdef.99999999999999999",
        "deployment-queue-q.0000000000000.0123456789abcdef0123456789abcdef.604800000",
        "deployment-queue-q.0000000000001.fedcba9876543210fedcba9876543210.99999999999999999999999",
    ];
    for b in backends() {
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "A")
            .args(["acquire", "q"])
            .run()
            .code(0);
        for key in hostile {
            b.put_raw(key, b"waiting");
        }
        let waiter = b
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "B")
            .args(["acquire", "q", "--wait", "0.05"])
            .spawn();
        std::thread::sleep(std::time::Duration::from_millis(500));
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "A")
            .args(["release", "q"])
            .run()
            .code(0);
        let out = Out::from(waiter.wait_with_output().expect("waiter"));
        expect(&out, 0, "Acquired", &format!("{}: the waiter", b.name()));
        let tickets: Vec<String> = b
            .snapshot()
            .into_keys()
            .filter(|k| k.starts_with("deployment-queue-"))
            .collect();
        assert!(
            tickets.iter().all(|k| hostile.contains(&k.as_str())),
            "{}: the waiter left its ticket: {tickets:?}",
            b.name()
        );
        b.cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "B")
            .args(["release", "q"])
            .run()
            .code(0);
    }
}

/// A reason longer than 1,000 characters is refused before anything is written; one of 1,000
/// characters, with line breaks and characters outside ASCII, is recorded whole, read back as
/// ours, and released.
#[test]
fn reasons_are_bounded_and_whatever_is_accepted_reads_back() {
    let too_long = "x".repeat(1001);
    let longest: String = "déploiement ✓ 🚀\nline two\t\"quoted\" %20 ##vso[x] ::y::\r\n"
        .chars()
        .cycle()
        .take(1000)
        .collect();
    for b in backends() {
        let before = b.snapshot();
        for args in [
            vec!["acquire", "r", "--reason", &too_long],
            vec!["run", "r", "--reason", &too_long, "--", "true"],
            vec!["force-break", "r", "--reason", &too_long],
        ] {
            let out = b.cmd().args(&args).run();
            expect(
                &out,
                2,
                "at most 1000",
                &format!("{}: {}", b.name(), args[0]),
            );
        }
        assert_eq!(before, b.snapshot(), "{}: a refused reason wrote", b.name());

        let as_one = || b.cmd().env("DEPLOY_LOCK_BUILD_ID", "long-reason");
        as_one()
            .args(["acquire", "r", "--reason", &longest])
            .run()
            .code(0);
        let check = as_one().args(["check", "r", "--output", "json"]).run();
        let v = check.code(0).json();
        assert_eq!(v["state"], "ours", "{}", b.name());
        assert_eq!(v["holder"]["reason"], longest.as_str(), "{}", b.name());
        expect(
            &as_one().args(["release", "r"]).run(),
            0,
            "Released",
            &format!("{}: release", b.name()),
        );
        let out = as_one()
            .args(["run", "r", "--reason", &longest, "--", "true"])
            .run();
        expect(&out, 0, "Released", &format!("{}: run", b.name()));
    }
}

/// CI variables of any length (a runner sets them, the user cannot shorten them) are recorded
/// cut short with a warning; the lock still works and is still ours.
#[test]
fn huge_ci_variables_do_not_break_the_lock() {
    let huge = "ü\n".repeat(35_000);
    for b in backends() {
        let github = || {
            let mut cmd = b
                .cmd()
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_RUN_ID", format!("7{}", "1".repeat(70_000)))
                .env("GITHUB_SERVER_URL", "https://github.example");
            for name in [
                "GITHUB_REPOSITORY",
                "GITHUB_REF",
                "GITHUB_SHA",
                "GITHUB_ACTOR",
                "GITHUB_JOB",
                "GITHUB_RUN_ATTEMPT",
                "RUNNER_NAME",
            ] {
                cmd = cmd.env(name, &huge);
            }
            cmd
        };
        let out = github().args(["acquire", "ci"]).run();
        expect(
            &out,
            0,
            "characters long",
            &format!("{}: acquire", b.name()),
        );
        let check = github().args(["check", "ci"]).run();
        expect(
            &check,
            0,
            "ci is locked by us",
            &format!("{}: check", b.name()),
        );
        expect(
            &github().args(["release", "ci"]).run(),
            0,
            "Released",
            &format!("{}: release", b.name()),
        );
        let lock = b.locks();
        assert!(lock.is_empty(), "{}: {:?}", b.name(), lock.keys());
    }
}
