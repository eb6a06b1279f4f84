//! `run ENV -- COMMAND`: hold the lock exactly as long as a command runs. `run eu,us -- COMMAND`
//! holds every member of the set (one heartbeat renews them all) and gives each back at the end.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::acquire;
use super::context::{Context, Progress, Target, event_sink, open_store, parse_wait};
use super::outcome::{Acquisition, Handback, Outcome, Ran};
use super::release::{hand_back, hand_back_known};
use super::set;
use crate::cli::{OnLost, RunArgs};
use crate::clock::Clock;
use crate::config::{Config, Environment};
use crate::exit::{ExitCode, Failure, Result};
use crate::lock::heartbeat::{self, Beat, End, Kept};
use crate::lock::{Holder, Identity};
use crate::log;

/// How long a command asked to stop gets before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// What `run` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub acquire: Take,
    pub on_lost: OnLost,
    pub command: Vec<String>,
}

/// One environment's lock, or a set's.
#[derive(Debug, Clone)]
pub enum Take {
    One(acquire::Request),
    Set(set::Request),
}

impl Request {
    pub fn parse(args: &RunArgs, cfg: &Config) -> Result<Self> {
        let wait = parse_wait(args.wait.as_deref())?;
        let reason = args.reason.clone().unwrap_or_default();
        let acquire = match set::Targets::parse(&args.target.words, cfg)? {
            Some(targets) => Take::Set(set::Request {
                targets,
                wait,
                reason,
                override_freeze: false,
            }),
            None => Take::One(acquire::Request {
                target: Target::parse(&args.target.words, cfg)?,
                wait,
                reason,
                releases_itself: true,
                override_freeze: false,
            }),
        };
        if args.command.is_empty() {
            return Err(Failure::usage("give the command to run after `--`"));
        }
        Ok(Self {
            acquire,
            on_lost: args.on_lost,
            command: args.command.clone(),
        })
    }
}

pub fn run(ctx: &Context<'_>, request: &Request, progress: &dyn Progress) -> Result<Outcome> {
    // The lock is kept alive by a heartbeat while the command runs: the ttl for that is decided
    // by the config.
    let mut cfg = ctx.cfg.with_heartbeat();
    let outcome = {
        let ctx = Context { cfg: &cfg, ..*ctx };
        match &request.acquire {
            Take::One(one) => acquire::acquire(&ctx, one, progress)?,
            Take::Set(set) => set::acquire(&ctx, set, progress)?,
        }
    };
    let taken: Vec<Acquisition> = match outcome {
        Outcome::Acquired(taken) => vec![taken],
        Outcome::Each(members) if members.iter().all(|m| matches!(m, Outcome::Acquired(_))) => {
            members
                .into_iter()
                .filter_map(|m| match m {
                    Outcome::Acquired(a) => Some(a),
                    _ => None,
                })
                .collect()
        }
        other => return Ok(other),
    };
    match taken.as_slice() {
        [one] => progress.acquired(&Outcome::Acquired(one.clone()))?,
        _ => progress.acquired(&Outcome::Each(
            taken.iter().cloned().map(Outcome::Acquired).collect(),
        ))?,
    }
    // Nested in the acquisition that took the lock (the same CI job, or its token): that holder
    // releases it, and our renewals keep its ttl, never a shorter one.
    for t in taken.iter().filter(|t| t.reentrant) {
        cfg.ttl = cfg.ttl.max(Duration::from_secs(t.record.ttl_seconds));
    }
    let ctx = Context { cfg: &cfg, ..*ctx };
    let mut ran = supervised(&ctx, request, progress, &taken)?;
    Ok(match ran.len() {
        1 => Outcome::Ran(ran.remove(0)),
        _ => Outcome::Each(ran.into_iter().map(Outcome::Ran).collect()),
    })
}

/// What the command sees: one value per lock, comma-separated in the set's (name) order.
fn joined(taken: &[Acquisition], value: impl Fn(&Acquisition) -> String) -> String {
    taken.iter().map(value).collect::<Vec<_>>().join(",")
}

fn supervised(
    ctx: &Context<'_>,
    request: &Request,
    progress: &dyn Progress,
    taken: &[Acquisition],
) -> Result<Vec<Ran>> {
    let cfg = ctx.cfg;
    let holders: Vec<Identity> = taken.iter().map(|t| t.holder(cfg)).collect();
    let program = &request.command[0];
    let mut command = Command::new(program);
    command
        .args(&request.command[1..])
        .env(
            "DEPLOY_LOCK_ENVIRONMENT",
            joined(taken, |t| t.env.to_string()),
        )
        .env(
            "DEPLOY_LOCK_TOKEN",
            joined(taken, |t| t.record.token.clone()),
        )
        .env(
            "DEPLOY_LOCK_FENCE",
            joined(taken, |t| {
                t.record.fence.map(|f| f.to_string()).unwrap_or_default()
            }),
        );
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let mut what = Vec::new();
            for (t, me) in taken.iter().zip(&holders) {
                what.push(if t.reentrant {
                    format!("the lock on {} stays held by the outer holder", t.env)
                } else {
                    if let Handback::Failed(e) = hand_back(ctx, &t.env, me) {
                        warn_unreleased(&t.env, &e);
                    }
                    format!("the lock on {} was released", t.env)
                });
            }
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow::anyhow!("cannot run `{program}`: {e}; {}", what.join(", ")),
            ));
        }
    };
    // Each lock's version after our latest write: the heartbeat renews from it without a read,
    // and the release after it needs none either (docs/design.md, "Requests").
    let known: Vec<heartbeat::Known> = taken
        .iter()
        .map(|t| std::sync::Mutex::new((t.record.clone(), t.etag.clone())))
        .collect();
    let held_since = Instant::now();
    let kept: Vec<Kept<'_>> = taken
        .iter()
        .zip(&holders)
        .zip(&known)
        .map(|((t, me), known)| Kept {
            environment: &t.env,
            me,
            known: Some(known),
        })
        .collect();
    let stop = AtomicBool::new(false);
    let lost: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let lost_any = AtomicBool::new(false);
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
            let end = heartbeat::keep_alive(
                &*hb_store,
                cfg.ttl,
                &kept,
                cfg.capacity,
                &*event_sink(cfg, &*hb_store),
                &|| stop.load(Ordering::SeqCst),
                &mut report,
            );
            if let End::Lost(environment, now) = end {
                let who = now.map_or_else(|| "nobody we could see".into(), |l| l.holder.describe());
                if let Some(t) = taken.iter().find(|t| *t.env == *environment) {
                    progress.lost(&t.env, &who, request.on_lost == OnLost::Kill);
                }
                *lost
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(environment);
                lost_any.store(true, Ordering::SeqCst);
            }
        });
        let status = supervise(child, request.on_lost, &lost_any, ctx.clock);
        stop.store(true, Ordering::SeqCst);
        status
    });
    let status = status.map_err(|e| anyhow::anyhow!("waiting for `{program}` failed: {e}"))?;
    log::debug(&format!(
        "renewed the lock {} time(s)",
        renewals.load(Ordering::Relaxed)
    ));
    let lost = lost
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let code = exit_code(status);
    drop(kept);
    Ok(taken
        .iter()
        .zip(&holders)
        .zip(known)
        .map(|((t, me), known)| {
            let lost = lost.as_deref() == Some(&*t.env);
            let (outer_holder, handback) = if lost {
                (None, None)
            } else if t.reentrant {
                (Some(Holder::Current(t.record.clone()).describe()), None)
            } else {
                // The other members of a set whose lock was lost are still ours: given back,
                // on the version the heartbeat left, without a read.
                let handback = match known.into_inner() {
                    Ok((record, etag)) => {
                        // The store's time now: the acquiring write's, plus the time held since.
                        let held =
                            chrono::Duration::from_std(held_since.elapsed()).unwrap_or_default();
                        let now = chrono::DateTime::parse_from_rfc3339(&record.acquired_at)
                            .map(|at| at.with_timezone(&chrono::Utc) + held)
                            .ok();
                        hand_back_known(ctx, &t.env, me, &record, &etag, now)
                    }
                    Err(_) => hand_back(ctx, &t.env, me),
                };
                if let Handback::Failed(e) = &handback {
                    warn_unreleased(&t.env, e);
                }
                (None, Some(handback))
            };
            Ran {
                env: t.env.clone(),
                code,
                lost,
                outer_holder,
                handback,
            }
        })
        .collect())
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
