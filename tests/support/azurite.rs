//! A real Azurite blob server for the tests: started once per test process on a free loopback
//! port with its own temporary data folder, and stopped when the test process ends.
//!
//! Rust runs no destructors for statics, and a panic = abort or a killed test binary runs none at
//! all, so Azurite runs under a tiny Node guard that holds the read end of a pipe as its stdin: when
//! the test process is gone for any reason the pipe closes, and the guard stops Azurite and removes
//! its data folder.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key.
pub(crate) const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const GUARD: &str = r"
const { spawn } = require('child_process');
const fs = require('fs');
const [location, exe, ...args] = process.argv.slice(1);
const child = spawn(exe, args, { stdio: ['ignore', 'inherit', 'inherit'] });
let stopping = false;
function cleanup(code) {
  try { fs.rmSync(location, { recursive: true, force: true }); } catch (e) {}
  process.exit(code);
}
function stop() {
  if (stopping) return;
  stopping = true;
  child.kill('SIGTERM');
  setTimeout(() => { child.kill('SIGKILL'); cleanup(0); }, 3000).unref();
}
child.on('exit', (code) => cleanup(stopping ? 0 : (code === null ? 1 : code)));
child.on('error', (e) => { console.error('azurite guard: ' + e.message); cleanup(1); });
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.resume();
";

/// The running emulator.
pub(crate) struct Azurite {
    port: u16,
    /// Held for the life of the process: its stdin pipe is what keeps Azurite alive.
    _guard: Mutex<Child>,
    next: AtomicU32,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("DEPLOY_LOCK_AZURITE") {
        return PathBuf::from(path);
    }
    repo_root().join(".tools/node/node_modules/.bin/azurite-blob")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn start(exe: &Path, extra: &[&std::ffi::OsStr]) -> Result<Azurite, String> {
    let port = free_port();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let location = std::env::temp_dir().join(format!(
        "deploy-lock-azurite-{}-{stamp}",
        std::process::id()
    ));
    std::fs::create_dir_all(&location)
        .map_err(|e| format!("create {}: {e}", location.display()))?;
    let log_path = location.join("azurite.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("clone log: {e}"))?;
    let mut child = Command::new("node")
        .arg("-e")
        .arg(GUARD)
        .arg(&location)
        .arg(exe)
        .args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .arg("--location")
        .arg(&location)
        .args(["--disableTelemetry", "--silent"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot run node for Azurite: {e}"))?;

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        let exited = child.try_wait().map_err(|e| e.to_string())?;
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut text = String::new();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
            return Err(format!(
                "Azurite did not start on port {port} ({}):\n{text}",
                if exited.is_some() {
                    "it exited"
                } else {
                    "no answer in 30 s"
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Azurite {
        port,
        _guard: Mutex::new(child),
        next: AtomicU32::new(0),
    })
}

/// The emulator for this test process, started on first use.
pub(crate) fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| launch(&[]))
}

/// A second emulator serving HTTPS with `cert` and `key` (PEM), for the CA file path.
pub(crate) fn azurite_https(cert: &Path, key: &Path) -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| {
        launch(&[
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    })
}

/// A third emulator serving HTTPS that accepts Entra ID bearer tokens (`--oauth basic`), for the
/// sign-in tests.
pub(crate) fn azurite_oauth(cert: &Path, key: &Path) -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| {
        launch(&[
            "--oauth".as_ref(),
            "basic".as_ref(),
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    })
}

fn launch(extra: &[&std::ffi::OsStr]) -> Azurite {
    let exe = executable();
    assert!(
        exe.exists(),
        "Azurite is not installed at {}: run `bash tests/setup-azurite.sh` (tests/run.sh does), \
         or set DEPLOY_LOCK_AZURITE to an azurite-blob executable",
        exe.display()
    );
    // A port taken between choosing and binding is the only expected failure: try again.
    let mut last = String::new();
    for _ in 0..3 {
        match start(&exe, extra) {
            Ok(a) => return a,
            Err(e) => last = e,
        }
    }
    panic!("{last}");
}

impl Azurite {
    #[must_use]
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`
    #[must_use]
    pub(crate) fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// An account-key connection string for this emulator.
    #[must_use]
    pub(crate) fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.blob_endpoint()
        )
    }

    /// A container name no other test of this process uses (not created: the store creates it).
    #[must_use]
    pub(crate) fn unique_container(&self, hint: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while clean.contains("--") {
            clean = clean.replace("--", "-");
        }
        clean.truncate(40);
        let clean = clean.trim_matches('-');
        format!("t{n:04}-{clean}x")
    }
}
