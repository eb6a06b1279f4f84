//! How results look: text for people, JSON for scripts. Everything that came from the store or
//! the environment goes through the platform's escaping before it is printed.

use serde_json::{Value, json};

use crate::ci::Platform;
use crate::human::human;
use crate::lock::{Holder, LockView};

/// The holder's run link, where it has one.
#[must_use]
pub fn run_url(holder: &Holder) -> &str {
    holder.record().map_or("", |r| r.run_url.as_str())
}

/// Holder fields as JSON (without the token: it is the holder's to use).
#[must_use]
pub fn holder_json(holder: &Holder) -> Value {
    match holder {
        Holder::Current(r) => json!({
            "format": "deploy-lock",
            "pipeline": r.pipeline,
            "build_id": r.build_id,
            "job": r.job,
            "attempt": r.attempt,
            "actor": r.actor,
            "host": r.host,
            "run_url": r.run_url,
            "repository": r.repository,
            "ref": r.git_ref,
            "commit": r.commit,
            "reason": r.reason,
            "acquired_at": r.acquired_at,
            "ttl_seconds": r.ttl_seconds,
            "fence": r.fence,
        }),
        Holder::Seed {
            pipeline,
            timestamp,
            build_id,
        } => json!({
            "format": "seed",
            "pipeline": pipeline,
            "build_id": build_id,
            "acquired_at": timestamp,
        }),
        Holder::Unknown { why } => json!({ "format": "unknown", "problem": why }),
    }
}

/// A lock as a JSON object: environment, state and holder fields.
#[must_use]
pub fn lock_json(environment: &str, state: &str, lock: Option<&LockView>) -> Value {
    let mut v = json!({ "environment": environment, "state": state });
    if let Some(l) = lock {
        v["holder"] = holder_json(&l.holder);
        v["holder_description"] = json!(l.holder.describe());
        v["age_seconds"] = json!(l.age.num_seconds());
        v["expires_in_seconds"] = json!(l.expires_in.num_seconds());
        v["ttl_seconds"] = json!(l.ttl.num_seconds());
        v["stale"] = json!(l.is_stale());
        v["last_modified"] = json!(l.last_modified.to_rfc3339());
    }
    v
}

/// Prints one JSON value on one line, escaped for the platform.
pub fn print_json(platform: Platform, value: &Value) {
    println!("{}", platform.escape_json(&value.to_string()));
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
