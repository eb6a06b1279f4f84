//! `wait`: until the lock is free (or stale), or the time runs out. A free lock is reported as a
//! `free` event, so `wait ENV --notify …` tells whoever asked.

use std::time::Duration;

use super::context::{Context, Progress, Watch};
use super::estimate::typical_hold;
use super::outcome::{Outcome, WaitEnd as End, Waited};
use crate::config::Environment;
use crate::exit::Result;
use crate::lock::{self, EventKind, LockEvent};

pub fn wait(
    ctx: &Context<'_>,
    env: &Environment,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Outcome> {
    progress.waiting(env, timeout, typical_hold(ctx, env));
    let watch = Watch(progress);
    let locker = ctx.locker().with_watch(&watch);
    let waited = locker.wait_free(env, timeout);
    progress.done_waiting();
    let (end, waited) = match waited? {
        lock::Waited::Free { waited } => {
            let cfg = ctx.cfg;
            let mut event = LockEvent::of(
                EventKind::Free,
                env,
                &cfg.identity(&cfg.default_pipeline),
                &cfg.run,
                locker.store_now(),
            );
            event.waited_seconds = Some(waited.as_secs());
            ctx.events.record(&event);
            (End::Free, waited)
        }
        lock::Waited::TimedOut { lock, waited } => (End::TimedOut(lock), waited),
        lock::Waited::Cancelled { waited } => (End::Interrupted, waited),
    };
    Ok(Outcome::Waited(Waited {
        env: env.clone(),
        waited,
        end,
    }))
}
