//! `status`: every lock in the store.

use super::context::Context;
use super::outcome::{Outcome, Row};
use crate::config;
use crate::exit::Result;

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
    Ok(Outcome::Status {
        store: ctx.store.describe(),
        locks,
    })
}
