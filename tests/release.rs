//! What makes a release installable: one version in every manifest, a crate that packages only
//! the program, `cargo binstall` metadata naming the release workflow's assets, and CI logs that
//! mask each secret once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Cmd, TempDir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

fn json(relative: &str) -> serde_json::Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The release assets, as dist/manifest.json names them (the shim and the workflow agree on it).
fn asset_files() -> Vec<String> {
    json("dist/manifest.json")["assets"]
        .as_object()
        .expect("assets")
        .values()
        .map(|a| a["file"].as_str().expect("file").to_owned())
        .collect()
}

#[test]
fn one_version_everywhere_with_major_one() {
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        version.starts_with("1."),
        "the major is 1 (v1, DeployLock@1), not {version}"
    );

    let lock = read("Cargo.lock");
    let entry = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"deploy-lock\"\n"))
        .expect("deploy-lock in Cargo.lock");
    assert!(
        entry.contains(&format!("\nversion = \"{version}\"\n")),
        "Cargo.lock is not at {version}:{entry}"
    );

    let manifest = json("dist/manifest.json");
    assert_eq!(manifest["version"], version, "dist/manifest.json");

    let task = json("azdo-task/DeployLockV1/task.json");
    let v = &task["version"];
    assert_eq!(
        format!("{}.{}.{}", v["Major"], v["Minor"], v["Patch"]),
        version,
        "azdo-task/DeployLockV1/task.json"
    );
    assert_eq!(json("azdo-task/vss-extension.json")["version"], version);

    Cmd::new()
        .args(["--version"])
        .run()
        .code(0)
        .contains(&format!("deploy-lock {version}"));
}

#[test]
fn binstall_urls_name_the_release_assets() {
    let cargo_toml = read("Cargo.toml");
    let workflow = read(".github/workflows/release.yml");
    let assets = asset_files();
    let urls: Vec<&str> = cargo_toml
        .lines()
        .filter_map(|l| l.strip_prefix("pkg-url = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    for target in [
        "x86_64-unknown-linux-gnu",
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-gnu",
        "aarch64-unknown-linux-musl",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
        "x86_64-pc-windows-msvc",
    ] {
        assert!(
            cargo_toml.contains(&format!("[package.metadata.binstall.overrides.{target}]")),
            "no binstall override for {target}"
        );
    }
    assert_eq!(urls.len(), 7, "{urls:?}");
    for url in urls {
        let asset = url
            .strip_prefix("{ repo }/releases/download/v{ version }/")
            .unwrap_or_else(|| panic!("{url} is not a release download"));
        assert!(
            assets.iter().any(|a| a == asset),
            "{asset} is not a release asset ({assets:?})"
        );
    }
    // The workflow builds each asset under the name the manifest, the shim and binstall use.
    for asset in &assets {
        let key = asset
            .trim_start_matches("deploy-lock-")
            .trim_end_matches(".exe");
        assert!(
            workflow.contains(&format!("key: {key},")),
            "release.yml builds no {key}"
        );
    }
    assert!(workflow.contains("\"assets/deploy-lock-$KEY$EXE\""));
}

#[test]
fn the_crate_packages_the_program_only() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "package",
            "--list",
            "--allow-dirty",
            "--locked",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo package --list");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo package --list failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<&str> = stdout.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/main.rs",
        "src/lib.rs",
    ] {
        assert!(
            files.contains(&needed),
            "the crate lacks {needed}: {files:?}"
        );
    }
    for file in &files {
        let program = file.starts_with("src/")
            || [
                "Cargo.toml",
                "Cargo.toml.orig",
                "Cargo.lock",
                "README.md",
                ".cargo_vcs_info.json",
            ]
            .contains(file);
        assert!(program, "the crate would ship {file}");
    }
}

/// Runs `deploy-lock step main` (mode check) as the platform's runner would, with one secret
/// reaching the binary three ways, and returns its stdout.
fn step_main(dir: &Path, platform: &[(&str, String)]) -> String {
    let key =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    );
    let mut cmd = Cmd::new()
        .args(["step", "main"])
        .env("AZURE_STORAGE_KEY", key)
        .env("AZURE_STORAGE_CONNECTION_STRING", &conn);
    for (name, value) in platform {
        cmd = cmd.env(name, value);
    }
    for (name, value) in [
        ("ENVIRONMENT", "sandbox".to_owned()),
        ("MODE", "check".to_owned()),
        ("HEARTBEAT", "false".to_owned()),
        ("STORE", format!("file:{}", dir.join("store").display())),
    ] {
        cmd = cmd.env(&format!("INPUT_{name}"), value);
    }
    let connection_input = if platform.iter().any(|(n, _)| *n == "TF_BUILD") {
        "INPUT_CONNECTIONSTRING"
    } else {
        "INPUT_CONNECTION-STRING"
    };
    let out = cmd.env(connection_input, &conn).run();
    out.code(0);
    out.stdout
}

#[test]
fn each_secret_is_masked_once() {
    let dir = TempDir::new("masks");
    for name in ["out", "state", "env", "path", "summary"] {
        std::fs::write(dir.join(name), "").expect("write");
    }
    let file = |name: &str| dir.join(name).display().to_string();
    let github = step_main(
        dir.path(),
        &[
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_RUN_ID", "17".into()),
            ("GITHUB_RUN_ATTEMPT", "1".into()),
            ("GITHUB_JOB", "deploy".into()),
            ("GITHUB_REPOSITORY", "octo/app".into()),
            ("GITHUB_SERVER_URL", "https://github.com".into()),
            ("RUNNER_TEMP", dir.path().display().to_string()),
            ("GITHUB_OUTPUT", file("out")),
            ("GITHUB_STATE", file("state")),
            ("GITHUB_ENV", file("env")),
            ("GITHUB_PATH", file("path")),
            ("GITHUB_STEP_SUMMARY", file("summary")),
        ],
    );
    let azure = step_main(
        dir.path(),
        &[
            ("TF_BUILD", "True".into()),
            ("BUILD_BUILDID", "17".into()),
            (
                "SYSTEM_JOBID",
                "a9b8c7d6-0000-4000-8000-000000000001".into(),
            ),
            ("SYSTEM_JOBATTEMPT", "1".into()),
            ("AGENT_TEMPDIRECTORY", dir.path().display().to_string()),
            (
                "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI",
                "https://dev.azure.com/contoso/".into(),
            ),
            ("SYSTEM_TEAMPROJECT", "Platform".into()),
        ],
    );
    for (stdout, command) in [(github, "::add-mask::"), (azure, "##vso[task.setsecret]")] {
        let masks: Vec<&str> = stdout.lines().filter(|l| l.starts_with(command)).collect();
        assert!(
            masks.len() >= 2,
            "the key and the connection string are masked:\n{stdout}"
        );
        let mut unique = masks.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            masks.len(),
            "a secret is masked twice:\n{stdout}"
        );
    }
}
