//! What a notification says, for people: one headline per event and the details beside it.
//! The words come from the store and the environment, so each format escapes them for where they
//! land (`webhook.rs`); here they are plain text.

use std::time::Duration;

use crate::human::human_std;
use crate::lock::{EventKind, LockEvent};

/// `seconds` as people read them.
fn took(seconds: Option<u64>) -> Option<String> {
    seconds.map(|s| human_std(Duration::from_secs(s)))
}

fn held(event: &LockEvent) -> Option<String> {
    took(event.held_seconds.map(|s| s.max(0).unsigned_abs()))
}

/// One line: what happened to which environment, and who did it.
#[must_use]
pub fn headline(event: &LockEvent) -> String {
    let env = &event.environment;
    let who = event.who();
    let other = if event.other.is_empty() {
        "another run"
    } else {
        &event.other
    };
    let after = |d: Option<String>| d.map(|d| format!(" after {d}")).unwrap_or_default();
    match &event.kind {
        EventKind::Acquire => format!("{env} is locked by {who}"),
        EventKind::Steal => {
            format!("{env} is locked by {who}, taken over from a stale lock of {other}")
        }
        EventKind::Release => format!("{env} is free: released by {who}{}", after(held(event))),
        EventKind::Blocked => format!("{who} could not lock {env}: held by {other}"),
        EventKind::TimedOut => format!(
            "{who} gave up waiting for {env}{}: held by {other}",
            after(took(event.waited_seconds))
        ),
        EventKind::Waiting => match event.position {
            Some(p) => {
                format!("{who} is waiting for {env} (number {p} in the queue), held by {other}")
            }
            None => format!("{who} is waiting for {env}, held by {other}"),
        },
        EventKind::ForceBreak => format!("{env}: the lock of {other} was broken by {who}"),
        EventKind::Lost => format!("{who} lost the lock on {env}, now held by {other}"),
        EventKind::RenewFailed => format!("{who} could not renew the lock on {env}"),
        EventKind::Free => match took(event.waited_seconds) {
            Some(w) => format!("{env} is free ({who} waited {w})"),
            None => format!("{env} is free"),
        },
        EventKind::Stuck => format!(
            "{env} has been locked by {who} for {}",
            held(event).unwrap_or_else(|| "a long time".to_owned())
        ),
        EventKind::Freeze => format!("{env} is frozen by {who}"),
        EventKind::Unfreeze => format!("{env} is no longer frozen: unfrozen by {who}"),
        EventKind::FreezeOverride => {
            format!("{env} is locked by {who} during a freeze (override)")
        }
        EventKind::Reaped => match event.conclusion.as_str() {
            "" => format!("{env}: {who} removed the lock of {other}, whose run ended"),
            how => format!("{env}: {who} removed the lock of {other}, whose run ended ({how})"),
        },
        EventKind::Superseded => format!(
            "{who} stopped waiting for {env}{}: superseded by {other}",
            after(took(event.waited_seconds))
        ),
        EventKind::Other(name) => format!("{env}: {name} ({who})"),
    }
}

/// The details worth a glance, as (name, value) pairs, empty ones left out. The run link is not
/// among them: each format shows it as a link.
#[must_use]
pub fn facts(event: &LockEvent) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("Environment", event.environment.clone()),
        ("By", event.who()),
    ];
    if !event.actor.is_empty() {
        out.push(("Actor", event.actor.clone()));
    }
    if !event.repository.is_empty() {
        out.push(("Repository", event.repository.clone()));
    }
    if !event.reason.is_empty() {
        out.push(("Reason", event.reason.clone()));
    }
    if let Some(waited) = took(event.waited_seconds).filter(|_| event.waited_seconds != Some(0)) {
        out.push(("Waited", waited));
    }
    if let Some(held) = held(event) {
        out.push(("Held", held));
    }
    if !event.priority.is_normal() {
        out.push(("Priority", event.priority.as_str().to_owned()));
    }
    if let Some(fence) = event.fence {
        out.push(("Fence", fence.to_string()));
    }
    out
}

/// The run's link, when it is a web address (the store and the environment are not trusted to
/// give a safe one).
#[must_use]
pub fn run_link(event: &LockEvent) -> Option<&str> {
    let url = event.run_url.as_str();
    (url.starts_with("https://") && !url.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then_some(url)
}
