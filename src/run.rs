//! `deploy-lock run ENV -- COMMAND`: hold the lock exactly as long as a command runs.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::app;
use crate::cli::{OnLost, RunArgs};
use crate::config::{self, Config};
use crate::exit::{ExitCode, Failure, Result};
use crate::lock::heartbeat::{self, Beat, End};
use crate::lock::protocol::Identity;
use crate::lock::{Locker, Released};
use crate::log;

/// How long a command asked to stop gets before it is killed.
const GRACE: Duration = Duration::from_secs(10);

pub fn run(cfg: &Config, args: &RunArgs) -> Result<i32> {
    let (pipeline, env) = app::target(&args.target.words, cfg)?;
    let wait = match args.wait.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(app::default_wait()?),
        Some(v) => Some(config::parse_minutes(v, "--wait")?),
    };
    let Some(program) = args.command.first() else {
        return Err(Failure::usage("give the command to run after `--`"));
    };
    let mut cfg = cfg.with_heartbeat();
    let store = app::open_store(&cfg)?;
    let reason = args.reason.clone().unwrap_or_default();
    let request = app::Want {
        pipeline: &pipeline,
        env: &env,
        wait,
        reason: &reason,
        releases_itself: true,
    };
    let outcome = app::acquire(&cfg, &*store, &request)?;
    let Some(record) = outcome.acquired else {
        return Ok(outcome.code);
    };
    // Nested in the acquisition that took the lock (the same CI job, or its token): that holder
    // releases it, and our renewals keep its ttl, never a shorter one.
    let nested = outcome.reentrant;
    if nested {
        cfg.ttl = cfg.ttl.max(Duration::from_secs(record.ttl_seconds));
    }
    let me = Identity {
        token: Some(record.token.clone()),
        ..cfg.identity(&pipeline)
    };
    let mut command = Command::new(program);
    command
        .args(&args.command[1..])
        .env("DEPLOY_LOCK_ENVIRONMENT", &env)
        .env("DEPLOY_LOCK_TOKEN", &record.token)
        .env(
            "DEPLOY_LOCK_FENCE",
            record.fence.map(|f| f.to_string()).unwrap_or_default(),
        );
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let what = if nested {
                "the lock stays held by the outer holder"
            } else {
                release(&cfg, &*store, &env, &me);
                "the lock was released"
            };
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!("cannot run `{program}`: {e}; {what}"),
            ));
        }
    };
    let stop = AtomicBool::new(false);
    let lost = AtomicBool::new(false);
    let renewals = AtomicUsize::new(0);
    let status = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Its own connection: the store handle is not shared across threads.
            let Ok(hb_store) = app::open_store(&cfg) else {
                return;
            };
            // Failures are warned about by the heartbeat itself, once per outage.
            let mut report = |beat: &Beat| {
                if let Beat::Renewed = beat {
                    renewals.fetch_add(1, Ordering::Relaxed);
                }
            };
            let end = heartbeat::keep_alive(
                &*hb_store,
                cfg.ttl,
                &env,
                &me,
                &*crate::lock::audit_sink(&*hb_store, cfg.audit),
                &|| stop.load(Ordering::SeqCst),
                &mut report,
            );
            if let End::Lost(now) = end {
                lost.store(true, Ordering::SeqCst);
                let who = now.map_or_else(
                    || "nobody we could see".into(),
                    |l| l.holder.describe(),
                );
                eprintln!(
                    "{}",
                    cfg.platform.error_line(
                        "Deployment lock lost",
                        &format!(
                            "the lock on {env} was lost while the command runs (now held by {who}); {}",
                            match args.on_lost {
                                OnLost::Warn => "the command keeps running (--on-lost warn)",
                                OnLost::Kill => "stopping the command (--on-lost kill)",
                            }
                        )
                    )
                );
            }
        });
        let status = supervise(child, args.on_lost, &lost);
        stop.store(true, Ordering::SeqCst);
        status
    });
    let status = status.map_err(|e| anyhow::anyhow!("waiting for `{program}` failed: {e}"))?;
    log::debug(&format!(
        "renewed the lock {} time(s)",
        renewals.load(Ordering::Relaxed)
    ));
    if lost.load(Ordering::SeqCst) {
        return Ok(ExitCode::Lost.code());
    }
    if nested {
        cfg.platform.print_line(&format!(
            "The deployment lock on {env} stays held: it is the outer holder's ({}), which \
             releases it.",
            crate::lock::record::Holder::Current(record.clone()).describe()
        ));
    } else {
        release(&cfg, &*store, &env, &me);
    }
    Ok(exit_code(status))
}

fn release(cfg: &Config, store: &dyn crate::store::Store, env: &str, me: &Identity) {
    let locker = Locker::new(store, cfg.ttl, cfg.poll);
    match locker.release(env, me) {
        Ok(Released::Released(lock)) => {
            if cfg.audit {
                app::audit_release(store, env, &lock, locker.store_now());
            }
            cfg.platform.print_line(&format!(
                "Released the deployment lock on {env} (held {}).",
                crate::human::human(lock.age)
            ));
        }
        Ok(Released::Absent) => log::warn(&format!("the lock on {env} was already gone")),
        Ok(Released::Refused(lock)) => log::warn(&format!(
            "the lock on {env} is held by {} now; left alone",
            lock.holder.describe()
        )),
        Err(e) => log::warn(&format!(
            "could not release the lock on {env} ({e:#}); it expires after its ttl"
        )),
    }
}

/// Waits for the command, forwarding signals and stopping it when the lock is lost and
/// `--on-lost kill` asked for that.
fn supervise(mut child: Child, on_lost: OnLost, lost: &AtomicBool) -> std::io::Result<ExitStatus> {
    let mut forwarded = 0u8;
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if crate::clock::Clock::cancelled(&crate::clock::SYSTEM) && forwarded == 0 {
            forwarded = 1;
            signal(&mut child, false);
            kill_at = Some(Instant::now() + GRACE);
        }
        if on_lost == OnLost::Kill && lost.load(Ordering::SeqCst) && kill_at.is_none() {
            signal(&mut child, true);
            kill_at = Some(Instant::now() + GRACE);
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            let _ = child.kill();
            kill_at = None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Asks the command to stop: SIGINT for a forwarded interrupt, SIGTERM when we stop it.
#[cfg(unix)]
fn signal(child: &mut Child, terminate: bool) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let sig = if terminate {
        Signal::SIGTERM
    } else {
        Signal::SIGINT
    };
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Windows has no signal to forward: a console's Ctrl-C already reaches the command, and
/// stopping it means terminating it.
#[cfg(not(unix))]
fn signal(child: &mut Child, terminate: bool) {
    if terminate {
        let _ = child.kill();
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    ExitCode::Interrupted.code()
}
