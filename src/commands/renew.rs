//! `renew`: extend our lock by another ttl. A renewal with the lock's token that finds the lock
//! gone or someone else's reports it lost (exit 5, recorded); one without the token cannot tell a
//! lost lock from one it never held, so it only says what it found and records nothing.

use super::context::{Context, Target};
use super::outcome::{Outcome, RenewEnd as End, Renewal};
use super::versions::{self, Version};
use crate::exit::Result;
use crate::lock::protocol::{Ownership, ownership};
use crate::lock::{EventKind, LockEvent, Renewed};

pub fn renew(ctx: &Context<'_>, target: &Target) -> Result<Outcome> {
    let cfg = ctx.cfg;
    let env = &target.env;
    let me = cfg.identity(&target.pipeline);
    let locker = ctx.locker();
    // Without `--ttl-minutes` (or LOCK_TIMEOUT_MINUTES) the lock keeps its own ttl.
    let ttl = cfg.ttl_given.then_some(cfg.ttl);
    // A version this user's `acquire` or `renew` remembered saves the read (`versions.rs`).
    let memory = versions::remembered(ctx.store, env);
    let remembered = versions::pick(&versions::read(&memory), &me).cloned();
    let renewed = match &remembered {
        Some(v) => {
            let now = v
                .store_now(ctx.clock.wall())
                .unwrap_or_else(|| locker.store_now());
            locker.renew_remembered(env, &me, (&v.record, &v.etag), ttl, now)?
        }
        None => locker.renew(env, &me, ttl)?,
    };
    match (&renewed, &remembered) {
        (Renewed::Renewed(lock), _) => {
            if let Some(record) = lock.holder.record() {
                versions::remember(
                    &memory,
                    Version::new(env, record, &lock.etag, lock.now, ctx.clock.wall()),
                );
            }
        }
        (Renewed::Lost(_), Some(v)) => versions::forget(&memory, &v.record.token),
        (Renewed::Lost(_), None) => {}
    }
    let end = match renewed {
        Renewed::Renewed(lock) => End::Renewed(Box::new(lock)),
        Renewed::Lost(Some(lock))
            if me.token.is_none() && ownership(&lock.holder, &me) == Ownership::SameUserAndHost =>
        {
            End::NotOurs {
                lock,
                actor: cfg.run.actor.clone(),
                host: cfg.run.host.clone(),
            }
        }
        // Without the token a caller cannot prove it ever held this acquisition: it says so and
        // records nothing (held by another: exit 3; no lock at all: exit 5).
        Renewed::Lost(lock) if me.token.is_none() => End::NotHeld(lock),
        Renewed::Lost(lock) => {
            let mut event = LockEvent::of(
                EventKind::RenewFailed,
                env,
                &me,
                &cfg.run,
                locker.store_now(),
            );
            event.other = lock
                .as_ref()
                .map(|l| l.holder.describe())
                .unwrap_or_default();
            ctx.events.record(&event);
            End::Lost(lock)
        }
    };
    Ok(Outcome::Renewed(Renewal {
        env: env.clone(),
        end,
    }))
}
