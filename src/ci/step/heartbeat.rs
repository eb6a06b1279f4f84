//! The detached heartbeat of the action's and task's lock: the main step starts it, it renews
//! the lock until the post step stops it (or the job's process is gone, or a signal comes), and
//! the post step waits for it to confirm before it releases.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::inputs::StepInputs;
use crate::ci::{self, Platform};
use crate::cli::GlobalArgs;
use crate::clock::{Clock, SYSTEM};
use crate::commands::versions;
use crate::commands::{event_sink, open_store};
use crate::config::{self, Config, Pipeline};
use crate::exit::{Failure, Result};
use crate::human::human_std;
use crate::lock::heartbeat;
use crate::log;

/// The runner's or agent's temp folder, which the job owns.
pub fn job_temp_dir() -> PathBuf {
    ci::var("RUNNER_TEMP")
        .or_else(|| ci::var("AGENT_TEMPDIRECTORY"))
        .map_or_else(std::env::temp_dir, PathBuf::from)
}

/// Starts `deploy-lock step heartbeat` detached from the step, so it outlives it and renews the
/// lock until the post step stops it. It gets no stdio: a step whose grandchild holds its output
/// pipe open would not finish.
///
/// `environments` and `tokens` list a lock set's members comma-separated in the same order (one
/// of each for a single lock).
pub fn start(
    environments: &str,
    pipeline: &Pipeline,
    tokens: &str,
    versions: &Path,
    cfg: &Config,
) -> Result<PathBuf> {
    let first = tokens.split(',').next().unwrap_or(tokens);
    let file = job_temp_dir().join(format!("deploy-lock-heartbeat-{first}"));
    let exe = std::env::current_exe().map_err(|e| {
        anyhow::anyhow!("cannot find our own executable to start the heartbeat: {e}")
    })?;
    let mut command = Command::new(exe);
    command
        .args(["step", "heartbeat"])
        .env("DEPLOY_LOCK_HEARTBEAT_FILE", &file)
        .env("DEPLOY_LOCK_HEARTBEAT_ENVIRONMENT", environments)
        .env("DEPLOY_LOCK_HEARTBEAT_PIPELINE", pipeline)
        .env("DEPLOY_LOCK_HEARTBEAT_TOKEN", tokens)
        .env("DEPLOY_LOCK_HEARTBEAT_VERSIONS", versions)
        .env(
            "DEPLOY_LOCK_HEARTBEAT_TTL_SECONDS",
            cfg.ttl.as_secs_f64().to_string(),
        )
        .env(
            "DEPLOY_LOCK_HEARTBEAT_JOB_PID",
            job_process().map(|p| p.to_string()).unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut command);
    let child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the heartbeat: {e}"))?;
    // The post step reads whom to wait for from here.
    if let Err(e) = fs::write(&file, child.id().to_string()) {
        log::warn(&format!(
            "cannot record the heartbeat's pid in {}: {e}",
            file.display()
        ));
    }
    log::note(&format!(
        "deploy-lock: heartbeat (pid {}) renews the lock every {} until the post step or the end \
         of the job",
        child.id(),
        human_std(cfg.ttl / 3)
    ));
    Ok(file)
}

/// The process whose life the detached heartbeat follows: the runner's or agent's worker, which
/// the shim names (`DEPLOY_LOCK_JOB_PID`, the shim's own parent), else whoever started this step.
/// None when there is nothing to follow: pid 0 is outside a container's view (a step run with
/// `docker exec`), pid 1 is init, which every orphan has for a parent.
fn job_process() -> Option<u32> {
    let pid = match ci::var("DEPLOY_LOCK_JOB_PID") {
        Some(v) => v.trim().parse::<u32>().ok(),
        #[cfg(unix)]
        None => Some(std::os::unix::process::parent_id()),
        // Finding one's parent on Windows needs unsafe code: there only the shim names it.
        #[cfg(not(unix))]
        None => None,
    };
    pid.filter(|p| *p > 1)
}

/// Whether a process is still running (a zombie, exited but not yet reaped, is not).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => !zombie(pid),
        Err(_) => false,
    }
}

/// Linux shows a zombie's state in /proc; elsewhere a zombie counts as running until reaped.
#[cfg(unix)]
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Without unsafe code there is no process API to call here, so `tasklist` answers; a process is
/// taken as running whenever it cannot answer.
#[cfg(windows)]
fn alive(pid: u32) -> bool {
    use std::os::windows::process::CommandExt;
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    let out = Command::new("tasklist")
        .args(["/FI", &format!("PID eq {pid}"), "/NH", "/FO", "CSV"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .creation_flags(CREATE_NO_WINDOW)
        .output();
    match out {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).contains(&format!("\"{pid}\""))
        }
        _ => true,
    }
}

#[cfg(not(any(unix, windows)))]
fn alive(_pid: u32) -> bool {
    true
}

/// Looks at a process at most every `every`: cheap enough to ask from a 50 ms stop check.
struct Watch {
    pid: Option<u32>,
    every: Duration,
    last: std::cell::Cell<Option<Instant>>,
    gone: std::cell::Cell<bool>,
}

impl Watch {
    fn new(pid: Option<u32>) -> Self {
        // `tasklist` starts a process; kill(pid, 0) is a system call.
        let every = if cfg!(windows) {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        Self {
            pid,
            every,
            last: std::cell::Cell::new(None),
            gone: std::cell::Cell::new(false),
        }
    }

    fn gone(&self) -> bool {
        let Some(pid) = self.pid else {
            return false;
        };
        if !self.gone.get() && self.last.get().is_none_or(|t| t.elapsed() >= self.every) {
            self.last.set(Some(Instant::now()));
            self.gone.set(!alive(pid));
        }
        self.gone.get()
    }
}

/// Own process group: the step's Ctrl-C/SIGINT must not reach the heartbeat.
#[cfg(unix)]
fn detach(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

#[cfg(windows)]
fn detach(command: &mut Command) {
    use std::os::windows::process::CommandExt;
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
}

#[cfg(not(any(unix, windows)))]
fn detach(_command: &mut Command) {}

fn stop_file(file: &Path) -> PathBuf {
    file.with_extension("stop")
}

fn done_file(file: &Path) -> PathBuf {
    file.with_extension("done")
}

/// Longest the post step waits for the heartbeat to confirm that it stopped: it looks for the
/// stop request every 50 ms, but may be inside a renewal that the store is slow to answer.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Asks the heartbeat to stop and waits, at most `STOP_WAIT`, for it to confirm, so that the
/// release that follows does not race a renewal (one would only cost the release another round:
/// a renewal is conditional on the version it read), and its files are removed only once it no
/// longer uses them.
pub fn stop(file: &Path) {
    if fs::write(stop_file(file), b"stop").is_err() {
        log::warn("could not ask the heartbeat to stop; it ends when the lock is released");
        return;
    }
    let pid = fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    let until = Instant::now() + STOP_WAIT;
    while !done_file(file).exists() && pid.is_none_or(alive) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    match fs::read_to_string(done_file(file)) {
        Ok(text) => log::note(&format!("deploy-lock: heartbeat {}", text.trim())),
        Err(_) if pid.is_some_and(|p| !alive(p)) => {
            log::note("deploy-lock: the heartbeat had already ended");
        }
        Err(_) => {
            // Still running: it needs the stop request, and ends at the latest when it finds the
            // lock released or the job's process gone.
            log::warn(&format!(
                "the heartbeat did not confirm within {} that it stopped; releasing anyway",
                human_std(STOP_WAIT)
            ));
            return;
        }
    }
    for f in [stop_file(file), done_file(file), file.to_path_buf()] {
        let _ = fs::remove_file(f);
    }
}

/// The detached heartbeat: renews until the post step's stop file appears, the lock is lost,
/// the job's process (the runner's or agent's worker) is gone, or a signal arrives.
pub fn heartbeat_step(inputs: &StepInputs, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let need = |name: &str| {
        ci::var(name).ok_or_else(|| Failure::usage(format!("`step heartbeat` needs {name}")))
    };
    let file = PathBuf::from(need("DEPLOY_LOCK_HEARTBEAT_FILE")?);
    let environments = need("DEPLOY_LOCK_HEARTBEAT_ENVIRONMENT")?;
    let environments = environments
        .split(',')
        .map(config::validate_environment)
        .collect::<Result<Vec<_>>>()?;
    let pipeline = config::validate_pipeline(&need("DEPLOY_LOCK_HEARTBEAT_PIPELINE")?)?;
    let tokens = need("DEPLOY_LOCK_HEARTBEAT_TOKEN")?;
    let tokens: Vec<&str> = tokens.split(',').collect();
    if tokens.len() != environments.len() {
        return Err(Failure::usage(
            "`step heartbeat` needs one token per environment, comma-separated in the same order",
        ));
    }
    let mut cfg = inputs.config(global, platform)?;
    if let Some(ttl) = ci::var("DEPLOY_LOCK_HEARTBEAT_TTL_SECONDS") {
        cfg.ttl = config::parse_duration(&ttl, 1.0, "DEPLOY_LOCK_HEARTBEAT_TTL_SECONDS")?;
    }
    let job = ci::var("DEPLOY_LOCK_HEARTBEAT_JOB_PID")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|p| *p > 1);
    let watch = Watch::new(job);
    let holders: Vec<_> = tokens.iter().map(|t| cfg.holder(&pipeline, t)).collect();
    // Where the main step left the versions of its writes, and where ours go for the post step:
    // one per environment, renewed in place.
    let version_file = ci::var("DEPLOY_LOCK_HEARTBEAT_VERSIONS").map(PathBuf::from);
    let found = version_file
        .as_deref()
        .map(versions::read)
        .unwrap_or_default();
    let tracked: Vec<Option<(versions::Version, heartbeat::Known)>> = environments
        .iter()
        .zip(&tokens)
        .map(|(environment, token)| {
            versions::find(&found, environment, token)
                .map(|v| (v.clone(), Mutex::new((v.record.clone(), v.etag.clone()))))
        })
        .collect();
    let kept: Vec<heartbeat::Kept<'_>> = environments
        .iter()
        .zip(&holders)
        .zip(&tracked)
        .map(|((environment, me), tracked)| heartbeat::Kept {
            environment,
            me,
            known: tracked.as_ref().map(|(_, known)| known),
        })
        .collect();
    // After every renewal, the versions it left, for the post step's release.
    let keep_versions = || {
        let Some(file) = &version_file else { return };
        let now: Vec<versions::Version> = tracked
            .iter()
            .flatten()
            .filter_map(|(version, known)| {
                let (record, etag) = known.lock().ok()?.clone();
                Some(versions::Version {
                    record,
                    etag,
                    ..version.clone()
                })
            })
            .collect();
        if let Err(e) = versions::write(file, &now) {
            log::debug(&format!("cannot keep the lock's version: {e}"));
        }
    };
    let store = open_store(&cfg)?;
    let started = Instant::now();
    let mut renewals = 0u64;
    let mut failures = 0u64;
    // SIGTERM (the runner's or agent's clean-up of the job's processes) ends it too.
    let stop = || SYSTEM.cancelled() || stop_file(&file).exists() || watch.gone();
    let end = heartbeat::keep_alive(
        &*store,
        cfg.ttl,
        &kept,
        cfg.capacity,
        &*event_sink(&cfg, &*store),
        &stop,
        &mut |beat| match beat {
            heartbeat::Beat::Renewed => {
                renewals += 1;
                keep_versions();
            }
            heartbeat::Beat::Failed(_) => failures += 1,
        },
    );
    let how = match end {
        heartbeat::End::Stopped if SYSTEM.cancelled() => "stopped by a signal".to_owned(),
        heartbeat::End::Stopped if watch.gone() => format!(
            "stopped: the job's process (pid {}) is gone",
            job.unwrap_or_default()
        ),
        heartbeat::End::Stopped => "stopped by the post step".to_owned(),
        heartbeat::End::Lost(..) => "ended: the lock was lost".to_owned(),
    };
    let summary = format!(
        "{how} after {} ({renewals} renewals, {failures} failed)",
        human_std(started.elapsed())
    );
    let _ = fs::write(done_file(&file), summary);
    Ok(0)
}
