//! `run ENV -- COMMAND`: hold the lock exactly as long as a command runs.

use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::acquire;
use super::context::{Context, Progress, Target, open_store, parse_wait};
use super::outcome::{Acquisition, Handback, Outcome, Ran};
use super::release::{hand_back, hand_back_known};
use crate::cli::{OnLost, RunArgs};
use crate::clock::Clock;
use crate::config::{Config, Environment};
use crate::exit::{ExitCode, Failure, Result};
use crate::lock::heartbeat::{self, Beat, End};
use crate::lock::{Holder, audit_sink};
use crate::log;

/// How long a command asked to stop gets before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// What `run` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub acquire: acquire::Request,
    pub on_lost: OnLost,
    pub command: Vec<String>,
}

impl Request {
    pub fn parse(args: &RunArgs, cfg: &Config) -> Result<Self> {
        let target = Target::parse(&args.target.words, cfg)?;
        let wait = parse_wait(args.wait.as_deref())?;
        if args.command.is_empty() {
            return Err(Failure::usage("give the command to run after `--`"));
        }
        Ok(Self {
            acquire: acquire::Request {
                target,
                wait,
                reason: args.reason.clone().unwrap_or_default(),
                releases_itself: true,
            },
            on_lost: args.on_lost,
            command: args.command.clone(),
        })
    }
}

pub fn run(ctx: &Context<'_>, request: &Request, progress: &dyn Progress) -> Result<Outcome> {
    // The lock is kept alive by a heartbeat while the command runs: the ttl for that is decided
    // by the config.
    let mut cfg = ctx.cfg.with_heartbeat();
    let taken = {
        let ctx = Context { cfg: &cfg, ..*ctx };
        match acquire::acquire(&ctx, &request.acquire, progress)? {
            Outcome::Acquired(taken) => taken,
            other => return Ok(other),
        }
    };
    progress.acquired(&Outcome::Acquired(taken.clone()))?;
    // Nested in the acquisition that took the lock (the same CI job, or its token): that holder
    // releases it, and our renewals keep its ttl, never a shorter one.
    if taken.reentrant {
        cfg.ttl = cfg.ttl.max(Duration::from_secs(taken.record.ttl_seconds));
    }
    let ctx = Context { cfg: &cfg, ..*ctx };
    supervised(&ctx, request, progress, &taken)
}

fn supervised(
    ctx: &Context<'_>,
    request: &Request,
    progress: &dyn Progress,
    taken: &Acquisition,
) -> Result<Outcome> {
    let cfg = ctx.cfg;
    let env = &taken.env;
    let record = &taken.record;
    let me = taken.holder(ctx.cfg);
    let held_since = Instant::now();
    let program = &request.command[0];
    let mut command = Command::new(program);
    command
        .args(&request.command[1..])
        .env("DEPLOY_LOCK_ENVIRONMENT", env)
        .env("DEPLOY_LOCK_TOKEN", &record.token)
        .env(
            "DEPLOY_LOCK_FENCE",
            record.fence.map(|f| f.to_string()).unwrap_or_default(),
        );
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let what = if taken.reentrant {
                "the lock stays held by the outer holder"
            } else {
                if let Handback::Failed(e) = hand_back(ctx, env, &me) {
                    warn_unreleased(env, &e);
                }
                "the lock was released"
            };
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!("cannot run `{program}`: {e}; {what}"),
            ));
        }
    };
    // The lock's version after our latest write: the heartbeat renews from it without a read,
    // and the release after it needs none either.
    let known: heartbeat::Known = Mutex::new((record.clone(), taken.etag.clone()));
    let stop = AtomicBool::new(false);
    let lost = AtomicBool::new(false);
    let renewals = AtomicUsize::new(0);
    let status = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Its own connection: the store handle is not shared across threads.
            let Ok(hb_store) = open_store(cfg) else {
                return;
            };
            // Failures are warned about by the heartbeat itself, once per outage.
            let mut report = |beat: &Beat| {
                if let Beat::Renewed = beat {
                    renewals.fetch_add(1, Ordering::Relaxed);
                }
            };
            let end = heartbeat::keep_alive_known(
                &*hb_store,
                cfg.ttl,
                env,
                &me,
                Some(&known),
                &*audit_sink(&*hb_store, cfg.audit),
                &|| stop.load(Ordering::SeqCst),
                &mut report,
            );
            if let End::Lost(now) = end {
                lost.store(true, Ordering::SeqCst);
                let who = now.map_or_else(|| "nobody we could see".into(), |l| l.holder.describe());
                progress.lost(env, &who, request.on_lost == OnLost::Kill);
            }
        });
        let status = supervise(child, request.on_lost, &lost, ctx.clock);
        stop.store(true, Ordering::SeqCst);
        status
    });
    let status = status.map_err(|e| anyhow::anyhow!("waiting for `{program}` failed: {e}"))?;
    log::debug(&format!(
        "renewed the lock {} time(s)",
        renewals.load(Ordering::Relaxed)
    ));
    let lost = lost.load(Ordering::SeqCst);
    let (outer_holder, handback) = if lost {
        (None, None)
    } else if taken.reentrant {
        (Some(Holder::Current(record.clone()).describe()), None)
    } else {
        let handback = match known.into_inner() {
            Ok((record, etag)) => {
                // The store's time now, from the acquiring write's and the time held since.
                let held = chrono::Duration::from_std(held_since.elapsed()).unwrap_or_default();
                let now = DateTime::parse_from_rfc3339(&record.acquired_at)
                    .map(|t| t.with_timezone(&Utc) + held)
                    .ok();
                hand_back_known(ctx, env, &me, &record, &etag, now)
            }
            Err(_) => hand_back(ctx, env, &me),
        };
        if let Handback::Failed(e) = &handback {
            warn_unreleased(env, e);
        }
        (None, Some(handback))
    };
    Ok(Outcome::Ran(Ran {
        env: env.clone(),
        code: exit_code(status),
        lost,
        outer_holder,
        handback,
    }))
}

/// A release that failed after the command ran: the lock expires after its ttl.
fn warn_unreleased(env: &Environment, error: &str) {
    log::warn(&format!(
        "could not release the lock on {env} ({error}); it expires after its ttl"
    ));
}

/// Waits for the command, forwarding signals and stopping it when the lock is lost and
/// `--on-lost kill` asked for that.
fn supervise(
    mut child: Child,
    on_lost: OnLost,
    lost: &AtomicBool,
    clock: &dyn Clock,
) -> std::io::Result<ExitStatus> {
    let mut forwarded = 0u8;
    let mut kill_at: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if clock.cancelled() && forwarded == 0 {
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
