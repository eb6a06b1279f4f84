//! The queues in `status`, `stats` and `dashboard`, as text and JSON. Everything from the store
//! goes through the platform's escaping.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::ci::Platform;
use crate::commands::dashboard::Delivered;
use crate::commands::outcome::Row;
use crate::commands::stats::StatsOutcome;
use crate::human::human;
use crate::lock::stats::{Counts, Percentiles, Stats, weekday_name};
use crate::lock::waiters::Waiter;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A waiter's holder fields, as `holder_json` names a holder's.
#[must_use]
pub fn waiter_holder_json(w: &Waiter) -> Value {
    json!({
        "pipeline": w.pipeline,
        "build_id": w.build_id,
        "job": w.job,
        "actor": w.actor,
        "run_url": w.run_url,
        "reason": w.reason,
    })
}

fn waiter_json(position: usize, w: &Waiter) -> Value {
    json!({
        "position": position,
        "priority": w.priority.as_str(),
        "holder": waiter_holder_json(w),
        "holder_description": w.describe(),
        "since": w.since.map(time),
    })
}

#[must_use]
pub fn queue_json(waiters: &[Waiter]) -> Value {
    json!(
        waiters
            .iter()
            .enumerate()
            .map(|(i, w)| waiter_json(i + 1, w))
            .collect::<Vec<_>>()
    )
}

/// `status --output json`: `{"environments": [...]}`, each row with its queue, then the free
/// environments that have waiters.
#[must_use]
pub fn status_json(
    rows: Vec<(String, Value)>,
    queues: &BTreeMap<String, Vec<Waiter>>,
    frozen: &BTreeMap<String, Value>,
) -> Value {
    let mut seen = std::collections::BTreeSet::new();
    let mut environments: Vec<Value> = rows
        .into_iter()
        .map(|(env, mut v)| {
            v["queue"] = queue_json(queues.get(&env).map_or(&[][..], Vec::as_slice));
            if let Some(window) = frozen.get(&env) {
                v["freeze"] = window.clone();
            }
            seen.insert(env);
            v
        })
        .collect();
    // Free environments that someone waits for, or that a freeze holds.
    let free: std::collections::BTreeSet<&String> = queues
        .iter()
        .filter(|(_, waiters)| !waiters.is_empty())
        .map(|(env, _)| env)
        .chain(frozen.keys())
        .filter(|env| !seen.contains(*env))
        .collect();
    for env in free {
        let mut v = json!({
            "environment": env,
            "state": "free",
            "queue": queue_json(queues.get(env).map_or(&[][..], Vec::as_slice)),
        });
        if let Some(window) = frozen.get(env) {
            v["freeze"] = window.clone();
        }
        environments.push(v);
    }
    json!({ "environments": environments })
}

/// The freezes in force under the `status` table: `prod is frozen (until …: reason, by …)`.
#[must_use]
pub fn freeze_lines(p: Platform, frozen: &BTreeMap<String, crate::lock::Window>) -> Vec<String> {
    frozen
        .iter()
        .map(|(env, w)| {
            p.escape(&format!(
                "{env} is frozen ({}: {}, by {}): no new acquire until it ends",
                w.describe(),
                w.reason,
                w.by
            ))
        })
        .collect()
}

/// The waiters under the `status` table: `prod  1. github build 7, waiting 2m (since …) — URL`.
#[must_use]
pub fn queue_lines(
    p: Platform,
    locks: &[Row],
    queues: &BTreeMap<String, Vec<Waiter>>,
) -> Vec<String> {
    let now = locks
        .iter()
        .filter_map(|r| r.lock.as_ref().ok().map(|l| l.now))
        .max();
    let mut lines = Vec::new();
    for (env, waiters) in queues.iter().filter(|(_, w)| !w.is_empty()) {
        lines.push(format!("{} waiting for {}:", waiters.len(), p.escape(env)));
        for (i, w) in waiters.iter().enumerate() {
            let mut line = format!("  {}. {}", i + 1, p.escape(&w.describe()));
            if !w.priority.is_normal() {
                line.push_str(&format!(", {} priority", w.priority.as_str()));
            }
            if let Some(since) = w.since {
                match now {
                    Some(now) => line.push_str(&format!(
                        ", waiting {} (since {})",
                        human(now - since),
                        time(since)
                    )),
                    None => line.push_str(&format!(", since {}", time(since))),
                }
            }
            if !w.run_url.is_empty() {
                line.push_str(&format!(" — {}", p.escape(&w.run_url)));
            }
            lines.push(line);
        }
    }
    lines
}

fn counts_json(c: &Counts) -> Value {
    json!({
        "acquisitions": c.acquisitions,
        "blocked": c.blocked,
        "stolen": c.stolen,
        "broken": c.broken,
        "lost": c.lost,
    })
}

fn percentiles_json(p: &Percentiles) -> Value {
    json!({ "p50": p.p50, "p95": p.p95, "max": p.max, "samples": p.samples })
}

fn env_stats_json(s: &Stats) -> Value {
    let mut v = counts_json(&s.counts);
    v["wait_seconds"] = percentiles_json(&s.wait_seconds);
    v["hold_seconds"] = percentiles_json(&s.hold_seconds);
    v["by_pipeline"] = s
        .by_pipeline
        .iter()
        .map(|(k, c)| (k.clone(), counts_json(c)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    v["by_hour_of_week"] = s
        .by_hour_of_week
        .iter()
        .map(|((day, hour), c)| {
            let mut v = counts_json(c);
            v["day"] = json!(weekday_name(*day));
            v["hour"] = json!(hour);
            v
        })
        .collect::<Vec<_>>()
        .into();
    v
}

/// `stats --output json`: `{"since", "environments": {ENV: {...}}}`.
#[must_use]
pub fn stats_json(s: &StatsOutcome) -> Value {
    let environments: serde_json::Map<String, Value> = s
        .environments
        .iter()
        .map(|(env, r)| {
            let v = match r {
                Ok(stats) => env_stats_json(stats),
                Err(e) => json!({ "problem": e }),
            };
            (env.clone(), v)
        })
        .collect();
    json!({ "since": time(s.since), "environments": environments })
}

fn secs(s: Option<u64>) -> String {
    s.map_or_else(
        || "-".into(),
        |s| {
            human(chrono::Duration::seconds(
                i64::try_from(s).unwrap_or(i64::MAX),
            ))
        },
    )
}

fn triple(p: &Percentiles) -> String {
    format!("{}/{}/{}", secs(p.p50), secs(p.p95), secs(p.max))
}

/// `stats` as text: a table of counts and percentiles, then each environment's pipelines and
/// its busiest hours of the week.
#[must_use]
pub fn stats_lines(p: Platform, s: &StatsOutcome) -> Vec<String> {
    if s.environments.is_empty() {
        return vec!["No audit logs in the store.".into()];
    }
    let header = [
        "ENVIRONMENT",
        "ACQUIRED",
        "BLOCKED",
        "STOLEN",
        "BROKEN",
        "LOST",
        "WAIT P50/P95/MAX",
        "HOLD P50/P95/MAX",
    ]
    .map(String::from);
    let mut rows = vec![header];
    let mut notes = Vec::new();
    for (env, r) in &s.environments {
        let env = p.escape(env);
        match r {
            Ok(st) => {
                let c = st.counts;
                rows.push([
                    env.clone(),
                    c.acquisitions.to_string(),
                    c.blocked.to_string(),
                    c.stolen.to_string(),
                    c.broken.to_string(),
                    c.lost.to_string(),
                    triple(&st.wait_seconds),
                    triple(&st.hold_seconds),
                ]);
                if !st.by_pipeline.is_empty() {
                    let by: Vec<String> = st
                        .by_pipeline
                        .iter()
                        .map(|(k, c)| {
                            format!(
                                "{} {} acquired, {} blocked",
                                p.escape(k),
                                c.acquisitions,
                                c.blocked
                            )
                        })
                        .collect();
                    notes.push(format!("{env} by pipeline: {}", by.join("; ")));
                }
                let mut busiest: Vec<_> = st
                    .by_hour_of_week
                    .iter()
                    .filter(|(_, c)| c.blocked > 0)
                    .collect();
                busiest.sort_by_key(|(slot, c)| (std::cmp::Reverse(c.blocked), **slot));
                if !busiest.is_empty() {
                    let hours: Vec<String> = busiest
                        .iter()
                        .take(3)
                        .map(|((day, hour), c)| {
                            format!(
                                "{} {hour:02}:00 ({} blocked)",
                                weekday_name(*day),
                                c.blocked
                            )
                        })
                        .collect();
                    notes.push(format!("{env} collides most (UTC): {}", hours.join(", ")));
                }
            }
            Err(e) => notes.push(format!("{env}: {}", p.escape(e))),
        }
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut lines: Vec<String> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.push(format!("Since {} (the store's clock).", time(s.since)));
    lines.extend(notes);
    lines
}

#[must_use]
pub fn dashboard_json(d: &Delivered) -> Value {
    json!({
        "environments": d.environments,
        "written": d.written.as_ref().map(|p| p.display().to_string()),
        "published": d.published,
    })
}

#[must_use]
pub fn dashboard_lines(d: &Delivered) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(path) = &d.written {
        lines.push(format!(
            "Wrote the dashboard of {} environment(s) to {}",
            d.environments,
            path.display()
        ));
    }
    if let Some(url) = &d.published {
        lines.push(format!(
            "Published the dashboard of {} environment(s) to {url}; it is served at the account's \
             static website endpoint under /deploy-lock/ (az storage account show --name ACCOUNT \
             --query primaryEndpoints.web)",
            d.environments
        ));
    }
    lines
}
