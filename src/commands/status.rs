//! `status`: every lock in the store.

use super::context::Context;
use super::outcome::{Outcome, Row};
use crate::config;
use crate::exit::Result;
use crate::lock::waiters::all_queues;
use crate::log;

pub fn status(ctx: &Context<'_>) -> Result<Outcome> {
    let locks = ctx
        .locker()
        .status()?
        .into_iter()
        .map(|(env, lock)| Row {
            valid_name: config::validate_environment(&env).is_ok(),
            env,
            lock,
        })
        .collect();
    // The queue is advisory: a listing that fails costs the waiters' names, never the locks.
    let queues = all_queues(ctx.store).unwrap_or_else(|e| {
        log::warn(&format!("cannot read the waiters' queues: {e}"));
        std::collections::BTreeMap::new()
    });
    Ok(Outcome::Status {
        store: ctx.store.describe(),
        locks,
        queues,
    })
}
