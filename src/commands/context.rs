//! What every command works with, and the small parsers they share.

use std::time::Duration;

use super::outcome::Outcome;
use crate::clock::{Clock, SYSTEM};
use crate::config::{self, Config, Environment, Pipeline, StoreChoice};
use crate::exit::{Failure, Result};
use crate::lock::{EventSink, Fanout, Locker, Reaper, WaitSeen, WaitWatch, audit_sink};
use crate::store::Store;
use crate::store::file::FileStore;

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
            [pipeline, env] => {
                slip(pipeline, env)?;
                Ok(Self {
                    pipeline: config::validate_pipeline(pipeline)?,
                    env: config::validate_environment(env)?,
                })
            }
            _ => Err(Failure::usage("give [PIPELINE] ENV, e.g. `github sandbox`")),
        }
    }
}

/// Catches the usual slips of `PIPELINE ENV` before anything is written: a number where the
/// environment goes (`acquire sandbox 60` meant a wait), or a pipeline type there
/// (`acquire sandbox github`).
fn slip(pipeline: &str, env: &str) -> Result<()> {
    let words = crate::ci::escape_controls(&format!("{pipeline} {env}"));
    if config::parse_minutes(env, "ENV").is_ok() {
        return Err(Failure::usage(format!(
            "`{words}`: `{}` looks like a number of minutes, not an environment. Give [PIPELINE] \
             ENV (e.g. `github sandbox`), and a wait as `--wait={}`",
            crate::ci::escape_controls(env),
            crate::ci::escape_controls(env)
        )));
    }
    let pipelines = ["github", "azdevops", "local"];
    if pipelines.contains(&env.to_ascii_lowercase().as_str())
        && !pipelines.contains(&pipeline.to_ascii_lowercase().as_str())
    {
        return Err(Failure::usage(format!(
            "`{words}`: `{}` is a pipeline type; the pipeline comes first: `{} {}`",
            crate::ci::escape_controls(env),
            crate::ci::escape_controls(env),
            crate::ci::escape_controls(pipeline)
        )));
    }
    Ok(())
}

/// What long-running commands say while they run: a wait reports who holds the lock and how the
/// wait goes; `run` tells the user it holds the lock before its command starts, and that the lock
/// was lost while it runs.
pub trait Progress: Sync {
    /// An acquire or `wait` is about to wait up to `timeout`; `typical_hold` is how long the
    /// environment's recent holders kept the lock (from its audit log), when known.
    fn waiting(&self, env: &Environment, timeout: Duration, typical_hold: Option<Duration>);
    /// One look at the lock during the wait.
    fn seen(&self, _seen: &WaitSeen<'_>) {}
    /// The wait is over (whatever its end); the outcome is reported next.
    fn done_waiting(&self) {}
    /// The lock is held now (or an acquire ended); the command's own work starts.
    fn acquired(&self, outcome: &Outcome) -> Result<()>;
    /// The lock was lost while `run`'s command runs.
    fn lost(&self, env: &Environment, now_held_by: &str, kill: bool);
}

/// A `Progress` as the locker's `WaitWatch`.
pub struct Watch<'p>(pub &'p dyn Progress);

impl WaitWatch for Watch<'_> {
    fn seen(&self, seen: &WaitSeen<'_>) {
        self.0.seen(seen);
    }
}

/// What every command works with: the settings, the store, where events go, and the clock.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub store: &'a dyn Store,
    pub events: &'a dyn EventSink,
    pub clock: &'a dyn Clock,
    /// Asks whether holders' runs ended; None without a token for this run's CI.
    pub reaper: Option<&'a Reaper<'a>>,
}

impl<'a> Context<'a> {
    #[must_use]
    pub fn new(cfg: &'a Config, store: &'a dyn Store, events: &'a dyn EventSink) -> Self {
        Self {
            cfg,
            store,
            events,
            clock: &SYSTEM,
            reaper: None,
        }
    }

    /// The same context, reaping holders whose runs ended.
    #[must_use]
    pub fn with_reaper(self, reaper: Option<&'a Reaper<'a>>) -> Self {
        Self { reaper, ..self }
    }

    /// The locker with the configured ttls, poll interval and clock.
    #[must_use]
    pub fn locker(&self) -> Locker<'a> {
        Locker::new(self.store, self.cfg.ttl, self.cfg.poll)
            .with_foreign_ttl(self.cfg.foreign_ttl)
            .with_clock(self.clock)
            .with_events(self.events)
            .with_reaper(self.reaper)
            .with_capacity(self.cfg.capacity)
    }
}

/// Opens the configured store. The one place that opens the Azure store.
pub fn open_store(cfg: &Config) -> Result<Box<dyn Store>> {
    match &cfg.store {
        StoreChoice::File(dir) => Ok(Box::new(FileStore::new(dir, &cfg.container))),
        StoreChoice::Azure(settings) => Ok(Box::new(crate::store::azure::open(settings)?)),
    }
}

/// Where the events of a command go: the audit log of `store` (unless `--no-audit`), then the
/// webhooks and Application Insights. Dropping it waits, briefly, for what is still being sent.
#[must_use]
pub fn event_sink<'a>(cfg: &Config, store: &'a dyn Store) -> Box<dyn EventSink + 'a> {
    let audit = audit_sink(store, cfg.audit);
    let sent = cfg.sinks.open();
    if sent.is_empty() {
        return audit;
    }
    let mut sinks = vec![audit];
    sinks.extend(sent.into_iter().map(|s| s as Box<dyn EventSink + 'a>));
    Box::new(Fanout::new(sinks))
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
