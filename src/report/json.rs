//! Outcomes as JSON for scripts: exactly one object per command, printed on one line and escaped
//! for the platform. The shapes are docs/output.schema.json.

use serde_json::{Value, json};

use crate::ci::Platform;
use crate::commands::outcome::{How, RenewEnd, WaitEnd};
use crate::commands::{Outcome, State};
use crate::lock::{Holder, LockView};

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

/// A freeze window as JSON: how it is stored, and as people read it.
fn window_json(window: &crate::lock::Window) -> Value {
    let mut v = serde_json::to_value(window).unwrap_or_else(|_| json!({}));
    v["description"] = json!(window.describe());
    v
}

/// Prints one JSON value on one line, escaped for the platform.
pub fn print_json(platform: Platform, value: &Value) {
    println!("{}", platform.escape_json(&value.to_string()));
}

/// The JSON value of an outcome; None for outcomes that print no JSON.
#[must_use]
pub fn outcome_json(outcome: &Outcome) -> Option<Value> {
    Some(match outcome {
        Outcome::Checked { env, state, lock } => lock_json(env, state.as_str(), lock.as_ref()),
        Outcome::Acquired(a) => {
            let record = &a.record;
            json!({
                "environment": a.env.as_str(),
                "state": State::Acquired.as_str(),
                "acquired": true,
                "reentrant": a.reentrant,
                "token": record.token,
                "fence": record.fence,
                "ttl_seconds": record.ttl_seconds,
                // Just taken or renewed: stale after one whole ttl.
                "expires_in_seconds": record.ttl_seconds,
                "waited_seconds": a.waited.as_secs(),
                "stolen_from": a.stolen_from.as_ref().map(holder_json),
                "reaped": a.reaped,
                "holder": holder_json(&Holder::Current(record.clone())),
            })
        }
        Outcome::Blocked(b) => {
            let state = if b.timed_out {
                State::TimedOut
            } else {
                State::Held
            };
            let mut v = lock_json(&b.env, state.as_str(), Some(&b.lock));
            v["acquired"] = json!(false);
            v["waited_seconds"] = json!(b.waited.as_secs());
            v
        }
        Outcome::Superseded { env, by, waited } => json!({
            "environment": env.as_str(),
            "state": State::Superseded.as_str(),
            "acquired": false,
            "waited_seconds": waited.as_secs(),
            "superseded_by": super::insight::waiter_holder_json(by),
        }),
        Outcome::AcquireInterrupted { env, waited, taken } => json!({
            "environment": env.as_str(),
            "state": State::Interrupted.as_str(),
            "acquired": false,
            "given_back": taken,
            "waited_seconds": waited.as_secs(),
        }),
        // `run` printed its acquisition before its command started: nothing more.
        Outcome::Ran(_) => return None,
        Outcome::Reaped(r) => json!({
            "environments_checked": r.checked,
            "reaped": r.removed.iter().map(|item| json!({
                "environment": item.env,
                "kind": if item.lock.is_some() { "lock" } else { "queue-ticket" },
                "holder": item.lock.as_ref().map(|l| holder_json(&l.holder)),
                "run": item.run,
                "conclusion": item.conclusion,
            })).collect::<Vec<_>>(),
        }),
        Outcome::Released(r) => {
            let (state, lock) = match &r.how {
                How::Released { lock, .. } => (State::Released, Some(&**lock)),
                How::Absent => (State::Free, None),
                How::Refused { lock, .. } => (State::Refused, Some(&**lock)),
            };
            lock_json(&r.env, state.as_str(), lock)
        }
        Outcome::Waited(w) => {
            let (state, lock) = match &w.end {
                WaitEnd::Free => (State::Free, None),
                WaitEnd::TimedOut(lock) => (State::TimedOut, Some(&**lock)),
                WaitEnd::Interrupted => (State::Interrupted, None),
            };
            let mut v = lock_json(&w.env, state.as_str(), lock);
            v["waited_seconds"] = json!(w.waited.as_secs());
            v
        }
        Outcome::Broken { env, reason, lock } => {
            let state = if lock.is_some() {
                State::Broken
            } else {
                State::Free
            };
            let mut v = lock_json(env, state.as_str(), lock.as_ref());
            v["reason"] = json!(reason);
            v
        }
        Outcome::Status {
            locks,
            queues,
            frozen,
            ..
        } => super::insight::status_json(
            locks
                .iter()
                .map(|row| {
                    let mut v = match &row.lock {
                        Ok(l) => lock_json(&row.env, row.state().as_str(), Some(l)),
                        Err(e) => json!({
                            "environment": row.env,
                            "state": row.state().as_str(),
                            "problem": e.to_string(),
                        }),
                    };
                    if !row.valid_name {
                        v["invalid_name"] = json!(true);
                    }
                    if row.slot > 1 {
                        v["slot"] = json!(row.slot);
                    }
                    (row.env.clone(), v)
                })
                .collect(),
            queues,
            &frozen
                .iter()
                .map(|(env, window)| (env.clone(), window_json(window)))
                .collect(),
        ),
        Outcome::Renewed(r) => match &r.end {
            RenewEnd::Renewed(lock) => lock_json(&r.env, State::Renewed.as_str(), Some(lock)),
            RenewEnd::NotOurs { lock, .. } | RenewEnd::NotHeld(Some(lock)) => {
                lock_json(&r.env, State::Held.as_str(), Some(lock))
            }
            RenewEnd::Lost(lock) => lock_json(&r.env, State::Lost.as_str(), lock.as_deref()),
            RenewEnd::NotHeld(None) => lock_json(&r.env, State::Free.as_str(), None),
        },
        Outcome::History { env, events } => json!({
            "environment": env.as_str(),
            "events": events,
        }),
        Outcome::Frozen {
            env,
            window,
            timed_out,
        } => json!({
            "environment": env.as_str(),
            "state": State::Frozen.as_str(),
            "acquired": false,
            "timed_out": timed_out,
            "freeze": window_json(window),
        }),
        Outcome::Freezes { rows, .. } => json!({
            "freezes": rows
                .iter()
                .map(|(env, active, w)| {
                    let mut v = window_json(w);
                    v["environment"] = json!(env);
                    v["active"] = json!(active);
                    v
                })
                .collect::<Vec<_>>()
        }),
        Outcome::Each(members) => {
            let each: Vec<_> = members.iter().filter_map(outcome_json).collect();
            // `run` over a set says nothing in JSON after its command, as for one lock.
            if each.is_empty() {
                return None;
            }
            json!({ "environments": each })
        }
        Outcome::Stats(s) => super::insight::stats_json(s),
        Outcome::Dashboard(d) => super::insight::dashboard_json(d),
    })
}

/// A failure as JSON: `{"error": {"code": N, "message": "..."}}`.
#[must_use]
pub fn error_json(code: i32, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}
