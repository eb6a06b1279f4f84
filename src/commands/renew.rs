//! `renew`: extend our lock by another ttl.

use super::context::{Context, Target};
use super::outcome::{Outcome, RenewEnd as End, Renewal};
use crate::exit::Result;
use crate::lock::protocol::{Ownership, ownership};
use crate::lock::{EventKind, LockEvent, Renewed};

pub fn renew(ctx: &Context<'_>, target: &Target) -> Result<Outcome> {
    let cfg = ctx.cfg;
    let env = &target.env;
    let me = cfg.identity(&target.pipeline);
    let locker = ctx.locker();
    // Without `--ttl-minutes` (or LOCK_TIMEOUT_MINUTES) the lock keeps its own ttl.
    let end = match locker.renew(env, &me, cfg.ttl_given.then_some(cfg.ttl))? {
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
