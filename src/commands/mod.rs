//! The commands: each takes its validated request, acts on the store and returns an `Outcome`.
//! Nothing here prints an outcome; `report` does. Long-running commands tell the user how they
//! are doing through the `Progress` passed in.

pub mod acquire;
pub mod check;
pub mod context;
pub mod estimate;
pub mod force_break;
pub mod history;
pub mod outcome;
pub mod release;
pub mod renew;
pub mod run;
pub mod status;
pub mod wait;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::cli;
use crate::config::{self, Config, Environment};
use crate::exit::{Failure, Result};
use crate::lock::audit_sink;

pub use context::{Context, Progress, Target, default_wait, open_store, parse_wait};
pub use history::Since;
pub use outcome::{Outcome, State};

/// A command with its arguments validated: nothing here reaches the store unchecked.
#[derive(Debug, Clone)]
pub enum Command {
    Check(Target),
    Acquire(acquire::Request),
    Release(Target),
    Wait {
        env: Environment,
        timeout: Duration,
    },
    ForceBreak {
        env: Environment,
        reason: String,
    },
    Status,
    Renew(Target),
    Run(run::Request),
    History {
        env: Environment,
        since: Option<Since>,
    },
}

impl Command {
    /// Validates a parsed command line. Every argument is checked before the store is opened:
    /// bad input never reaches the store. `step` is not a command of its own (`ci::step`).
    pub fn from_cli(command: &cli::Command, cfg: &Config) -> Result<Self> {
        Ok(match command {
            cli::Command::Check(t) => Self::Check(Target::parse(&t.words, cfg)?),
            cli::Command::Acquire(args) => {
                let wait = parse_wait(args.wait.as_deref())?;
                Self::Acquire(acquire::Request {
                    target: Target::parse(&args.target.words, cfg)?,
                    wait,
                    reason: args.reason.clone().unwrap_or_default(),
                    releases_itself: false,
                })
            }
            cli::Command::Release(t) => Self::Release(Target::parse(&t.words, cfg)?),
            cli::Command::Wait(args) => {
                let env = config::validate_environment(&args.environment)?;
                let timeout = match &args.minutes {
                    Some(m) => config::parse_minutes(m, "wait MINUTES")?,
                    None => default_wait()?,
                };
                Self::Wait { env, timeout }
            }
            cli::Command::ForceBreak(args) => {
                let env = config::validate_environment(&args.environment)?;
                Self::ForceBreak {
                    env,
                    reason: force_break::reason(
                        &args.reason,
                        "force-break needs --reason TEXT: say why, it is recorded and shown",
                    )?,
                }
            }
            cli::Command::Status => Self::Status,
            cli::Command::Renew(t) => Self::Renew(Target::parse(&t.words, cfg)?),
            cli::Command::Run(args) => Self::Run(run::Request::parse(args, cfg)?),
            cli::Command::History(args) => {
                let env = config::validate_environment(&args.environment)?;
                let since = args
                    .since
                    .as_deref()
                    .map(history::parse_since)
                    .transpose()?;
                Self::History { env, since }
            }
            cli::Command::Step(_) => {
                return Err(Failure::usage("`step` is run by the action and the task"));
            }
        })
    }

    /// Runs the command against the configured store.
    pub fn execute(&self, cfg: &Config, progress: &dyn Progress) -> Result<Outcome> {
        let store = open_store(cfg)?;
        let events = audit_sink(&*store, cfg.audit);
        let ctx = Context::new(cfg, &*store, &*events);
        self.execute_in(&ctx, progress)
    }

    /// Runs the command in a context (a store of the caller's choosing).
    pub fn execute_in(&self, ctx: &Context<'_>, progress: &dyn Progress) -> Result<Outcome> {
        match self {
            Self::Check(t) => check::check(ctx, t),
            Self::Acquire(request) => acquire::acquire(ctx, request, progress),
            Self::Release(t) => release::release(ctx, t),
            Self::Wait { env, timeout } => wait::wait(ctx, env, *timeout, progress),
            Self::ForceBreak { env, reason } => force_break::force_break(ctx, env, reason),
            Self::Status => status::status(ctx),
            Self::Renew(t) => renew::renew(ctx, t),
            Self::Run(request) => run::run(ctx, request, progress),
            Self::History { env, since } => history::history(ctx, env, *since),
        }
    }
}
