//! `check`: who holds the lock, if anyone.

use super::context::{Context, Target};
use super::outcome::{Outcome, State};
use crate::exit::Result;
use crate::lock::protocol::{Ownership, ownership};

pub fn check(ctx: &Context<'_>, target: &Target) -> Result<Outcome> {
    let lock = ctx.locker().read(&target.env)?;
    let me = ctx.cfg.identity(&target.pipeline);
    let state = match &lock {
        None => State::Free,
        Some(l) if ownership(&l.holder, &me) == Ownership::Ours => State::Ours,
        Some(l) if l.is_stale() => State::Stale,
        Some(_) => State::Held,
    };
    Ok(Outcome::Checked {
        env: target.env.clone(),
        state,
        lock,
    })
}
