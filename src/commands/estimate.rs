//! How long the environment's holders usually keep the lock, from its audit log: the waiter's
//! estimate of when its turn comes.

use std::time::Duration;

use super::context::Context;
use crate::config::Environment;
use crate::lock::{AuditLog, EventKind};
use crate::log;

/// How many of the latest releases the estimate looks at.
const RECENT: usize = 10;

/// The median hold time of the environment's latest releases, or `None` without an audit log
/// or without releases in it. Read once, before a wait; a log that cannot be read only costs
/// the estimate.
pub fn typical_hold(ctx: &Context<'_>, env: &Environment) -> Option<Duration> {
    if !ctx.cfg.audit {
        return None;
    }
    match AuditLog::new(ctx.store).read(env) {
        Ok((events, _)) => median_hold(
            events
                .iter()
                .filter(|e| e.kind == EventKind::Release)
                .filter_map(|e| e.held_seconds)
                .filter(|s| *s >= 0),
        ),
        Err(e) => {
            log::debug(&format!(
                "no estimate: cannot read the audit log of {env}: {e:#}"
            ));
            None
        }
    }
}

/// The median of the latest `RECENT` hold times (seconds, oldest first).
fn median_hold(held: impl Iterator<Item = i64>) -> Option<Duration> {
    let all: Vec<i64> = held.collect();
    let mut recent = all[all.len().saturating_sub(RECENT)..].to_vec();
    if recent.is_empty() {
        return None;
    }
    recent.sort_unstable();
    let mid = recent[recent.len() / 2];
    Some(Duration::from_secs(u64::try_from(mid).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_the_latest_ten_holds() {
        assert_eq!(median_hold([].into_iter()), None);
        assert_eq!(
            median_hold([60, 600, 120].into_iter()),
            Some(Duration::from_secs(120))
        );
        // Only the latest ten count: the old long holds are forgotten.
        let held = [9000, 9000, 9000]
            .into_iter()
            .chain(std::iter::repeat_n(30, 10));
        assert_eq!(median_hold(held), Some(Duration::from_secs(30)));
    }
}
