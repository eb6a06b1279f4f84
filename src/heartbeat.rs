//! Keeping a lock alive: renew every third of the ttl, so a live holder is never stale and a
//! dead one blocks others for at most one ttl. Used by `run` and by the action's and task's
//! detached heartbeat.

use std::time::{Duration, Instant};

use crate::audit::{self, Event};
use crate::ci::RunInfo;
use crate::lock::{Locker, Renewed};
use crate::log;
use crate::protocol::{Identity, LockView};
use crate::render::human_std;
use crate::store::Store;

/// Why the heartbeat ended.
#[derive(Debug)]
pub enum End {
    /// Asked to stop (the command ended, or the post step stopped it).
    Stopped,
    /// The lock is gone or someone else's, or renewals failed for longer than the ttl.
    Lost(Option<Box<LockView>>),
}

/// What happened at one beat, for the caller to report.
#[derive(Debug)]
pub enum Beat {
    Renewed,
    Failed(String),
}

/// Renews until `stop()` says so or the lock is lost. `report` sees every beat.
pub fn keep_alive(
    store: &dyn Store,
    ttl: Duration,
    environment: &str,
    me: &Identity,
    audit_on: bool,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(&Beat),
) -> End {
    let locker = Locker::new(store, ttl, Duration::from_secs(1));
    let every = (ttl / 3).max(Duration::from_millis(100));
    let retry = (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut last_renewed = Instant::now();
    let mut next = every;
    loop {
        let until = Instant::now() + next;
        while Instant::now() < until {
            if stop() {
                return End::Stopped;
            }
            // A plain sleep: a signal must not end the heartbeat while `run`'s command still runs.
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        if stop() {
            return End::Stopped;
        }
        match locker.renew(environment, me) {
            Ok(Renewed::Renewed(_)) => {
                last_renewed = Instant::now();
                next = every;
                report(&Beat::Renewed);
            }
            Ok(Renewed::Lost(lock)) => {
                if audit_on {
                    audit_lost(store, &locker, environment, me, lock.as_deref());
                }
                return End::Lost(lock);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                report(&Beat::Failed(msg.clone()));
                if audit_on {
                    let mut event = Event::of(
                        "renew-failed",
                        environment,
                        me,
                        &RunInfo::default(),
                        locker.store_now(),
                    );
                    event.reason = msg;
                    audit::append(store, &event);
                }
                // Past the ttl without a renewal the lock may already be someone else's.
                if last_renewed.elapsed() >= ttl {
                    log::warn(&format!(
                        "could not renew the lock on {environment} for {}, longer than its ttl",
                        human_std(last_renewed.elapsed())
                    ));
                    return End::Lost(None);
                }
                next = retry;
            }
        }
    }
}

fn audit_lost(
    store: &dyn Store,
    locker: &Locker<'_>,
    environment: &str,
    me: &Identity,
    now_held_by: Option<&LockView>,
) {
    let mut event = Event::of(
        "lost",
        environment,
        me,
        &RunInfo::default(),
        locker.store_now(),
    );
    event.other = now_held_by.map(|l| l.holder.describe()).unwrap_or_default();
    audit::append(store, &event);
}
