//! `--output json`: every command prints exactly one JSON object on stdout, of the shape
//! docs/output.schema.json gives it, checked with check-jsonschema (tests/setup-tools.sh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Backend, Cmd, Out, TempDir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> PathBuf {
    let tool = root().join(".tools/venv/bin/check-jsonschema");
    assert!(
        tool.is_file(),
        "{} is missing: run tests/setup-tools.sh",
        tool.display()
    );
    tool
}

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", build)
        .env("DEPLOY_LOCK_OUTPUT", "json")
}

/// Stdout holds exactly one line, a JSON object; returns it.
#[track_caller]
fn one_object(out: &Out, code: i32, what: &str) -> Value {
    out.code(code);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stdout\n{}", out.all());
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(v.is_object(), "{what}: {v}");
    v
}

/// Validates every instance against the whole schema and against the shape named for it.
pub(crate) fn validate(dir: &Path, instances: &[(&str, &str, Value)]) {
    let tool = validator();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/output.schema.json")).expect("the schema"),
    )
    .expect("the schema is JSON");
    let mut by_shape: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for (i, (what, shape, v)) in instances.iter().enumerate() {
        let file = dir.join(format!("{i}-{}.json", what.replace(' ', "-")));
        std::fs::write(&file, v.to_string()).expect("write instance");
        by_shape.entry("all").or_default().push(file.clone());
        by_shape.entry(shape).or_default().push(file);
    }
    for (shape, files) in by_shape {
        let schema_file = if shape == "all" {
            root().join("docs/output.schema.json")
        } else {
            let mut one = schema.clone();
            let object = one.as_object_mut().expect("an object");
            object.remove("anyOf");
            object.insert("$ref".into(), json!(format!("#/$defs/{shape}")));
            let file = dir.join(format!("schema-{shape}.json"));
            std::fs::write(&file, one.to_string()).expect("write schema");
            file
        };
        let out = Command::new(&tool)
            .arg("--schemafile")
            .arg(&schema_file)
            .args(&files)
            .output()
            .expect("run check-jsonschema");
        assert!(
            out.status.success(),
            "shape {shape}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_command_prints_one_object_of_its_documented_shape() {
    let b = Backend::file();
    let dir = TempDir::new("output-json");
    let mut seen: Vec<(&str, &str, Value)> = Vec::new();
    let mut run = |what: &'static str, shape: &'static str, code: i32, cmd: Cmd| {
        let v = one_object(&cmd.run(), code, what);
        seen.push((what, shape, v.clone()));
        v
    };
    run(
        "check free",
        "lock",
        0,
        as_build(&b, "1").args(["check", "prod"]),
    );
    let taken = run(
        "acquire",
        "acquired",
        0,
        as_build(&b, "1").args(["acquire", "prod", "--reason", "v1"]),
    );
    assert!(taken["expires_in_seconds"].as_i64() > Some(0), "{taken}");
    let held = run(
        "check held",
        "lock",
        3,
        as_build(&b, "2").args(["check", "prod"]),
    );
    assert!(held["expires_in_seconds"].is_i64(), "{held}");
    run(
        "blocked",
        "blocked",
        3,
        as_build(&b, "2").args(["acquire", "prod"]),
    );
    run(
        "renew",
        "lock",
        0,
        as_build(&b, "1").args(["renew", "prod"]),
    );
    run(
        "refused release",
        "lock",
        3,
        as_build(&b, "2").args(["release", "prod"]),
    );
    run(
        "release",
        "lock",
        0,
        as_build(&b, "1").args(["release", "prod"]),
    );
    run(
        "wait free",
        "lock",
        0,
        as_build(&b, "1").args(["wait", "prod", "1"]),
    );
    as_build(&b, "1").args(["acquire", "prod"]).run().code(0);
    run(
        "force-break",
        "lock",
        0,
        as_build(&b, "2").args(["force-break", "prod", "--reason", "stuck"]),
    );
    run(
        "history",
        "history",
        0,
        as_build(&b, "1").args(["history", "prod"]),
    );
    run(
        "freeze",
        "freezes",
        0,
        as_build(&b, "1").args(["freeze", "prod", "--for", "1h", "--reason", "audit"]),
    );
    run("freezes", "freezes", 0, as_build(&b, "1").args(["freezes"]));
    run(
        "frozen",
        "frozen",
        3,
        as_build(&b, "1").args(["acquire", "prod"]),
    );
    // A frozen environment is in `status`, free, with its window.
    let status = run(
        "status while frozen",
        "status",
        0,
        as_build(&b, "1").args(["status"]),
    );
    let prod = status["environments"]
        .as_array()
        .and_then(|envs| envs.iter().find(|e| e["environment"] == "prod"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(prod["state"], "free", "{status}");
    assert_eq!(prod["freeze"]["reason"], "audit", "{status}");
    run(
        "unfreeze",
        "freezes",
        0,
        as_build(&b, "1").args(["unfreeze", "prod", "--reason", "done"]),
    );
    let set = run(
        "acquire set",
        "set",
        0,
        as_build(&b, "1").args(["acquire", "eu,us"]),
    );
    assert_eq!(
        set["environments"].as_array().map(Vec::len),
        Some(2),
        "{set}"
    );
    run("status", "status", 0, as_build(&b, "1").args(["status"]));
    run(
        "release set",
        "set",
        0,
        as_build(&b, "1").args(["release", "eu,us"]),
    );
    run(
        "run",
        "acquired",
        0,
        as_build(&b, "1").args(["run", "dev", "--", "true"]),
    );
    run("stats", "stats", 0, as_build(&b, "1").args(["stats"]));
    let page = dir.join("page");
    run(
        "dashboard",
        "dashboard",
        0,
        as_build(&b, "1").args(["dashboard", "--out"]).args([&page]),
    );
    // Every lock is released: nothing to ask the (unreachable) CI about.
    run(
        "reap",
        "reap",
        0,
        as_build(&b, "1")
            .env("GITHUB_TOKEN", "unused")
            .env("GITHUB_API_URL", "http://127.0.0.1:9")
            .args(["reap"]),
    );
    run(
        "unknown command",
        "error",
        2,
        as_build(&b, "1").args(["bogus"]),
    );
    run(
        "usage error by flag",
        "error",
        2,
        b.cmd().args(["acquire", "--output", "json"]),
    );
    run(
        "bad input",
        "error",
        2,
        as_build(&b, "1").args(["status", "--stuck-after", "soon"]),
    );
    run(
        "configuration error",
        "error",
        2,
        Cmd::new().env("DEPLOY_LOCK_OUTPUT", "json").args([
            "check",
            "prod",
            "--store",
            "ftp://nowhere",
        ]),
    );
    validate(dir.path(), &seen);
}

#[test]
fn run_keeps_its_own_words_off_stdout() {
    let b = Backend::file();
    let out = as_build(&b, "1")
        .args(["run", "dev", "--", "sh", "-c", "echo from-the-command"])
        .run();
    out.code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.all());
    let v: Value = serde_json::from_str(lines[0]).expect("the acquisition");
    assert_eq!(v["state"], "acquired");
    assert_eq!(lines[1], "from-the-command");
    assert!(
        out.stderr.contains("Released the deployment lock on dev"),
        "{}",
        out.all()
    );
}
