//! Test harness: temp dirs, the real binary as a process with a clean environment, and the stores
//! every end-to-end test runs against.

use std::collections::BTreeMap;

use deploy_lock::store::Store as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "deploy-lock-test-{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_deploy-lock"))
}

/// Where a test's locks live: a fresh local directory or a fresh Azurite container.
pub enum Backend {
    File(TempDir),
    Azurite {
        connection_string: String,
        container: String,
    },
}

impl Backend {
    pub fn file() -> Self {
        Self::File(TempDir::new("store"))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Azurite { .. } => "azurite",
        }
    }

    /// The environment that points the binary at this store.
    pub fn store_env(&self) -> Vec<(String, String)> {
        match self {
            Self::File(dir) => vec![(
                "DEPLOY_LOCK_STORE".into(),
                format!("file:{}", dir.path().display()),
            )],
            Self::Azurite {
                connection_string,
                container,
            } => vec![
                (
                    "AZURE_STORAGE_CONNECTION_STRING".into(),
                    connection_string.clone(),
                ),
                ("DEPLOY_LOCK_CONTAINER".into(), container.clone()),
            ],
        }
    }

    /// The binary, with a clean environment pointed at this store.
    pub fn cmd(&self) -> Cmd {
        let mut cmd = Cmd::new();
        for (k, v) in self.store_env() {
            cmd = cmd.env(&k, &v);
        }
        cmd
    }

    /// Writes a raw lock blob, as another client (or the seed's script) would.
    pub fn put_raw(&self, key: &str, data: &[u8]) {
        match self {
            Self::File(dir) => {
                let container = dir.join("deployment-locks");
                std::fs::create_dir_all(&container).expect("container dir");
                std::fs::write(container.join(key), data).expect("write raw blob");
            }
            Self::Azurite { .. } => {
                let store = self.azure_store();
                let current = store.get(key).expect("read blob");
                match current.blob {
                    Some(b) => store.replace(key, data, &BTreeMap::new(), &b.etag),
                    None => store.create(key, data, &BTreeMap::new()),
                }
                .expect("write raw blob");
            }
        }
    }

    /// Every key and value in the store's default container (to prove nothing was written).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        match self {
            Self::File(dir) => {
                let mut out = BTreeMap::new();
                let container = dir.join("deployment-locks");
                if let Ok(entries) = std::fs::read_dir(container) {
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !name.starts_with('.') {
                            out.insert(name, std::fs::read(e.path()).unwrap_or_default());
                        }
                    }
                }
                out
            }
            Self::Azurite { .. } => {
                let store = self.azure_store();
                let listing = store.list("").expect("list container");
                listing
                    .entries
                    .into_iter()
                    .map(|e| {
                        let blob = store.get(&e.key).expect("read blob").blob;
                        (e.key, blob.map(|b| b.data).unwrap_or_default())
                    })
                    .collect()
            }
        }
    }

    /// Only the lock blobs (audit logs grow with every attempt, by design).
    pub fn locks(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = self.snapshot();
        all.retain(|k, _| k.starts_with("deployment-lock-"));
        all
    }

    /// The test's container through the library's own Azure store (for setup and inspection).
    pub fn azure_store(&self) -> deploy_lock::store::azure::AzureStore {
        let Self::Azurite {
            connection_string,
            container,
        } = self
        else {
            panic!("not an Azurite backend");
        };
        let settings = deploy_lock::store::azure::AzureSettings {
            connection_string: Some(deploy_lock::config::secrets::Secret::new(
                connection_string.clone(),
            )),
            container: container.clone(),
            ..deploy_lock::store::azure::AzureSettings::default()
        };
        deploy_lock::store::azure::open(&settings).expect("open the Azurite store")
    }

    pub fn azurite(hint: &str) -> Self {
        let emulator = azurite::azurite();
        Self::Azurite {
            connection_string: emulator.connection_string(),
            container: emulator.unique_container(hint),
        }
    }
}

/// The stores every end-to-end test runs against.
pub fn backends() -> Vec<Backend> {
    vec![Backend::file(), Backend::azurite("e2e")]
}

pub mod azurite;
pub(crate) mod proxy;
pub mod receiver;

/// The real binary as a process. Its environment starts empty, so CI variables of the machine
/// running the tests never change what the binary does.
pub struct Cmd {
    command: Command,
}

impl Cmd {
    pub fn new() -> Self {
        Self::of(bin())
    }

    /// Another program with the same clean environment (e.g. a shell that plays a runner).
    pub fn of(program: impl AsRef<std::ffi::OsStr>) -> Self {
        let mut command = Command::new(program);
        command.env_clear();
        for keep in [
            "PATH",
            "SYSTEMROOT",
            "TMPDIR",
            "TEMP",
            "TMP",
            "LD_PRELOAD",
            "FAKETIME",
        ] {
            if let Ok(v) = std::env::var(keep) {
                command.env(keep, v);
            }
        }
        command
            .env("USER", "tester")
            .env("HOSTNAME", "testhost")
            .env("HOME", std::env::temp_dir())
            .env("DEPLOY_LOCK_POLL_SECONDS", "0.05")
            .stdin(Stdio::null());
        Self { command }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn run(mut self) -> Out {
        let output = self.command.output().expect("run deploy-lock");
        Out::from(output)
    }

    pub fn spawn(mut self) -> Child {
        self.command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn deploy-lock")
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn contains(&self, needle: &str) -> &Self {
        assert!(
            self.all().contains(needle),
            "expected {needle:?} in output\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A CI platform as the test plays it: the environment that makes the binary detect it, and the
/// rule by which its runner or agent reads a line of a step's output (stdout and stderr alike) as a
/// command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ci {
    GitHub,
    AzureDevOps,
}

impl Ci {
    pub const ALL: [Self; 2] = [Self::GitHub, Self::AzureDevOps];

    pub fn env(self) -> (&'static str, &'static str) {
        match self {
            Self::GitHub => ("GITHUB_ACTIONS", "true"),
            Self::AzureDevOps => ("TF_BUILD", "True"),
        }
    }

    /// GitHub's runner: a line that starts with `::` once leading whitespace is trimmed, or that
    /// contains the legacy `##[` anywhere. The Azure DevOps agent: `##vso[` anywhere, in any case
    /// (.NET upper-cases to compare, so `ſ` counts as `s`), or `##[`.
    pub fn is_command(self, line: &str) -> bool {
        match self {
            Self::GitHub => line.trim_start().starts_with("::") || line.contains("##["),
            Self::AzureDevOps => line.to_uppercase().contains("##VSO[") || line.contains("##["),
        }
    }

    /// Whether `line` is one of the commands deploy-lock writes on purpose, well formed, with
    /// nothing in its data that the platform could read as a command again.
    pub fn is_own_command(self, line: &str) -> bool {
        match self {
            Self::GitHub => {
                let Some(rest) = line.strip_prefix("::") else {
                    return false;
                };
                let Some((head, data)) = rest.split_once("::") else {
                    return false;
                };
                let name = head.split(' ').next().unwrap_or("");
                [
                    "add-mask", "error", "warning", "notice", "group", "endgroup",
                ]
                .contains(&name)
                    && !data.contains("##[")
                    && !head.contains("##[")
            }
            Self::AzureDevOps => {
                let Some(rest) = line.strip_prefix("##vso[") else {
                    return false;
                };
                let Some((head, data)) = rest.split_once(']') else {
                    return false;
                };
                let name = head.split(' ').next().unwrap_or("");
                [
                    "task.setvariable",
                    "task.settaskvariable",
                    "task.setsecret",
                    "task.logissue",
                    "task.complete",
                    "task.setprogress",
                    "task.uploadsummary",
                ]
                .contains(&name)
                    && !self.is_command(head)
                    && !self.is_command(data)
            }
        }
    }
}

/// No line of the output (or of the extra texts, e.g. `$GITHUB_OUTPUT`) could be read by the
/// platform as a command, apart from deploy-lock's own well-formed ones.
#[track_caller]
pub fn assert_no_injection(ci: Ci, out: &Out, extra: &[String], what: &str) {
    let texts = [("stdout", &out.stdout), ("stderr", &out.stderr)]
        .into_iter()
        .chain(extra.iter().map(|e| ("file", e)));
    for (stream, text) in texts {
        for line in text.lines() {
            assert!(
                !ci.is_command(line) || ci.is_own_command(line),
                "{what} ({ci:?}): {stream} line is a command: {line:?}\n--- stdout\n{}\n--- stderr\n{}",
                out.stdout,
                out.stderr
            );
        }
    }
}

/// Polls until `ready` holds; a test that waits longer is stuck.
#[track_caller]
pub fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "stuck waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A step of job `deploy` of GitHub run `run` (attempt 1) on `runner-1`, with the job's files
/// (outputs, state, temp folder) in `dir`.
pub fn github_job(cmd: Cmd, run: &str, dir: &Path) -> Cmd {
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", run)
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", "deploy")
        .env("RUNNER_NAME", "runner-1")
        .env("RUNNER_TEMP", dir)
        .env("GITHUB_OUTPUT", dir.join("github-output"))
        .env("GITHUB_STATE", dir.join("github-state"))
}
