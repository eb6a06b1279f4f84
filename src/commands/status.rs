//! `status`: every lock in the store, the waiters' queues and the freezes in force; with
//! `--stuck-after`, the locks held longer than that, each reported as a `stuck` event.

use std::time::Duration;

use super::context::Context;
use super::outcome::{Outcome, Row};
use crate::config;
use crate::exit::Result;
use crate::lock::slots::split_slot;
use crate::lock::waiters::all_queues;
use crate::lock::{EventKind, LockEvent, LockRecord, LockView};
use crate::log;

pub fn status(ctx: &Context<'_>, stuck_after: Option<Duration>) -> Result<Outcome> {
    let locker = ctx.locker();
    let mut locks: Vec<Row> = locker
        .status()?
        .into_iter()
        .map(|(name, lock)| {
            // A slot of a shared environment is shown as that environment's.
            let (env, slot) = split_slot(&name);
            Row {
                valid_name: config::validate_environment(env).is_ok(),
                env: env.to_owned(),
                slot,
                lock,
            }
        })
        .collect();
    warn_case_twins(locks.iter().map(|row| row.env.as_str()));
    if let Some(limit) = stuck_after {
        let limit = chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
        locks.retain(|row| row.lock.as_ref().is_ok_and(|l| l.age > limit));
        for row in &locks {
            if let Ok(lock) = &row.lock {
                ctx.events.record(&stuck(&row.env, lock));
            }
        }
    }
    // The queue is advisory: a listing that fails costs the waiters' names, never the locks.
    let queues = all_queues(ctx.store).unwrap_or_else(|e| {
        log::warn(&format!("cannot read the waiters' queues: {e}"));
        std::collections::BTreeMap::new()
    });
    // Freezes too are advisory here: a failed read costs their lines, never the locks. A search
    // for stuck locks is about holders only.
    let frozen = if stuck_after.is_some() {
        std::collections::BTreeMap::new()
    } else {
        locker.freezes_in_force().unwrap_or_else(|e| {
            log::warn(&format!("cannot read the freeze windows: {e:#}"));
            std::collections::BTreeMap::new()
        })
    };
    Ok(Outcome::Status {
        store: ctx.store.describe(),
        locks,
        stuck_after,
        queues,
        frozen,
    })
}

/// The `stuck` event of a lock: its holder, and how long it has held it.
fn stuck(env: &str, lock: &LockView) -> LockEvent {
    let record = lock.holder.record().cloned().unwrap_or_else(|| LockRecord {
        environment: env.to_owned(),
        pipeline: lock.holder.pipeline().to_owned(),
        build_id: lock.holder.build_id().to_owned(),
        ..LockRecord::default()
    });
    let mut event = LockEvent::by(EventKind::Stuck, &record, lock.now);
    event.held_seconds = Some(lock.age.num_seconds());
    event
}

/// Environment names are case-sensitive (the blob names are): `Prod` and `prod` are two locks,
/// which two pipelines that mean one environment would both take. Says so for every such pair.
fn warn_case_twins<'a>(envs: impl Iterator<Item = &'a str>) {
    let mut seen: std::collections::BTreeMap<String, &str> = std::collections::BTreeMap::new();
    for env in envs {
        match seen.get(&env.to_lowercase()) {
            Some(&first) if first != env => log::warn(&format!(
                "{first} and {env} differ only in case: they are two different locks, not one; \
                 use one spelling in every pipeline"
            )),
            Some(_) => {}
            None => {
                seen.insert(env.to_lowercase(), env);
            }
        }
    }
}
