//! Outcomes as text for people. Everything that came from the store or the environment goes
//! through the platform's escaping before it is printed.

use std::time::Duration;

use crate::ci::Platform;
use crate::commands::outcome::{Reaping, Row};
use crate::exit::Failure;
use crate::human::{human, human_std};
use crate::lock::waiters::Waiter;
use crate::lock::{Holder, LockEvent, LockView};

/// The holder's run link, where it has one.
#[must_use]
pub fn run_url(holder: &Holder) -> &str {
    holder.record().map_or("", |r| r.run_url.as_str())
}

/// The lines `check` prints about a held lock.
#[must_use]
pub fn lock_lines(platform: Platform, lock: &LockView) -> Vec<String> {
    let e = |s: &str| platform.escape(s);
    let mut lines = Vec::new();
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            lines.push(format!("  {name:<10} {value}"));
        }
    };
    field("holder", e(&lock.holder.describe()));
    field("pipeline", e(lock.holder.pipeline()));
    field("build id", e(lock.holder.build_id()));
    field("age", human(lock.age));
    let stale = if lock.is_stale() {
        format!(
            "stale for {} (ttl {}): the next acquire takes it over",
            human(-lock.expires_in),
            human(lock.ttl)
        )
    } else {
        format!("{} (ttl {})", human(lock.expires_in), human(lock.ttl))
    };
    field(if lock.is_stale() { "stale" } else { "stale in" }, stale);
    match &lock.holder {
        Holder::Current(r) => {
            field("run", e(&r.run_url));
            field("reason", e(&r.reason));
            field("since", e(&r.acquired_at));
            field("repo", e(&r.repository));
            field("ref", e(&r.git_ref));
            field("commit", e(&r.commit));
            field("fence", r.fence.map(|f| f.to_string()).unwrap_or_default());
        }
        Holder::Seed { timestamp, .. } => {
            field("since", e(timestamp));
            field("format", "deployment-coordinator.sh record".into());
        }
        Holder::Unknown { why } => field("problem", e(why)),
    }
    lines
}

/// "sandbox is locked by github build 42 … — https://…": the line an annotation shows. `step`:
/// the advice names the action's or task's own input instead of the command line's option.
#[must_use]
pub fn blocked_message(
    platform: Platform,
    step: bool,
    env: &str,
    lock: &LockView,
    timed_out: bool,
    waited: Duration,
) -> String {
    let mut msg = if timed_out {
        format!(
            "gave up after waiting {} for {env}: still locked by {}",
            human_std(waited),
            lock.holder.describe()
        )
    } else {
        format!(
            "{env} is locked by {} (held {}, stale in {})",
            lock.holder.describe(),
            human(lock.age),
            human(lock.expires_in)
        )
    };
    let url = run_url(&lock.holder);
    if !url.is_empty() {
        msg.push_str(&format!(" — {url}"));
    }
    if let Holder::Unknown { why } = &lock.holder {
        msg.push_str(&format!(
            "; the lock blob is not readable ({why}): inspect it, and if nobody holds it, \
             `deploy-lock force-break {env} --reason ...`"
        ));
    }
    msg.push_str(&wait_advice(platform, step, env, timed_out));
    msg
}

/// Why an acquire left the queue without the lock: a newer run with its supersede key joined.
#[must_use]
pub fn superseded_message(env: &str, by: &Waiter, waited: Duration) -> String {
    let link = match by.run_url.as_str() {
        "" => String::new(),
        url => format!(" ({url})"),
    };
    format!(
        "superseded by {}{link}: a newer run with the same supersede key is waiting for {env}, \
         so this one left the queue after {} instead of deploying an older commit after it",
        by.describe(),
        human_std(waited)
    )
}

/// How to wait (longer): the step's own input in the action and the task, else the option.
#[must_use]
pub fn wait_advice(platform: Platform, step: bool, env: &str, timed_out: bool) -> String {
    let input = match platform {
        Platform::GitHub => "wait-minutes",
        Platform::AzureDevOps => "waitMinutes",
        Platform::Local => "",
    };
    match (step && !input.is_empty(), timed_out) {
        (true, false) => format!(". To wait for it, set the step's `{input}` input"),
        (true, true) => format!(". To wait longer, raise the step's `{input}` input"),
        (false, false) => format!(
            ". Wait for it with `deploy-lock acquire {env} --wait`, or see `deploy-lock check {env}`"
        ),
        (false, true) => String::new(),
    }
}

/// `status` as a table: a header, then one row per environment, in columns as wide as their
/// widest cell.
#[must_use]
pub fn status_table(platform: Platform, locks: &[Row]) -> Vec<String> {
    let p = platform;
    let rows: Vec<[String; 5]> = locks
        .iter()
        .map(|row| {
            let mut name = if row.valid_name {
                row.env.clone()
            } else {
                format!("(invalid name) {}", p.escape(&row.env))
            };
            if row.slot > 1 {
                name.push_str(&format!(" (slot {})", row.slot));
            }
            let (holder, age, run) = match &row.lock {
                Ok(l) => (
                    p.escape(&l.holder.describe()),
                    human(l.age),
                    p.escape(run_url(&l.holder)),
                ),
                Err(e) => (p.escape(&e.to_string()), String::new(), String::new()),
            };
            [name, row.state().as_str().to_owned(), holder, age, run]
        })
        .collect();
    let header = ["ENVIRONMENT", "STATE", "HOLDER", "AGE", "RUN"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut lines = vec![line(&header.map(String::from))];
    lines.extend(rows.iter().map(|row| line(row)));
    lines
}

/// One line of `history`.
#[must_use]
pub fn history_line(e: &LockEvent) -> String {
    let mut details = Vec::new();
    if let Some(w) = e.waited_seconds.filter(|w| *w > 0) {
        details.push(format!(
            "waited {}",
            human(chrono::Duration::seconds(
                i64::try_from(w).unwrap_or(i64::MAX)
            ))
        ));
    }
    if let Some(h) = e.held_seconds {
        details.push(format!("held {}", human(chrono::Duration::seconds(h))));
    }
    if let Some(f) = e.fence {
        details.push(format!("fence {f}"));
    }
    if !e.priority.is_normal() {
        details.push(format!("priority {}", e.priority.as_str()));
    }
    if !e.other.is_empty() {
        details.push(format!("{} {}", e.kind.other_party(), e.other));
    }
    if !e.conclusion.is_empty() {
        details.push(format!("its run ended: {}", e.conclusion));
    }
    if !e.reason.is_empty() {
        details.push(format!("reason: {}", e.reason));
    }
    format!(
        "{:<24}  {:<12}  {:<30}  {}",
        e.at,
        e.kind.as_str(),
        e.who(),
        details.join(", ")
    )
    .trim_end()
    .to_owned()
}

/// Prints an error that ended a command, and returns the exit code it maps to.
pub fn print_error(platform: Platform, failure: &Failure) -> i32 {
    eprintln!(
        "{}",
        platform.error_line("deploy-lock", &failure.to_string())
    );
    failure.code.code()
}

/// What `reap` did, one line per removal and a total.
#[must_use]
pub fn reaped_lines(r: &Reaping) -> Vec<String> {
    let mut lines: Vec<String> = r
        .removed
        .iter()
        .map(|item| match &item.lock {
            Some(lock) => format!(
                "Reaped the lock on {}: {}'s run ended ({}).",
                item.env,
                lock.holder.describe(),
                item.conclusion
            ),
            None => format!(
                "Removed a queue ticket on {}: {} run {} ended ({}).",
                item.env, item.run.system, item.run.run_id, item.conclusion
            ),
        })
        .collect();
    lines.push(if r.removed.is_empty() {
        format!(
            "Nothing to reap in {} environment(s): no lock or queue ticket of a run that ended.",
            r.checked
        )
    } else {
        format!(
            "Reaped {} lock(s) and queue ticket(s) in {} environment(s).",
            r.removed.len(),
            r.checked
        )
    });
    lines
}
