//! `status`: every lock in the store.

use super::{Context, Outcome, State};
use crate::config;
use crate::exit::Result;
use crate::lock::LockView;
use crate::store::StoreError;

/// One environment's lock as listed. Names come from the store's listing: anyone who can write
/// to the container chooses them, so each says whether it is a valid environment name.
#[derive(Debug)]
pub struct Row {
    pub env: String,
    pub valid_name: bool,
    pub lock: std::result::Result<LockView, StoreError>,
}

impl Row {
    #[must_use]
    pub fn state(&self) -> State {
        match &self.lock {
            Ok(l) if l.is_stale() => State::Stale,
            Ok(_) => State::Held,
            Err(_) => State::Unreadable,
        }
    }
}

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
