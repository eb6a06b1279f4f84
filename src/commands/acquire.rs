//! `acquire`: take the lock (waiting when asked), fence it and record it. The flow "acquire +
//! fence + audit" lives here once; `run` and the action's step use it too.

use std::time::Duration;

use super::context::{Context, Progress, Target, Watch};
use super::estimate::typical_hold;
use super::freeze::Overrides;
use super::outcome::{Acquisition, Blocked, Outcome};
use super::versions;
use crate::config::{self, Config, Environment, Pipeline};
use crate::exit::{ExitCode, Failure, Result};
use crate::human::human_std;
use crate::lock::protocol::{Ownership, from_another_attempt, ownership};
use crate::lock::waiters::Waiter;
use crate::lock::{Acquired, EventKind, Fenced, Holder, Holding, Identity, LockEvent, LockRecord};
use crate::log;

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    pub wait: Option<Duration>,
    pub reason: String,
    /// The caller releases the lock itself (`run`, the action's post step): no release hint.
    pub releases_itself: bool,
    /// `--override-freeze`: take the lock during a freeze (the reason is recorded).
    pub override_freeze: bool,
}

pub fn acquire(ctx: &Context<'_>, request: &Request, progress: &dyn Progress) -> Result<Outcome> {
    let Request {
        target: Target { pipeline, env },
        wait,
        reason,
        releases_itself,
        override_freeze,
    } = request;
    let cfg = ctx.cfg;
    // Before any request: a reason too long to record writes nothing.
    config::validate_reason(reason)?;
    let me = cfg.identity(pipeline);
    let holding = Holding {
        priority: cfg.priority,
        supersede: cfg.supersede.as_deref(),
        ..Holding::new(&cfg.run, reason)
    };
    let watch = Watch(progress);
    let freezes = Overrides::new(ctx, pipeline, override_freeze.then_some(reason.as_str()));
    let locker = ctx.locker().with_watch(&watch).with_freeze_gate(&freezes);
    if let Some(budget) = *wait {
        progress.waiting(env, budget, typical_hold(ctx, env));
    }
    let acquired = locker.acquire(env, &me, &holding, *wait);
    if wait.is_some() {
        progress.done_waiting();
    }
    match acquired? {
        Acquired::Taken {
            record,
            etag,
            reentrant,
            stolen_from,
            reaped,
            waited,
        } => {
            if ctx.clock.cancelled() {
                if reentrant {
                    log::warn(&format!(
                        "interrupted: the lock on {env} stays held by the holder that took it"
                    ));
                } else {
                    // The signal came while the lock was being taken: give it back before exiting.
                    let _ = locker.release(env, &cfg.holder(pipeline, &record.token));
                    log::warn(&format!("interrupted: the lock on {env} was given back"));
                }
                return Ok(Outcome::AcquireInterrupted {
                    env: env.clone(),
                    waited,
                    taken: true,
                });
            }
            confirm(
                ctx,
                &Taken {
                    env,
                    pipeline,
                    me: &me,
                    etag: &etag,
                    reentrant,
                    stolen_from,
                    reaped,
                    waited,
                    releases_itself: *releases_itself,
                },
                record,
            )
            .map(Outcome::Acquired)
        }
        Acquired::Blocked {
            lock,
            waited,
            timed_out,
        } => {
            let kind = if timed_out {
                EventKind::TimedOut
            } else {
                EventKind::Blocked
            };
            let mut event = LockEvent::of(kind, env, &me, &cfg.run, locker.store_now());
            reason.clone_into(&mut event.reason);
            event.waited_seconds = Some(waited.as_secs());
            event.other = lock.holder.describe();
            ctx.events.record(&event);
            let same_user_and_host = (ownership(&lock.holder, &me) == Ownership::SameUserAndHost)
                .then(|| (cfg.run.actor.clone(), cfg.run.host.clone()));
            Ok(Outcome::Blocked(Blocked {
                env: env.clone(),
                lock,
                waited,
                timed_out,
                same_user_and_host,
            }))
        }
        Acquired::Superseded { by, waited } => {
            let mut event = LockEvent::of(
                EventKind::Superseded,
                env,
                &me,
                &cfg.run,
                locker.store_now(),
            );
            reason.clone_into(&mut event.reason);
            event.waited_seconds = Some(waited.as_secs());
            event.priority = cfg.priority;
            event.other = superseder(&by);
            ctx.events.record(&event);
            Ok(Outcome::Superseded {
                env: env.clone(),
                by,
                waited,
            })
        }
        Acquired::Cancelled { waited } => {
            log::warn(&format!(
                "interrupted after waiting {}; no lock on {env} was taken",
                human_std(waited)
            ));
            Ok(Outcome::AcquireInterrupted {
                env: env.clone(),
                waited,
                taken: false,
            })
        }
        Acquired::Frozen {
            window, timed_out, ..
        } => Ok(Outcome::Frozen {
            env: env.clone(),
            window: *window,
            timed_out,
        }),
    }
}

/// The waiter that superseded us, with its run's link when it has one.
fn superseder(by: &Waiter) -> String {
    match by.run_url.as_str() {
        "" => by.describe(),
        url => format!("{} ({url})", by.describe()),
    }
}

/// A lock just taken, as `confirm` needs it.
pub(super) struct Taken<'t> {
    pub env: &'t Environment,
    pub pipeline: &'t Pipeline,
    pub me: &'t Identity,
    pub etag: &'t str,
    pub reentrant: bool,
    pub stolen_from: Option<Holder>,
    /// The conclusion of the holder's run, when it was taken over because that run ended.
    pub reaped: Option<String>,
    pub waited: Duration,
    pub releases_itself: bool,
}

/// Fences a lock just taken, says whom it was taken over from, and records the acquisition.
/// Lock sets confirm each member with it.
pub(super) fn confirm(
    ctx: &Context<'_>,
    taken: &Taken<'_>,
    mut record: LockRecord,
) -> Result<Acquisition> {
    let Taken {
        env,
        pipeline,
        me,
        etag,
        reentrant,
        ref stolen_from,
        ref reaped,
        waited,
        releases_itself,
    } = *taken;
    let cfg = ctx.cfg;
    let locker = ctx.locker();
    // The acquisition's event, appended by the fencing step when it is on (its position in the
    // log is the fencing number: docs/design.md, "Fencing"), else recorded after it.
    let mut event = (!reentrant).then(|| {
        let kind = if reaped.is_some() {
            EventKind::Reaped
        } else if stolen_from.is_some() {
            EventKind::Steal
        } else {
            EventKind::Acquire
        };
        let mut event = LockEvent::by(kind, &record, locker.store_now());
        event.waited_seconds = Some(waited.as_secs());
        event.priority = cfg.priority;
        event.other = stolen_from
            .as_ref()
            .map(Holder::describe)
            .unwrap_or_default();
        event.conclusion = reaped.clone().unwrap_or_default();
        event
    });
    let mut etag = etag.to_owned();
    if cfg.fence && record.fence.is_none() {
        let logged = event.as_ref().filter(|_| cfg.audit);
        match locker.fence(env, &mut record, &etag, logged) {
            Ok(Fenced::Fenced { fence, etag: now }) => {
                etag = now;
                if let Some(e) = event.as_mut().filter(|_| cfg.audit) {
                    e.fence = Some(fence);
                    e.fence_is_position = true;
                }
            }
            Ok(Fenced::Lost(now)) => {
                let who = now.map_or_else(|| "nobody".into(), |l| l.holder.describe());
                return Err(Failure::new(
                    ExitCode::Lost,
                    anyhow::anyhow!(
                        "the lock on {env} was taken over (now held by {who}) before it \
                         could be confirmed; this process stalled for longer than the \
                         ttl ({}). Try again",
                        human_std(cfg.ttl)
                    ),
                ));
            }
            Err(e) => log::warn(&format!(
                "the lock on {env} is held, but without a fencing number: {e:#}"
            )),
        }
    }
    if let (Some(previous), Some(conclusion)) = (stolen_from, reaped) {
        log::note(&format!(
            "took over the lock on {env} from {}, whose run has ended ({conclusion})",
            previous.describe()
        ));
    } else if let Some(previous) = stolen_from {
        if from_another_attempt(previous, me) {
            log::note(&format!(
                "took over the lock on {env} from an earlier attempt of this job ({})",
                previous.describe()
            ));
        } else {
            log::warn(&format!(
                "took over a stale lock on {env} from {}",
                previous.describe()
            ));
        }
    }
    if let Some(event) = &event {
        ctx.events.record(event);
    }
    // Released by a later command (a terminal, a script's next step): remember the version our
    // writes left, so that its release or renewal needs no read first (`versions.rs`).
    if !releases_itself && !reentrant {
        versions::remember(
            &versions::remembered(ctx.store, env),
            versions::Version::acquired(env, &record, &etag, ctx.clock.wall()),
        );
    }
    Ok(Acquisition {
        env: env.clone(),
        pipeline: pipeline.clone(),
        record,
        etag,
        reentrant,
        stolen_from: stolen_from.clone(),
        reaped: reaped.clone(),
        waited,
        ttl: cfg.ttl,
        releases_itself,
        release_with: release_with(cfg),
    })
}

/// The `--build-id` and `--token` this acquire was given, for the release hint.
fn release_with(cfg: &Config) -> String {
    let mut with = String::new();
    if cfg.build_id_given {
        with.push_str(&format!(" --build-id {}", cfg.run.build_id));
    }
    if let Some(token) = &cfg.token {
        with.push_str(&format!(" --token {token}"));
    }
    with
}
