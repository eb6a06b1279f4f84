//! `deploy-lock step main|post`: the whole behaviour of the GitHub Action and the Azure DevOps
//! task. The JavaScript shim only finds and runs the binary; inputs, outputs, state, masking and
//! results are handled here, where they are tested.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::app::{self, INTERRUPTED};
use crate::ci::{self, Platform, azdo};
use crate::cli::{GlobalArgs, OutputFormat, StepPhase};
use crate::config::{self, AzureInputs, Config};
use crate::error::{ExitCode, Failure, Result};
use crate::heartbeat;
use crate::lock::{Locker, Released};
use crate::log;
use crate::protocol::Identity;
use crate::render::human_std;
use crate::secret::Secret;
use crate::store::azure::AuthInputs;

/// An input as the runner or agent passes it: GitHub keeps the hyphens of `storage-account`
/// (`INPUT_STORAGE-ACCOUNT`); Azure DevOps upper-cases the camelCase name (`INPUT_STORAGEACCOUNT`).
#[must_use]
pub fn input(name: &str) -> Option<String> {
    let github = format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase());
    let azdo = format!("INPUT_{}", ci::camel_case(name).to_ascii_uppercase());
    ci::var(&github).or_else(|| ci::var(&azdo))
}

fn bool_input(name: &str, default: bool) -> Result<bool> {
    match input(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "1" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "off") => Ok(false),
        Some(v) => Err(Failure::usage(format!(
            "input `{name}` must be true or false, not `{}`",
            ci::escape_controls(&v)
        ))),
    }
}

/// Secrets among the inputs, masked before anything else is printed.
fn mask_inputs(platform: Platform) {
    for name in [
        "account-key",
        "sas-token",
        "connection-string",
        "github-token",
    ] {
        if let Some(v) = input(name) {
            for part in config::secret_parts(&v) {
                platform.mask(&part);
            }
        }
    }
    if let Some((_, query)) = input("store").as_deref().and_then(|s| s.split_once('?')) {
        for part in config::secret_parts(query) {
            platform.mask(&part);
        }
    }
}

/// The config the inputs describe; options not given as inputs keep their environment values.
fn config_from_inputs(global: &GlobalArgs, platform: Platform) -> Result<Config> {
    let mut args = global.clone();
    let set = |slot: &mut Option<String>, name: &str| {
        if let Some(v) = input(name) {
            *slot = Some(v);
        }
    };
    set(&mut args.store, "store");
    set(&mut args.container, "container");
    set(&mut args.ttl_minutes, "lock-timeout-minutes");
    set(&mut args.poll_seconds, "poll-seconds");
    set(&mut args.job, "job");
    set(&mut args.auth, "auth");
    args.debug |= bool_input("debug", false)?;
    args.output = Some(OutputFormat::Text);
    let inputs = AzureInputs {
        connection_string: input("connection-string").map(Secret::new),
        account: input("storage-account"),
        account_key: input("account-key").map(Secret::new),
        sas_token: input("sas-token").map(Secret::new),
        auth: AuthInputs {
            method: None,
            client_id: input("client-id"),
            tenant_id: input("tenant-id"),
            // The task's `connectedService:AzureRM` input: the service connection's id.
            service_connection: input("service-connection"),
        },
    };
    let cfg = Config::build(&args, platform, &inputs)?;
    app::mask_store_secrets(&cfg);
    Ok(cfg)
}

/// Runs the action's or task's step and returns the process exit code.
pub fn run(phase: StepPhase, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    mask_inputs(platform);
    if bool_input("debug", false).unwrap_or(false) {
        log::init(platform, true);
    }
    let result = match phase {
        StepPhase::Main => main_step(global, platform),
        StepPhase::Post => post_step(global, platform),
        StepPhase::Heartbeat => return heartbeat_step(global, platform),
    };
    Ok(finish(platform, phase, result))
}

/// Maps the outcome to the platform's convention. GitHub fails a step by its exit code; Azure
/// DevOps reads a non-zero exit as an infrastructure failure, so there the result is reported with
/// `task.complete` and the process exits 0.
fn finish(platform: Platform, phase: StepPhase, result: Result<i32>) -> i32 {
    let (code, message) = match result {
        Ok(code) => (code, String::new()),
        Err(failure) => {
            let text = failure.to_string();
            if phase == StepPhase::Post {
                log::warn(&format!("release in the post step failed: {text}"));
                (0, String::new())
            } else {
                eprintln!("{}", platform.error_line("deploy-lock", &text));
                (failure.code.code(), text)
            }
        }
    };
    if platform != Platform::AzureDevOps {
        return code;
    }
    let (result, msg) = match code {
        0 => ("Succeeded", "deploy-lock finished".to_owned()),
        c if c == ExitCode::Held.code() => (
            "Failed",
            "the deployment lock is held by another run".into(),
        ),
        c if c == ExitCode::TimedOut.code() => {
            ("Failed", "timed out waiting for the deployment lock".into())
        }
        c if c == INTERRUPTED => (
            "Failed",
            "cancelled while waiting for the deployment lock".into(),
        ),
        _ if !message.is_empty() => ("Failed", message),
        _ => ("Failed", format!("deploy-lock exited with {code}")),
    };
    println!("{}", azdo::complete(result, &msg));
    0
}

fn main_step(global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let environment = input("environment").ok_or_else(|| {
        Failure::usage("the `environment` input is required, e.g. `environment: sandbox`")
    })?;
    let environment = config::validate_environment(&environment)?;
    let mut cfg = config_from_inputs(global, platform)?;
    let heartbeat = bool_input("heartbeat", true)?;
    if heartbeat && !cfg.ttl_given {
        cfg.ttl = Duration::from_secs_f64(config::HEARTBEAT_TTL_MINUTES * 60.0);
    }
    let pipeline = match input("pipeline") {
        Some(p) => config::validate_pipeline(&p)?,
        None => platform.pipeline().to_owned(),
    };
    let mode = input("mode").unwrap_or_else(|| "acquire".into());
    let wait = match input("wait-minutes") {
        None => None,
        Some(v) => {
            let d = config::parse_minutes(&v, "input wait-minutes")?;
            (!d.is_zero()).then_some(d)
        }
    };
    let reason = input("reason").unwrap_or_default();
    match mode.to_ascii_lowercase().as_str() {
        "acquire" => {
            let store = app::open_store(&cfg)?;
            let request = app::Want {
                pipeline: &pipeline,
                env: &environment,
                wait,
                reason: &reason,
                releases_itself: true,
            };
            let outcome = app::acquire(&cfg, &*store, &request)?;
            // Nested in an acquisition of this job: its holder renews and releases it.
            if let Some(record) = outcome.acquired.as_ref().filter(|_| !outcome.reentrant) {
                let mut state = vec![
                    ("environment", environment.clone()),
                    ("pipeline", pipeline.clone()),
                    ("token", record.token.clone()),
                ];
                if heartbeat {
                    let file = start_heartbeat(&environment, &pipeline, &record.token, &cfg)?;
                    state.push(("heartbeat", file.display().to_string()));
                }
                platform.save_state(&state)?;
            }
            summary(&cfg, &environment, &outcome, wait)?;
            Ok(outcome.code)
        }
        "check" => app::check(&cfg, &*app::open_store(&cfg)?, &pipeline, &environment),
        "wait" => {
            let timeout = match wait {
                Some(d) => d,
                None => app::default_wait()?,
            };
            app::wait(&cfg, &*app::open_store(&cfg)?, &environment, timeout)
        }
        "release" => {
            let store = app::open_store(&cfg)?;
            app::release(&cfg, &*store, &pipeline, &environment)
        }
        "force-break" => {
            if reason.trim().is_empty() {
                return Err(Failure::usage(
                    "mode force-break needs the `reason` input: say why the lock is broken",
                ));
            }
            app::force_break(&cfg, &*app::open_store(&cfg)?, &environment, reason.trim())
        }
        other => Err(Failure::usage(format!(
            "input `mode` must be acquire, check, wait, release or force-break, not `{}`",
            ci::escape_controls(other)
        ))),
    }
}

fn summary(
    cfg: &Config,
    environment: &str,
    outcome: &app::AcquireOutcome,
    wait: Option<Duration>,
) -> Result<()> {
    // The environment name is validated; the holder comes from the environment and the store.
    let mut md = format!("### Deployment lock: `{environment}`\n\n");
    match &outcome.acquired {
        Some(record) => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | acquired |\n| Holder | {} |\n| Lock ttl | {} |\n",
            cfg.platform
                .markdown_cell(&crate::record::Holder::Current(record.clone()).describe()),
            human_std(cfg.ttl)
        )),
        None => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | not acquired (exit {}) |\n| Waited | {} |\n\nSee the error annotation for who holds the lock and a link to their run.\n",
            outcome.code,
            wait.map_or_else(|| "no (wait-minutes: 0)".into(), human_std)
        )),
    }
    cfg.platform.summary(&md)?;
    Ok(())
}

fn post_step(global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let (Some(environment), Some(token)) = (
        platform.load_state("environment"),
        platform.load_state("token"),
    ) else {
        log::note("deploy-lock: this step took no lock, so there is nothing to release");
        return Ok(0);
    };
    // The heartbeat ends with the job either way; a lock kept for a later job then lives for its ttl.
    if let Some(file) = platform.load_state("heartbeat") {
        stop_heartbeat(Path::new(&file));
    }
    if !bool_input("release", true)? {
        log::note(&format!(
            "deploy-lock: release is false, so the lock on {environment} stays held; release it \
             later with `deploy-lock release {environment} --token {token}`"
        ));
        return Ok(0);
    }
    let environment = config::validate_environment(&environment)?;
    let cfg = config_from_inputs(global, platform)?;
    let pipeline = platform
        .load_state("pipeline")
        .unwrap_or_else(|| platform.pipeline().to_owned());
    let me = Identity {
        token: Some(token),
        ..cfg.identity(&pipeline)
    };
    let store = app::open_store(&cfg)?;
    let locker = Locker::new(&*store, cfg.ttl, cfg.poll);
    match locker.release(&environment, &me)? {
        Released::Released(lock) => {
            if cfg.audit {
                app::audit_release(&*store, &environment, &lock, locker.store_now());
            }
            platform.print_line(&format!(
                "Released the deployment lock on {environment} (held {}).",
                crate::render::human(lock.age)
            ));
        }
        Released::Absent => log::warn(&format!(
            "the lock on {environment} was already gone (released by a later step, broken, or \
             expired)"
        )),
        Released::Refused(lock) => log::warn(&format!(
            "the lock on {environment} is now held by {}, not by this job: left alone",
            lock.holder.describe()
        )),
    }
    Ok(0)
}

/// The runner's or agent's temp folder, which the job owns.
fn job_temp_dir() -> PathBuf {
    ci::var("RUNNER_TEMP")
        .or_else(|| ci::var("AGENT_TEMPDIRECTORY"))
        .map_or_else(std::env::temp_dir, PathBuf::from)
}

/// Starts `deploy-lock step heartbeat` detached from the step, so it outlives it and renews the
/// lock until the post step stops it. It gets no stdio: a step whose grandchild holds its output
/// pipe open would not finish.
fn start_heartbeat(
    environment: &str,
    pipeline: &str,
    token: &str,
    cfg: &Config,
) -> Result<PathBuf> {
    let file = job_temp_dir().join(format!("deploy-lock-heartbeat-{token}"));
    let exe = std::env::current_exe().map_err(|e| {
        anyhow::anyhow!("cannot find our own executable to start the heartbeat: {e}")
    })?;
    let mut command = Command::new(exe);
    command
        .args(["step", "heartbeat"])
        .env("DEPLOY_LOCK_HEARTBEAT_FILE", &file)
        .env("DEPLOY_LOCK_HEARTBEAT_ENVIRONMENT", environment)
        .env("DEPLOY_LOCK_HEARTBEAT_PIPELINE", pipeline)
        .env("DEPLOY_LOCK_HEARTBEAT_TOKEN", token)
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
fn stop_heartbeat(file: &Path) {
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
fn heartbeat_step(global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let need = |name: &str| {
        ci::var(name).ok_or_else(|| Failure::usage(format!("`step heartbeat` needs {name}")))
    };
    let file = PathBuf::from(need("DEPLOY_LOCK_HEARTBEAT_FILE")?);
    let environment = config::validate_environment(&need("DEPLOY_LOCK_HEARTBEAT_ENVIRONMENT")?)?;
    let pipeline = config::validate_pipeline(&need("DEPLOY_LOCK_HEARTBEAT_PIPELINE")?)?;
    let token = need("DEPLOY_LOCK_HEARTBEAT_TOKEN")?;
    let mut cfg = config_from_inputs(global, platform)?;
    if let Some(ttl) = ci::var("DEPLOY_LOCK_HEARTBEAT_TTL_SECONDS") {
        cfg.ttl = config::parse_duration(&ttl, 1.0, "DEPLOY_LOCK_HEARTBEAT_TTL_SECONDS")?;
    }
    let job = ci::var("DEPLOY_LOCK_HEARTBEAT_JOB_PID")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|p| *p > 1);
    let watch = Watch::new(job);
    let me = Identity {
        token: Some(token),
        ..cfg.identity(&pipeline)
    };
    let store = app::open_store(&cfg)?;
    let started = Instant::now();
    let mut renewals = 0u64;
    let mut failures = 0u64;
    // SIGTERM (the runner's or agent's clean-up of the job's processes) ends it too.
    let stop = || crate::lock::cancelled() || stop_file(&file).exists() || watch.gone();
    let end = heartbeat::keep_alive(
        &*store,
        cfg.ttl,
        &environment,
        &me,
        cfg.audit,
        &stop,
        &mut |beat| match beat {
            heartbeat::Beat::Renewed => renewals += 1,
            heartbeat::Beat::Failed(_) => failures += 1,
        },
    );
    let how = match end {
        heartbeat::End::Stopped if crate::lock::cancelled() => "stopped by a signal".to_owned(),
        heartbeat::End::Stopped if watch.gone() => format!(
            "stopped: the job's process (pid {}) is gone",
            job.unwrap_or_default()
        ),
        heartbeat::End::Stopped => "stopped by the post step".to_owned(),
        heartbeat::End::Lost(_) => "ended: the lock was lost".to_owned(),
    };
    let summary = format!(
        "{how} after {} ({renewals} renewals, {failures} failed)",
        human_std(started.elapsed())
    );
    let _ = fs::write(done_file(&file), summary);
    Ok(0)
}
