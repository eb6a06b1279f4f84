//! `freeze`, `unfreeze`, `freezes`, and the freeze gate every acquire passes first
//! (docs/design.md, Freezes).

use std::time::Duration;

use chrono::DateTime;

use super::context::Context;
use super::outcome::Outcome;
use crate::config::{self, Environment, Pipeline};
use crate::exit::{Failure, Result};
use crate::lock::freeze::{Weekly, When};
use crate::lock::{EventKind, LockEvent, Window};
use crate::log;

/// When a new freeze applies.
#[derive(Debug, Clone)]
pub enum Span {
    For(Duration),
    /// Seconds since the Unix epoch.
    Until(i64),
    Weekly(Weekly),
}

impl Span {
    /// Exactly one of `--for`, `--until`, `--weekly`.
    pub fn parse(for_: Option<&str>, until: Option<&str>, weekly: Option<&str>) -> Result<Self> {
        match (for_, until, weekly) {
            (Some(d), None, None) => config::parse_minutes(d, "--for").map(Self::For),
            (None, Some(t), None) => DateTime::parse_from_rfc3339(t.trim())
                .map(|t| Self::Until(t.timestamp()))
                .map_err(|_| {
                    Failure::usage(format!(
                        "--until `{}` is not a time: give it with its UTC offset, e.g. \
                         2026-03-01T18:00:00+01:00",
                        crate::ci::escape_controls(t)
                    ))
                }),
            (None, None, Some(w)) => Weekly::parse(w).map(Self::Weekly).map_err(Failure::usage),
            _ => Err(Failure::usage(
                "say when the freeze applies with exactly one of --for 2h, --until TIME or \
                 --weekly \"Fri 16:00-Mon 08:00 +02:00\"",
            )),
        }
    }
}

/// Adds a freeze window to `env` and records it.
pub fn freeze(
    ctx: &Context<'_>,
    env: &Environment,
    pipeline: &Pipeline,
    span: &Span,
    reason: &str,
) -> Result<Outcome> {
    let me = ctx.cfg.identity(pipeline);
    let by = format!("{} {}", me.pipeline, me.build_id);
    let locker = ctx.locker();
    let (window, view) = locker.add_freeze(env, &|now| {
        let t = now.timestamp();
        Window {
            when: match span {
                Span::For(d) => When::Once {
                    from: t,
                    until: t.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                },
                Span::Until(until) => When::Once {
                    from: t,
                    until: *until,
                },
                Span::Weekly(w) => When::Weekly(*w),
            },
            reason: reason.to_owned(),
            by: by.clone(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    })?;
    let mut event = LockEvent::of(EventKind::Freeze, env, &me, &ctx.cfg.run, view.now);
    reason.clone_into(&mut event.reason);
    event.other = window.describe();
    ctx.events.record(&event);
    Ok(Outcome::Freezes {
        rows: view
            .freezes
            .windows
            .into_iter()
            .map(|w| (env.to_string(), w.active_at(view.now), w))
            .collect(),
        changed: Some(Change::Frozen(env.clone())),
    })
}

/// Removes every freeze window of `env` and records it.
pub fn unfreeze(
    ctx: &Context<'_>,
    env: &Environment,
    pipeline: &Pipeline,
    reason: &str,
) -> Result<Outcome> {
    let me = ctx.cfg.identity(pipeline);
    let locker = ctx.locker();
    let removed = locker.remove_freezes(env)?;
    if removed.is_empty() {
        log::warn(&format!("{env} has no freeze to remove; nothing to do"));
    } else {
        let mut event = LockEvent::of(
            EventKind::Unfreeze,
            env,
            &me,
            &ctx.cfg.run,
            locker.store_now(),
        );
        reason.clone_into(&mut event.reason);
        event.other = removed
            .iter()
            .map(Window::describe)
            .collect::<Vec<_>>()
            .join("; ");
        ctx.events.record(&event);
    }
    Ok(Outcome::Freezes {
        rows: Vec::new(),
        changed: Some(Change::Unfrozen(env.clone(), removed.len())),
    })
}

/// Every freeze window in the store, and whether it is in force now.
pub fn freezes(ctx: &Context<'_>) -> Result<Outcome> {
    let mut rows = Vec::new();
    for (env, view) in ctx.locker().all_freezes()? {
        for w in view.freezes.windows {
            if !w.over_at(view.now) {
                rows.push((env.clone(), w.active_at(view.now), w));
            }
        }
    }
    Ok(Outcome::Freezes {
        rows,
        changed: None,
    })
}

/// What `freeze` or `unfreeze` changed.
#[derive(Debug, Clone)]
pub enum Change {
    Frozen(Environment),
    /// With how many windows were removed.
    Unfrozen(Environment, usize),
}

/// What the freeze gate decided for an acquire.
#[derive(Debug)]
pub enum Gate {
    /// No freeze in force (or overridden): go on, with what is left of the wait.
    Open(Option<Duration>),
    /// Refused: the outcome to report.
    Closed(Outcome),
}

/// Before an acquire: refuses during a freeze of any of `envs` (a waiter waits it out within
/// its budget); `--override-freeze` goes on and records the override per frozen environment.
pub fn gate(
    ctx: &Context<'_>,
    envs: &[&Environment],
    pipeline: &Pipeline,
    override_reason: Option<&str>,
    wait: Option<Duration>,
) -> Result<Gate> {
    let locker = ctx.locker();
    let me = ctx.cfg.identity(pipeline);
    let started = ctx.clock.elapsed();
    let mut told = false;
    loop {
        let mut frozen = None;
        for env in envs {
            let view = locker.freezes(env)?;
            let Some(window) = view.freezes.active_at(view.now).cloned() else {
                continue;
            };
            if let Some(reason) = override_reason {
                let mut event =
                    LockEvent::of(EventKind::FreezeOverride, env, &me, &ctx.cfg.run, view.now);
                reason.clone_into(&mut event.reason);
                event.other = format!("{} ({})", window.describe(), window.reason);
                ctx.events.record(&event);
                log::warn(&format!(
                    "{env} is frozen ({}: {}); overridden: {reason}",
                    window.describe(),
                    window.reason
                ));
                continue;
            }
            frozen = Some(((*env).clone(), window));
            break;
        }
        let waited = ctx.clock.elapsed().saturating_sub(started);
        let Some((env, window)) = frozen else {
            return Ok(Gate::Open(wait.map(|w| w.saturating_sub(waited))));
        };
        let left = wait.map_or(Duration::ZERO, |w| w.saturating_sub(waited));
        if left.is_zero() {
            return Ok(Gate::Closed(Outcome::Frozen {
                env,
                window,
                timed_out: wait.is_some(),
            }));
        }
        if !told {
            log::note(&format!(
                "{env} is frozen ({}: {}); waiting for the freeze to end",
                window.describe(),
                window.reason
            ));
            told = true;
        }
        if !ctx.clock.sleep(ctx.clock.jitter(ctx.cfg.poll).min(left)) {
            return Ok(Gate::Closed(Outcome::AcquireInterrupted {
                env,
                waited,
                taken: false,
            }));
        }
    }
}
