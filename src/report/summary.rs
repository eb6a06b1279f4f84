//! The action's and task's step results: the job summary, and how a step's result reaches the
//! platform (GitHub reads the exit code; Azure DevOps reads `task.complete`).

use std::time::Duration;

use super::progress::ordinal;
use super::text;
use crate::ci::{Platform, azdo};
use crate::commands::Outcome;
use crate::commands::outcome::{Handback, WaitEnd};
use crate::config::{Config, Environment};
use crate::exit::{ExitCode, Result};
use crate::human::{human, human_std};
use crate::lock::{Holder, LockView};
use crate::log;

/// A table of the summary: `| name | value |` rows, values already made safe.
struct Table(String);

impl Table {
    fn new(environment: &Environment) -> Self {
        // The environment name is validated.
        Self(format!(
            "### Deployment lock: `{environment}`\n\n| | |\n|---|---|\n"
        ))
    }

    fn row(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.0.push_str(&format!("| {name} | {value} |\n"));
        }
    }
}

/// A link to a run, when the address is a plain https URL (it comes from the store); else the
/// text and the address as text.
fn linked(platform: Platform, text: &str, url: &str) -> String {
    let plain = url.starts_with("https://")
        && url
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?=&%+".contains(&b));
    let text = platform.markdown_cell(text);
    match url {
        "" => text,
        url if plain => format!("[{text}]({url})"),
        url => format!("{text} — {}", platform.markdown_cell(url)),
    }
}

/// The holder's rows: who with a link to its run, why, its fence.
fn holder_rows(table: &mut Table, platform: Platform, lock: &LockView) {
    let holder = &lock.holder;
    table.row(
        "Holder",
        &linked(platform, &holder.describe(), text::run_url(holder)),
    );
    table.row("Held for", &human(lock.age));
    if let Some(r) = holder.record() {
        table.row("Reason", &platform.markdown_cell(&r.reason));
        table.row("Fence", &r.fence.map(|f| f.to_string()).unwrap_or_default());
    }
}

/// The job summary of the main step: outcome, holder with a link to its run, reason, fence,
/// ttl, waited time and our place in the queue as last seen.
pub fn step_summary(
    cfg: &Config,
    environment: &Environment,
    outcome: &Outcome,
    wait: Option<Duration>,
    place: Option<(usize, usize)>,
) -> Result<()> {
    let p = cfg.platform;
    let mut t = Table::new(environment);
    let waited = |waited: Duration| match wait {
        Some(budget) => format!("{} of {}", human_std(waited), human_std(budget)),
        None => format!("{} (no wait: set `{}`)", human_std(waited), wait_input(p)),
    };
    match outcome {
        Outcome::Acquired(taken) => {
            let r = &taken.record;
            t.row(
                "Outcome",
                if taken.reentrant {
                    "already held by this job"
                } else {
                    "acquired"
                },
            );
            t.row(
                "Holder",
                &linked(p, &Holder::Current(r.clone()).describe(), &r.run_url),
            );
            t.row("Reason", &p.markdown_cell(&r.reason));
            t.row("Fence", &r.fence.map(|f| f.to_string()).unwrap_or_default());
            t.row("Lock ttl", &human_std(cfg.ttl));
            t.row("Waited", &waited(taken.waited));
        }
        Outcome::Blocked(b) => {
            t.row(
                "Outcome",
                &format!(
                    "not acquired: {} (exit {})",
                    if b.timed_out {
                        "timed out"
                    } else {
                        "held by another run"
                    },
                    outcome.exit_code()
                ),
            );
            holder_rows(&mut t, p, &b.lock);
            t.row("Waited", &waited(b.waited));
        }
        Outcome::Checked { state, lock, .. } => {
            t.row("Outcome", &format!("checked: {}", state.as_str()));
            if let Some(lock) = lock {
                holder_rows(&mut t, p, lock);
            }
        }
        Outcome::Waited(w) => {
            t.row("Outcome", &format!("waited (exit {})", outcome.exit_code()));
            if let WaitEnd::TimedOut(lock) = &w.end {
                holder_rows(&mut t, p, lock);
            }
            t.row("Waited", &waited(w.waited));
        }
        other => t.row("Outcome", &format!("exit {}", other.exit_code())),
    }
    if let Some((at, of)) = place {
        t.row("Queue", &format!("{} of {of} when last seen", ordinal(at)));
    }
    p.summary(&t.0, &format!("Deployment lock {environment}"))?;
    Ok(())
}

/// The post step's summary: how long the lock was held, and whether the release succeeded.
pub fn post_summary(
    platform: Platform,
    environment: &Environment,
    handback: &Handback,
) -> Result<()> {
    let mut t = Table::new(environment);
    match handback {
        Handback::Released(lock) => {
            t.row("Release", "released");
            t.row("Held for", &human(lock.age));
        }
        Handback::Absent => t.row("Release", "already gone (released, broken or expired)"),
        Handback::HeldByOther(lock) => {
            t.row("Release", "not ours any more: left alone");
            holder_rows(&mut t, platform, lock);
        }
        Handback::Failed(e) => t.row(
            "Release",
            &format!(
                "failed: {} (the lock expires after its ttl)",
                platform.markdown_cell(e)
            ),
        ),
    }
    platform.summary(&t.0, &format!("Deployment lock {environment} released"))?;
    Ok(())
}

/// The step input that sets the wait.
fn wait_input(platform: Platform) -> &'static str {
    match platform {
        Platform::AzureDevOps => "waitMinutes",
        _ => "wait-minutes",
    }
}

/// Maps a step's result to the platform's convention and returns the process exit code.
/// GitHub fails a step by its exit code; Azure DevOps reads a non-zero exit as an
/// infrastructure failure, so there the result is reported with `task.complete` and the process
/// exits 0. A failed post step is a warning: the lock then expires after its ttl.
pub fn finish(platform: Platform, post: bool, result: Result<i32>) -> i32 {
    let (code, message) = match result {
        Ok(code) => (code, String::new()),
        Err(failure) => {
            let text = failure.to_string();
            if post {
                log::warn(&format!("release in the post step failed: {text}"));
                (0, String::new())
            } else {
                (super::text::print_error(platform, &failure), text)
            }
        }
    };
    if platform != Platform::AzureDevOps {
        return code;
    }
    let (result, msg) = match code {
        0 => ("Succeeded", "deploy-lock finished".to_owned()),
        c if c == ExitCode::Held.code() => (
            "Failed",
            "the deployment lock is held by another run".into(),
        ),
        c if c == ExitCode::TimedOut.code() => {
            ("Failed", "timed out waiting for the deployment lock".into())
        }
        c if c == ExitCode::Interrupted.code() => (
            "Failed",
            "cancelled while waiting for the deployment lock".into(),
        ),
        _ if !message.is_empty() => ("Failed", message),
        _ => ("Failed", format!("deploy-lock exited with {code}")),
    };
    println!("{}", azdo::complete(result, &msg));
    0
}
