//! `wait`: until the lock is free (or stale), or the time runs out.

use std::time::Duration;

use super::context::Context;
use super::outcome::{Outcome, WaitEnd as End, Waited};
use crate::config::Environment;
use crate::exit::Result;
use crate::lock;

pub fn wait(ctx: &Context<'_>, env: &Environment, timeout: Duration) -> Result<Outcome> {
    let (end, waited) = match ctx.locker().wait_free(env, timeout)? {
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
