//! `freeze`, `unfreeze`, `freezes`, and the freeze gate of every acquire (docs/design.md,
//! Freezes).

use std::cell::RefCell;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::context::Context;
use super::outcome::Outcome;
use crate::config::{self, Environment, Pipeline};
use crate::exit::{Failure, Result};
use crate::lock::freeze::{FreezeGate, Weekly, When};
use crate::lock::{EventKind, Identity, LockEvent, Window};
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
    if removed.windows.is_empty() && !removed.unreadable {
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
        event.other = if removed.unreadable {
            "an unreadable freeze record".to_owned()
        } else {
            removed
                .windows
                .iter()
                .map(Window::describe)
                .collect::<Vec<_>>()
                .join("; ")
        };
        ctx.events.record(&event);
    }
    let change = if removed.unreadable {
        Change::Cleared(env.clone())
    } else {
        Change::Unfrozen(env.clone(), removed.windows.len())
    };
    Ok(Outcome::Freezes {
        rows: Vec::new(),
        changed: Some(change),
    })
}

/// Every freeze window in the store, and whether it is in force now.
pub fn freezes(ctx: &Context<'_>) -> Result<Outcome> {
    let mut rows = Vec::new();
    for (env, view) in ctx.locker().all_freezes()? {
        // One unreadable record does not hide the others; the warning says how to clear it.
        let view = match view {
            Ok(view) => view,
            Err(e) => {
                log::warn(&e.to_string());
                continue;
            }
        };
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
    /// A freeze record that could not be read was removed.
    Cleared(Environment),
}

/// The freeze gate of one acquire (the lock layer reads the windows right before it takes a
/// lock): `--override-freeze` goes on through a window in force and records that, once per
/// environment; without it a window stops the acquire, or makes it wait.
pub struct Overrides<'c> {
    ctx: &'c Context<'c>,
    me: Identity,
    /// The recorded reason, with `--override-freeze`.
    reason: Option<&'c str>,
    recorded: RefCell<Vec<String>>,
}

impl<'c> Overrides<'c> {
    #[must_use]
    pub fn new(ctx: &'c Context<'c>, pipeline: &Pipeline, reason: Option<&'c str>) -> Self {
        Self {
            ctx,
            me: ctx.cfg.identity(pipeline),
            reason,
            recorded: RefCell::new(Vec::new()),
        }
    }
}

impl FreezeGate for Overrides<'_> {
    fn overrides(&self, environment: &str, window: &Window, now: DateTime<Utc>) -> bool {
        let Some(reason) = self.reason else {
            return false;
        };
        let mut recorded = self.recorded.borrow_mut();
        if !recorded.iter().any(|e| e == environment) {
            let mut event = LockEvent::of(
                EventKind::FreezeOverride,
                environment,
                &self.me,
                &self.ctx.cfg.run,
                now,
            );
            reason.clone_into(&mut event.reason);
            event.other = format!("{} ({})", window.describe(), window.reason);
            self.ctx.events.record(&event);
            log::warn(&format!(
                "{environment} is frozen ({}: {}); overridden: {reason}",
                window.describe(),
                window.reason
            ));
            recorded.push(environment.to_owned());
        }
        true
    }
}
