//! Lock sets on the command line: `eu,us` wherever a command takes ENV. `acquire` takes every
//! member or none (`lock::set`); `release`, `check` and `wait` act on each member in turn. The
//! outcome is one per member, in name order.

use std::time::Duration;

use super::acquire::{Taken, confirm};
use super::context::{Context, Progress, Target};
use super::freeze::Overrides;
use super::outcome::{Blocked, Outcome};
use crate::config::{self, Config, Environment, Pipeline};
use crate::exit::{Failure, Result};
use crate::human::human_std;
use crate::lock::protocol::{Ownership, ownership};
use crate::lock::{EventKind, Holding, LockEvent, Priority, SetAcquired};
use crate::log;

/// Several environments at once, validated, in name order and each once.
#[derive(Debug, Clone)]
pub struct Targets {
    pub pipeline: Pipeline,
    pub envs: Vec<Environment>,
}

/// What a set acquire asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub targets: Targets,
    pub wait: Option<Duration>,
    pub reason: String,
    pub override_freeze: bool,
}

/// `eu,us` → the members, validated; None for a single environment.
pub fn members(word: &str) -> Result<Option<Vec<Environment>>> {
    if !word.contains(',') {
        return Ok(None);
    }
    let mut envs = word
        .split(',')
        .map(|w| {
            let w = w.trim();
            if w.is_empty() {
                return Err(Failure::usage(format!(
                    "`{}` has an empty member: write environments separated by single commas, \
                     e.g. `eu,us`",
                    crate::ci::escape_controls(word)
                )));
            }
            config::validate_environment(w)
        })
        .collect::<Result<Vec<_>>>()?;
    envs.sort();
    envs.dedup();
    Ok(Some(envs))
}

impl Targets {
    /// `[PIPELINE] ENV,ENV…` → the set; None when ENV names one environment.
    pub fn parse(words: &[String], cfg: &Config) -> Result<Option<Self>> {
        let (pipeline, env) = match words {
            [env] => (cfg.default_pipeline.clone(), env),
            [pipeline, env] => (config::validate_pipeline(pipeline)?, env),
            _ => return Ok(None),
        };
        Ok(members(env)?.map(|envs| Self { pipeline, envs }))
    }

    fn each(&self) -> impl Iterator<Item = Target> + '_ {
        self.envs.iter().map(|env| Target {
            pipeline: self.pipeline.clone(),
            env: env.clone(),
        })
    }
}

/// Takes every member's lock or none, fences and records each member.
pub fn acquire(ctx: &Context<'_>, request: &Request, progress: &dyn Progress) -> Result<Outcome> {
    let Request {
        targets: Targets { pipeline, envs },
        wait,
        reason,
        override_freeze,
    } = request;
    let cfg = ctx.cfg;
    config::validate_reason(reason)?;
    if cfg.priority == Priority::High || cfg.supersede.is_some() {
        return Err(Failure::usage(
            "--priority high and --supersede order the queue of one environment; a lock set \
             waits for all its members without a queue. Drop one of them, or take one \
             environment",
        ));
    }
    let me = cfg.identity(pipeline);
    let holding = Holding::new(&cfg.run, reason);
    let Some(first) = envs.first() else {
        return Err(Failure::usage("give at least one environment"));
    };
    let freezes = Overrides::new(ctx, pipeline, override_freeze.then_some(reason.as_str()));
    let locker = ctx.locker().with_freeze_gate(&freezes);
    if let Some(wait) = wait {
        progress.waiting(first, *wait, None);
    }
    let names: Vec<&str> = envs.iter().map(Environment::as_str).collect();
    match locker.acquire_set(&names, &me, &holding, *wait)? {
        SetAcquired::Taken { members, waited } => {
            if ctx.clock.cancelled() {
                locker.give_back(&members, &me);
                log::warn(&format!(
                    "interrupted: the locks on {} were given back",
                    names.join(",")
                ));
                return Ok(interrupted(first, waited, true));
            }
            let mut outcomes = Vec::with_capacity(members.len());
            for (member, env) in members.iter().zip(envs) {
                let taken = Taken {
                    env,
                    pipeline,
                    me: &me,
                    etag: &member.etag,
                    reentrant: member.reentrant,
                    stolen_from: member.stolen_from.clone(),
                    // Members are taken fail-fast, and only a waiter asks whether a run ended.
                    reaped: None,
                    waited,
                    releases_itself: false,
                };
                match confirm(ctx, &taken, member.record.clone()) {
                    Ok(a) => outcomes.push(Outcome::Acquired(a)),
                    Err(e) => {
                        // A member lost before it was confirmed: the set is not held.
                        locker.give_back(&members, &me);
                        return Err(e);
                    }
                }
            }
            Ok(Outcome::Each(outcomes))
        }
        SetAcquired::Blocked {
            environment,
            lock,
            waited,
            timed_out,
        } => {
            let env = config::validate_environment(&environment)?;
            let kind = if timed_out {
                EventKind::TimedOut
            } else {
                EventKind::Blocked
            };
            let mut event = LockEvent::of(kind, &env, &me, &cfg.run, locker.store_now());
            reason.clone_into(&mut event.reason);
            event.waited_seconds = Some(waited.as_secs());
            event.other = lock.holder.describe();
            ctx.events.record(&event);
            let same_user_and_host = (ownership(&lock.holder, &me) == Ownership::SameUserAndHost)
                .then(|| (cfg.run.actor.clone(), cfg.run.host.clone()));
            Ok(Outcome::Blocked(Blocked {
                env,
                lock,
                waited,
                timed_out,
                same_user_and_host,
            }))
        }
        SetAcquired::Frozen {
            environment,
            window,
            timed_out,
            ..
        } => Ok(Outcome::Frozen {
            env: config::validate_environment(&environment)?,
            window: *window,
            timed_out,
        }),
        SetAcquired::Cancelled { waited } => {
            log::warn(&format!(
                "interrupted after waiting {}; no lock on {} was taken",
                human_std(waited),
                names.join(",")
            ));
            Ok(interrupted(first, waited, false))
        }
    }
}

fn interrupted(first: &Environment, waited: Duration, taken: bool) -> Outcome {
    Outcome::AcquireInterrupted {
        env: first.clone(),
        waited,
        taken,
    }
}

/// Releases each member's lock.
pub fn release(ctx: &Context<'_>, targets: &Targets) -> Result<Outcome> {
    targets
        .each()
        .map(|t| super::release::release(ctx, &t))
        .collect::<Result<Vec<_>>>()
        .map(Outcome::Each)
}

/// Checks each member's lock.
pub fn check(ctx: &Context<'_>, targets: &Targets) -> Result<Outcome> {
    targets
        .each()
        .map(|t| super::check::check(ctx, &t))
        .collect::<Result<Vec<_>>>()
        .map(Outcome::Each)
}

/// Waits until every member is free, within one budget for the whole set; stops at the first
/// member that is still held when the budget runs out.
pub fn wait(
    ctx: &Context<'_>,
    envs: &[Environment],
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let started = ctx.clock.elapsed();
    let mut outcomes = Vec::with_capacity(envs.len());
    for env in envs {
        let left = timeout.saturating_sub(ctx.clock.elapsed().saturating_sub(started));
        let outcome = super::wait::wait(ctx, env, left, progress)?;
        let done = outcome.exit_code() != 0;
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    Ok(Outcome::Each(outcomes))
}
