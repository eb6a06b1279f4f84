//! `wait`: until the lock is free (or stale), or the time runs out.

use std::time::Duration;

use super::{Context, Outcome};
use crate::config::Environment;
use crate::exit::{ExitCode, Result};
use crate::lock::{self, LockView};

#[derive(Debug)]
pub struct Waited {
    pub env: Environment,
    pub waited: Duration,
    pub end: End,
}

#[derive(Debug)]
pub enum End {
    Free,
    TimedOut(Box<LockView>),
    Interrupted,
}

impl Waited {
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.end {
            End::Free => ExitCode::Ok,
            End::TimedOut(_) => ExitCode::TimedOut,
            End::Interrupted => ExitCode::Interrupted,
        }
    }
}

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
