//! The commands: each takes its validated request, acts on the store and returns an `Outcome`.
//! Nothing here prints an outcome; `report` does. Long-running commands tell the user how they
//! are doing through the `Progress` passed in.

pub mod acquire;
pub mod check;
pub mod context;
pub mod dashboard;
pub mod estimate;
pub mod force_break;
pub mod freeze;
pub mod history;
pub mod outcome;
pub mod reap;
pub mod release;
pub mod renew;
pub mod run;
pub mod set;
pub mod stats;
pub mod status;
pub mod versions;
pub mod wait;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::cli;
use crate::clock::SYSTEM;
use crate::config::{self, Config, Environment};
use crate::exit::{Failure, Result};
use crate::lock::Reaper;

pub use context::{Context, Progress, Target, default_wait, event_sink, open_store, parse_wait};
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
    /// `status`; with a time, only the locks held longer (`--stuck-after`).
    Status {
        stuck_after: Option<Duration>,
    },
    Renew(Target),
    Run(run::Request),
    History {
        env: Environment,
        since: Option<Since>,
    },
    Freeze {
        env: Environment,
        span: freeze::Span,
        reason: String,
    },
    Unfreeze {
        env: Environment,
        reason: String,
    },
    Freezes,
    /// `eu,us`: a lock set (`set.rs`).
    AcquireSet(set::Request),
    ReleaseSet(set::Targets),
    CheckSet(set::Targets),
    WaitSet {
        envs: Vec<Environment>,
        timeout: Duration,
    },
    Stats {
        envs: Vec<Environment>,
        since: Since,
    },
    Dashboard(dashboard::Request),
    Reap(Vec<Environment>),
}

impl Command {
    /// Validates a parsed command line. Every argument is checked before the store is opened:
    /// bad input never reaches the store. `step` is not a command of its own (`ci::step`).
    pub fn from_cli(command: &cli::Command, cfg: &Config) -> Result<Self> {
        Ok(match command {
            cli::Command::Check(t) => match set::Targets::parse(&t.words, cfg)? {
                Some(targets) => Self::CheckSet(targets),
                None => Self::Check(Target::parse(&t.words, cfg)?),
            },
            cli::Command::Acquire(args) => {
                let wait = parse_wait(args.wait.as_deref())?;
                let reason = args.reason.clone().unwrap_or_default();
                if args.override_freeze && reason.trim().is_empty() {
                    return Err(Failure::usage(
                        "--override-freeze needs --reason TEXT: say why, it is recorded in the \
                         audit log",
                    ));
                }
                if let Some(targets) = set::Targets::parse(&args.target.words, cfg)? {
                    return Ok(Self::AcquireSet(set::Request {
                        targets,
                        wait,
                        reason,
                        override_freeze: args.override_freeze,
                    }));
                }
                Self::Acquire(acquire::Request {
                    target: Target::parse(&args.target.words, cfg)?,
                    wait,
                    reason,
                    releases_itself: false,
                    override_freeze: args.override_freeze,
                })
            }
            cli::Command::Release(t) => match set::Targets::parse(&t.words, cfg)? {
                Some(targets) => Self::ReleaseSet(targets),
                None => Self::Release(Target::parse(&t.words, cfg)?),
            },
            cli::Command::Wait(args) => {
                let timeout = match &args.minutes {
                    Some(m) => config::parse_minutes(m, "wait MINUTES")?,
                    None => default_wait()?,
                };
                match set::members(&args.environment)? {
                    Some(envs) => Self::WaitSet { envs, timeout },
                    None => Self::Wait {
                        env: config::validate_environment(&args.environment)?,
                        timeout,
                    },
                }
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
            cli::Command::Status(args) => Self::Status {
                stuck_after: args
                    .stuck_after
                    .as_deref()
                    .map(|v| config::parse_minutes(v, "--stuck-after"))
                    .transpose()?,
            },
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
            cli::Command::Freeze(args) => Self::Freeze {
                env: config::validate_environment(&args.environment)?,
                span: freeze::Span::parse(
                    args.for_.as_deref(),
                    args.until.as_deref(),
                    args.weekly.as_deref(),
                )?,
                reason: force_break::reason(
                    &args.reason,
                    "freeze needs --reason TEXT: say why, it is shown to everyone refused",
                )?,
            },
            cli::Command::Unfreeze(args) => Self::Unfreeze {
                env: config::validate_environment(&args.environment)?,
                reason: force_break::reason(
                    &args.reason,
                    "unfreeze needs --reason TEXT: say why, it is recorded",
                )?,
            },
            cli::Command::Freezes => Self::Freezes,
            cli::Command::Stats(args) => Self::Stats {
                envs: args
                    .environments
                    .iter()
                    .map(|e| config::validate_environment(e))
                    .collect::<Result<_>>()?,
                since: stats::parse_window(&args.since)?,
            },
            cli::Command::Dashboard(args) => {
                let request = dashboard::Request {
                    out: args.out.clone(),
                    publish: args.publish,
                    since: stats::parse_window(&args.since)?,
                };
                dashboard::check(&request, &cfg.store)?;
                Self::Dashboard(request)
            }
            cli::Command::Reap(args) => Self::Reap(reap::request(&args.environments, cfg)?),
            cli::Command::Step(_) => {
                return Err(Failure::usage("`step` is run by the action and the task"));
            }
        })
    }

    /// Runs the command against the configured store.
    pub fn execute(&self, cfg: &Config, progress: &dyn Progress) -> Result<Outcome> {
        let store = open_store(cfg)?;
        let events = event_sink(cfg, &*store);
        let api = reap::ci_api(cfg)?;
        let reaper = api.as_ref().map(|api| Reaper::new(api, &SYSTEM));
        let ctx = Context::new(cfg, &*store, &*events).with_reaper(reaper.as_ref());
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
            Self::Status { stuck_after } => status::status(ctx, *stuck_after),
            Self::Renew(t) => renew::renew(ctx, t),
            Self::Run(request) => run::run(ctx, request, progress),
            Self::History { env, since } => history::history(ctx, env, *since),
            Self::Freeze { env, span, reason } => {
                freeze::freeze(ctx, env, &ctx.cfg.default_pipeline, span, reason)
            }
            Self::Unfreeze { env, reason } => {
                freeze::unfreeze(ctx, env, &ctx.cfg.default_pipeline, reason)
            }
            Self::Freezes => freeze::freezes(ctx),
            Self::AcquireSet(request) => set::acquire(ctx, request, progress),
            Self::ReleaseSet(targets) => set::release(ctx, targets),
            Self::CheckSet(targets) => set::check(ctx, targets),
            Self::WaitSet { envs, timeout } => set::wait(ctx, envs, *timeout, progress),
            Self::Stats { envs, since } => stats::stats_command(ctx, envs, *since),
            Self::Dashboard(request) => dashboard::dashboard(ctx, request),
            Self::Reap(envs) => reap::reap(ctx, envs),
        }
    }
}
