//! `force-break`: delete the lock whoever holds it, and record who did it and why.

use super::context::Context;
use super::outcome::Outcome;
use crate::config::{self, Environment};
use crate::exit::{Failure, Result};
use crate::lock::{EventKind, LockEvent, operation_id};

/// The reason, trimmed; an empty one is refused with `missing` (it is recorded and shown).
pub fn reason(text: &str, missing: &str) -> Result<String> {
    let reason = text.trim();
    if reason.is_empty() {
        return Err(Failure::usage(missing));
    }
    config::validate_reason(reason)
}

pub fn force_break(ctx: &Context<'_>, env: &Environment, reason: &str) -> Result<Outcome> {
    let cfg = ctx.cfg;
    let locker = ctx.locker();
    let broken = locker.force_break(env)?;
    if let Some(lock) = &broken {
        let mut event = LockEvent::of(
            EventKind::ForceBreak,
            env,
            &cfg.identity(&cfg.default_pipeline),
            &cfg.run,
            locker.store_now(),
        );
        reason.clone_into(&mut event.reason);
        event.other = lock.holder.describe();
        event.held_seconds = Some(lock.age.num_seconds());
        // The broken acquisition's id, so the break lines up with its wait and hold.
        if let Some(record) = lock.holder.record() {
            event.operation = operation_id(&record.token);
        }
        ctx.events.record(&event);
    }
    Ok(Outcome::Broken {
        env: env.clone(),
        reason: reason.to_owned(),
        lock: broken,
    })
}
