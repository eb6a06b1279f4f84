//! `acquire`: take the lock (waiting when asked), fence it and record it. The flow "acquire +
//! fence + audit" lives here once; `run` and the action's step use it too.

use std::time::Duration;

use super::context::{Context, Progress, Target};
use super::outcome::{Acquisition, Blocked, Outcome};
use crate::config;
use crate::exit::{ExitCode, Failure, Result};
use crate::human::human_std;
use crate::lock::protocol::{Ownership, from_another_attempt, ownership};
use crate::lock::{Acquired, EventKind, Fenced, Holder, Holding, LockEvent};
use crate::log;

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: Target,
    pub wait: Option<Duration>,
    pub reason: String,
    /// The caller releases the lock itself (`run`, the action's post step): no release hint.
    pub releases_itself: bool,
}

pub fn acquire(ctx: &Context<'_>, request: &Request, progress: &dyn Progress) -> Result<Outcome> {
    let Request {
        target: Target { pipeline, env },
        wait,
        reason,
        releases_itself,
    } = request;
    let cfg = ctx.cfg;
    // Before any request: a reason too long to record writes nothing.
    config::validate_reason(reason)?;
    let me = cfg.identity(pipeline);
    let holding = Holding {
        run: &cfg.run,
        reason,
    };
    let locker = ctx.locker();
    if let Some(wait) = wait {
        progress.waiting(env, *wait);
    }
    match locker.acquire(env, &me, &holding, *wait)? {
        Acquired::Taken {
            mut record,
            etag,
            reentrant,
            stolen_from,
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
            // The acquisition's event, appended by the fencing step when it is on (its
            // position in the log is the fencing number), else recorded after it.
            let mut event = (!reentrant).then(|| {
                let kind = if stolen_from.is_some() {
                    EventKind::Steal
                } else {
                    EventKind::Acquire
                };
                let mut event = LockEvent::by(kind, &record, locker.store_now());
                event.waited_seconds = Some(waited.as_secs());
                event.other = stolen_from
                    .as_ref()
                    .map(Holder::describe)
                    .unwrap_or_default();
                event
            });
            let mut etag = etag;
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
            if let Some(previous) = &stolen_from {
                if from_another_attempt(previous, &me) {
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
            Ok(Outcome::Acquired(Acquisition {
                env: env.clone(),
                pipeline: pipeline.clone(),
                record,
                etag,
                reentrant,
                stolen_from,
                waited,
                ttl: cfg.ttl,
                releases_itself: *releases_itself,
            }))
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
    }
}
