//! The commands: each takes its validated request, acts on the store and returns an `Outcome`.
//! Nothing here prints an outcome; `report` does. Long-running commands tell the user how they
//! are doing through the `Progress` passed in.

pub mod acquire;
pub mod check;
pub mod force_break;
pub mod history;
pub mod release;
pub mod renew;
pub mod run;
pub mod status;
pub mod wait;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::cli;
use crate::clock::{Clock, SYSTEM};
use crate::config::{self, Config, Environment, Pipeline, StoreChoice};
use crate::exit::{ExitCode, Failure, Result};
use crate::lock::{EventSink, LockView, Locker, audit_sink};
use crate::store::Store;
use crate::store::file::FileStore;

pub use acquire::{Acquisition, Blocked};
pub use history::Since;

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

/// `[PIPELINE] ENV`.
#[derive(Debug, Clone)]
pub struct Target {
    pub pipeline: Pipeline,
    pub env: Environment,
}

impl Target {
    /// `[PIPELINE] ENV` → the target, validated; the pipeline defaults to the platform's.
    pub fn parse(words: &[String], cfg: &Config) -> Result<Self> {
        match words {
            [env] => Ok(Self {
                pipeline: cfg.default_pipeline.clone(),
                env: config::validate_environment(env)?,
            }),
            [pipeline, env] => Ok(Self {
                pipeline: config::validate_pipeline(pipeline)?,
                env: config::validate_environment(env)?,
            }),
            _ => Err(Failure::usage("give [PIPELINE] ENV, e.g. `github sandbox`")),
        }
    }
}

/// How a lock stands, as `check`, `status` and the JSON output name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Free,
    Ours,
    Stale,
    Held,
    Unreadable,
    Acquired,
    TimedOut,
    Interrupted,
    Released,
    Refused,
    Broken,
    Renewed,
    Lost,
}

impl State {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Ours => "ours",
            Self::Stale => "stale",
            Self::Held => "held",
            Self::Unreadable => "unreadable",
            Self::Acquired => "acquired",
            Self::TimedOut => "timed-out",
            Self::Interrupted => "interrupted",
            Self::Released => "released",
            Self::Refused => "refused",
            Self::Broken => "broken",
            Self::Renewed => "renewed",
            Self::Lost => "lost",
        }
    }
}

/// What a command did: everything its report needs, and its exit code.
#[derive(Debug)]
pub enum Outcome {
    Checked {
        env: Environment,
        state: State,
        lock: Option<LockView>,
    },
    Acquired(Acquisition),
    Blocked(Blocked),
    /// A signal ended an acquire; `given_back` when the lock was taken meanwhile and released.
    AcquireInterrupted {
        env: Environment,
        waited: Duration,
        taken: bool,
    },
    Released(release::Released),
    Waited(wait::Waited),
    Broken {
        env: Environment,
        reason: String,
        lock: Option<LockView>,
    },
    Status {
        store: String,
        locks: Vec<status::Row>,
    },
    Renewed(renew::Renewal),
    History {
        env: Environment,
        events: Vec<crate::lock::LockEvent>,
    },
    Ran(run::Ran),
}

impl Outcome {
    /// The process exit code this outcome ends with.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        let code = match self {
            Self::Checked { state, .. } if *state == State::Held => ExitCode::Held,
            Self::Blocked(b) if b.timed_out => ExitCode::TimedOut,
            Self::Blocked(_) => ExitCode::Held,
            Self::AcquireInterrupted { .. } => ExitCode::Interrupted,
            Self::Released(r) => r.exit_code(),
            Self::Waited(w) => w.exit_code(),
            Self::Renewed(r) => r.exit_code(),
            Self::Ran(r) => return r.exit_code(),
            _ => ExitCode::Ok,
        };
        code.code()
    }
}

/// What long-running commands say while they run: `run` tells the user it holds the lock before
/// its command starts, and that the lock was lost while it runs.
pub trait Progress: Sync {
    /// An acquire is about to wait up to `timeout`.
    fn waiting(&self, env: &Environment, timeout: Duration);
    /// The lock is held now (or an acquire ended); the command's own work starts.
    fn acquired(&self, outcome: &Outcome) -> Result<()>;
    /// The lock was lost while `run`'s command runs.
    fn lost(&self, env: &Environment, now_held_by: &str, kill: bool);
}

/// What every command works with: the settings, the store, where events go, and the clock.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub store: &'a dyn Store,
    pub events: &'a dyn EventSink,
    pub clock: &'a dyn Clock,
}

impl<'a> Context<'a> {
    #[must_use]
    pub fn new(cfg: &'a Config, store: &'a dyn Store, events: &'a dyn EventSink) -> Self {
        Self {
            cfg,
            store,
            events,
            clock: &SYSTEM,
        }
    }

    /// The locker with the configured ttls, poll interval and clock.
    #[must_use]
    pub fn locker(&self) -> Locker<'a> {
        Locker::new(self.store, self.cfg.ttl, self.cfg.poll)
            .with_foreign_ttl(self.cfg.foreign_ttl)
            .with_clock(self.clock)
    }
}

/// Opens the configured store. The one place that opens the Azure store.
pub fn open_store(cfg: &Config) -> Result<Box<dyn Store>> {
    match &cfg.store {
        StoreChoice::File(dir) => Ok(Box::new(FileStore::new(dir, &cfg.container))),
        StoreChoice::Azure(settings) => Ok(Box::new(crate::azure::open(settings)?)),
    }
}

/// Masks every form of the store's secrets (decoded SAS signatures, key parts) on CI; the raw
/// environment values were masked before parsing.
pub fn mask_store_secrets(cfg: &Config) {
    if let StoreChoice::Azure(settings) = &cfg.store {
        for secret in crate::azure::secrets(settings) {
            cfg.platform.mask(&secret);
        }
    }
}

/// `DEPLOYMENT_TIMEOUT_MINUTES`, or 120.
pub fn default_wait() -> Result<Duration> {
    match crate::ci::var("DEPLOYMENT_TIMEOUT_MINUTES") {
        Some(v) => config::parse_minutes(&v, "DEPLOYMENT_TIMEOUT_MINUTES"),
        None => Ok(Duration::from_secs_f64(config::DEFAULT_WAIT_MINUTES * 60.0)),
    }
}

/// `--wait [MINUTES]`: absent, the default wait (`--wait` alone), or a time, with a friendly
/// error for a word that is not one (usually the environment written after `--wait`).
pub fn parse_wait(wait: Option<&str>) -> Result<Option<Duration>> {
    match wait.map(str::trim) {
        None => Ok(None),
        Some("") => default_wait().map(Some),
        Some(v) => config::parse_minutes(v, "--wait").map(Some).map_err(|_| {
            Failure::usage(format!(
                "--wait `{}` is not a number of minutes: write `--wait` after the environment \
                 (`acquire github sandbox --wait`), or give the time as `--wait=30`",
                crate::ci::escape_controls(v)
            ))
        }),
    }
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
            Self::Wait { env, timeout } => wait::wait(ctx, env, *timeout),
            Self::ForceBreak { env, reason } => force_break::force_break(ctx, env, reason),
            Self::Status => status::status(ctx),
            Self::Renew(t) => renew::renew(ctx, t),
            Self::Run(request) => run::run(ctx, request, progress),
            Self::History { env, since } => history::history(ctx, env, *since),
        }
    }
}
