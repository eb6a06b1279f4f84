//! `release`: give our lock back. The flow "release + audit" lives here once; `run` and the
//! action's post step use it too.

use super::context::{Context, Target};
use super::outcome::{Handback, How, Outcome, Released};
use super::versions;
use crate::config::Environment;
use crate::exit::Result;
use crate::lock::protocol::{Ownership, ownership};
use chrono::{DateTime, Utc};

use crate::lock::{self, Identity, LockEvent, LockRecord};

/// Releases the lock `me` holds and records the release. A version this user's `acquire` or
/// `renew` remembered saves the read (`versions.rs`).
pub fn release_as(
    ctx: &Context<'_>,
    env: &Environment,
    me: &Identity,
) -> anyhow::Result<lock::Released> {
    let locker = ctx.locker();
    let memory = versions::remembered(ctx.store, env);
    let remembered = versions::pick(&versions::read(&memory), me).cloned();
    let released = match &remembered {
        Some(v) => {
            let now = v
                .store_now(ctx.clock.wall())
                .unwrap_or_else(|| locker.store_now());
            locker.release_remembered(env, me, &v.record, &v.etag, now)?
        }
        None => locker.release(env, me)?,
    };
    match &released {
        lock::Released::Released(lock) => {
            ctx.events
                .record(&LockEvent::released(env, lock, locker.store_now()));
            if let Some(record) = lock.holder.record() {
                versions::forget(&memory, &record.token);
            }
        }
        lock::Released::Absent => {
            if let Some(v) = &remembered {
                versions::forget(&memory, &v.record.token);
            }
        }
        lock::Released::Refused(_) => {}
    }
    Ok(released)
}

/// Gives back the lock `me` took, and records the release; never fails.
pub fn hand_back(ctx: &Context<'_>, env: &Environment, me: &Identity) -> Handback {
    match release_as(ctx, env, me) {
        Ok(lock::Released::Released(lock)) => Handback::Released(lock),
        Ok(lock::Released::Absent) => Handback::Absent,
        Ok(lock::Released::Refused(lock)) => Handback::HeldByOther(lock),
        Err(e) => Handback::Failed(format!("{e:#}")),
    }
}

/// `hand_back` for the holder that knows its record and the lock's current version (`run`):
/// one conditional delete and the audit append, no read. `now` is the store's time as the
/// caller estimates it (the acquiring write's plus the time held), for the release event.
pub fn hand_back_known(
    ctx: &Context<'_>,
    env: &Environment,
    me: &Identity,
    record: &LockRecord,
    etag: &str,
    now: Option<DateTime<Utc>>,
) -> Handback {
    let locker = ctx.locker();
    let now = now.unwrap_or_else(|| locker.store_now());
    match locker.release_known(env, me, record, etag, now) {
        Ok(lock::Released::Released(lock)) => {
            ctx.events
                .record(&LockEvent::released(env, &lock, locker.store_now()));
            Handback::Released(lock)
        }
        Ok(lock::Released::Absent) => Handback::Absent,
        Ok(lock::Released::Refused(lock)) => Handback::HeldByOther(lock),
        Err(e) => Handback::Failed(format!("{e:#}")),
    }
}

pub fn release(ctx: &Context<'_>, target: &Target) -> Result<Outcome> {
    let me = ctx.cfg.identity(&target.pipeline);
    let how = match release_as(ctx, &target.env, &me)? {
        lock::Released::Released(lock) => How::Released {
            by: (ownership(&lock.holder, &me) == Ownership::SameUserAndHost)
                .then(|| (ctx.cfg.run.actor.clone(), ctx.cfg.run.host.clone())),
            lock,
        },
        lock::Released::Absent => {
            crate::log::warn(&format!(
                "there is no lock on {} to release; nothing to do",
                target.env
            ));
            How::Absent
        }
        lock::Released::Refused(lock) => How::Refused {
            lock,
            pipeline: target.pipeline.clone(),
            build_id: me.build_id,
        },
    };
    Ok(Outcome::Released(Released {
        env: target.env.clone(),
        how,
    }))
}
