//! `stats`: counts and percentiles from the audit logs of many environments.

use chrono::{DateTime, Utc};

use super::context::{Context, open_store};
use super::history::Since;
use super::outcome::Outcome;
use crate::config::Environment;
use crate::exit::Result;
use crate::lock::audit::logged_environments;
use crate::lock::logs::{LogRead, read_logs};
use crate::lock::stats::{Stats, stats};
use crate::store::Store;

/// The statistics of each environment asked for, or why its log could not be read.
#[derive(Debug)]
pub struct StatsOutcome {
    /// The start of the window, by the store's clock.
    pub since: DateTime<Utc>,
    pub environments: Vec<(String, std::result::Result<Stats, String>)>,
}

/// Longest look back in days: ten years of audit log.
const MAX_WINDOW_DAYS: f64 = 3660.0;

/// `--since` of `stats` and `dashboard`: what `history` takes, and windows longer than the week
/// other durations stop at, in days (`30d`, `365d`).
pub fn parse_window(text: &str) -> Result<Since> {
    let days = text
        .trim()
        .strip_suffix('d')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && (0.0..=MAX_WINDOW_DAYS).contains(d));
    match days {
        Some(d) => Ok(Since::Ago(std::time::Duration::from_secs_f64(d * 86_400.0))),
        None => super::history::parse_since(text),
    }
}

/// `--since` as a time, by the store's clock `now`.
#[must_use]
pub fn window_start(since: Since, now: DateTime<Utc>) -> DateTime<Utc> {
    match since {
        Since::At(t) => t,
        Since::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
    }
}

/// Reads the logs of `environments`, or of every environment with a log when none is given: one
/// listing, then one read per environment over a small pool of readers, each with its own store.
pub fn read_all(ctx: &Context<'_>, environments: &[Environment]) -> Result<Vec<(String, LogRead)>> {
    let names: Vec<String> = if environments.is_empty() {
        logged_environments(ctx.store)?
    } else {
        environments.iter().map(|e| e.as_str().to_owned()).collect()
    };
    let cfg = ctx.cfg;
    let open = || -> anyhow::Result<Box<dyn Store>> {
        open_store(cfg).map_err(|f| anyhow::anyhow!("{f}"))
    };
    Ok(read_logs(&open, &names))
}

/// The store's time as the logs' answers carry it; the local clock only when nothing was read.
pub(super) fn store_now(logs: &[(String, LogRead)]) -> DateTime<Utc> {
    logs.iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|(_, now)| *now))
        .max()
        .unwrap_or_else(Utc::now)
}

pub fn stats_command(
    ctx: &Context<'_>,
    environments: &[Environment],
    since: Since,
) -> Result<Outcome> {
    let logs = read_all(ctx, environments)?;
    let start = window_start(since, store_now(&logs));
    let environments = logs
        .into_iter()
        .map(|(env, read)| {
            let s = read
                .map(|(events, _)| stats(&events, Some(start)))
                .map_err(|e| format!("{e:#}"));
            (env, s)
        })
        .collect();
    Ok(Outcome::Stats(StatsOutcome {
        since: start,
        environments,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_reach_back_further_than_a_week() {
        let days = |t: &str| match parse_window(t) {
            Ok(Since::Ago(d)) => d.as_secs() / 86_400,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(days("30d"), 30);
        assert_eq!(days(" 365d "), 365);
        assert_eq!(days("2d"), 2);
        assert!(matches!(parse_window("12h"), Ok(Since::Ago(d)) if d.as_secs() == 43_200));
        assert!(matches!(
            parse_window("2025-09-27T17:30:00Z"),
            Ok(Since::At(_))
        ));
        assert!(parse_window("99999d").is_err());
        assert!(parse_window("-1d").is_err());
        assert!(parse_window("yesterday").is_err());
    }
}
