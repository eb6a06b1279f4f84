//! `wait`: until the lock is free (or stale), or the time runs out.

use std::time::Duration;

use super::context::{Context, Progress, Watch};
use super::estimate::typical_hold;
use super::outcome::{Outcome, WaitEnd as End, Waited};
use crate::config::Environment;
use crate::exit::Result;
use crate::lock;

pub fn wait(
    ctx: &Context<'_>,
    env: &Environment,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Outcome> {
    progress.waiting(env, timeout, typical_hold(ctx, env));
    let watch = Watch(progress);
    let waited = ctx.locker().with_watch(&watch).wait_free(env, timeout);
    progress.done_waiting();
    let (end, waited) = match waited? {
        lock::Waited::Free { waited } => (End::Free, waited),
        lock::Waited::TimedOut { lock, waited } => (End::TimedOut(lock), waited),
        lock::Waited::Cancelled { waited } => (End::Interrupted, waited),
    };
    Ok(Outcome::Waited(Waited {
        env: env.clone(),
        waited,
        end,
    }))
}
