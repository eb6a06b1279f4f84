//! `history`: the environment's audit log, optionally since a time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::context::Context;
use super::outcome::Outcome;
use crate::config::{self, Environment};
use crate::exit::{Failure, Result};
use crate::lock::AuditLog;

/// Where `history` starts.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    At(DateTime<Utc>),
    Ago(Duration),
}

/// `--since`: an RFC 3339 time, or a duration back from now (`90m`, `2h`, `7d`, minutes).
pub fn parse_since(text: &str) -> Result<Since> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(Since::At(t.with_timezone(&Utc)));
    }
    config::parse_minutes(text, "--since")
        .map(Since::Ago)
        .map_err(|_| {
            Failure::usage(format!(
                "--since `{}` is neither a time (2025-09-27T17:30:00Z) nor a duration (90m, 2h, 7d)",
                crate::ci::escape_controls(text)
            ))
        })
}

pub fn history(ctx: &Context<'_>, env: &Environment, since: Option<Since>) -> Result<Outcome> {
    let (events, now) = AuditLog::new(ctx.store).read(env)?;
    let cutoff = since.map(|s| match s {
        Since::At(t) => t,
        Since::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
    });
    let events = events
        .into_iter()
        .filter(|e| match (cutoff, e.time()) {
            (Some(c), Some(t)) => t >= c,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    Ok(Outcome::History {
        env: env.clone(),
        events,
    })
}
