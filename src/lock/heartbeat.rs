//! Keeping a lock alive: renew every third of the ttl, so a live holder is never stale and a
//! dead one blocks others for at most one ttl. Used by `run` and by the action's and task's
//! detached heartbeat.
//!
//! A renewal is conditional on the version of our own lock, so trying again is always safe: a
//! failed renewal is retried until the store answers, however long that takes. The lock is lost
//! only when the store shows it gone or someone else's. While renewals fail for longer than the
//! ttl, another may have taken the lock over as stale; that is said once per outage.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::audit::{EventKind, EventSink, LockEvent};
use super::locker::Locker;
use super::protocol::{Identity, LockView};
use super::record::LockRecord;
use super::renew::Renewed;
use crate::ci::RunInfo;
use crate::human::human_std;
use crate::log;
use crate::store::Store;

/// Why the heartbeat ended.
#[derive(Debug)]
pub enum End {
    /// Asked to stop (the command ended, or the post step stopped it).
    Stopped,
    /// The lock on this environment is gone or someone else's.
    Lost(String, Option<Box<LockView>>),
}

/// Our acquisition's record and the lock's current version, shared between the heartbeat that
/// renews it and the holder that releases it after the heartbeat stopped.
pub type Known = Mutex<(LockRecord, String)>;

/// One lock the heartbeat keeps alive: its environment and its holder (with the token); and,
/// where the holder knows it, the lock's record and current version, so that each renewal is one
/// conditional write (it reads only after a conflict) and the release after it needs no read.
#[derive(Debug, Clone, Copy)]
pub struct Kept<'a> {
    pub environment: &'a str,
    pub me: &'a Identity,
    pub known: Option<&'a Known>,
}

/// What happened at one beat, for the caller to report.
#[derive(Debug)]
pub enum Beat {
    Renewed,
    Failed(String),
}

/// How often to renew a lock with this ttl.
fn pace(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(100))
}

/// How soon to try again after a failed renewal.
fn retry_after(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(10))
}

/// Renews every lock of `kept` (a lock set's members, or one lock) until `stop()` says so or one
/// of them is lost. `report` sees every beat.
///
/// `ttl` paces the first renewal; after that the locks' own ttl does (the shortest of them),
/// which every renewal keeps.
pub fn keep_alive(
    store: &dyn Store,
    ttl: Duration,
    kept: &[Kept<'_>],
    capacity: u32,
    events: &dyn EventSink,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(&Beat),
) -> End {
    // Capacity (`slots.rs`): each renewal finds the holder's own slot.
    let locker = Locker::new(store, ttl, Duration::from_secs(1)).with_capacity(capacity);
    let mut ttl = ttl;
    let mut last_renewed = Instant::now();
    let mut next = pace(ttl);
    // Within an outage: renewals failed since the last beat that renewed every lock.
    let mut failing = false;
    let mut warned_past_ttl = false;
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
        let mut shortest: Option<Duration> = None;
        let mut failed: Option<(&str, String)> = None;
        for &Kept {
            environment,
            me,
            known,
        } in kept
        {
            let current = known.and_then(|k| k.lock().ok().map(|k| k.clone()));
            let renewed = match &current {
                Some((record, etag)) => locker.renew_known(environment, me, record, etag),
                None => locker.renew(environment, me, None),
            };
            match renewed {
                Ok(Renewed::Renewed(lock)) => {
                    if let (Some(known), Some(record)) = (known, lock.holder.record())
                        && let Ok(mut k) = known.lock()
                    {
                        *k = (record.clone(), lock.etag.clone());
                    }
                    if let Ok(own) = lock.ttl.to_std()
                        && !own.is_zero()
                    {
                        shortest = Some(shortest.map_or(own, |s| s.min(own)));
                    }
                }
                Ok(Renewed::Lost(lock)) => {
                    let mut event = LockEvent::of(
                        EventKind::Lost,
                        environment,
                        me,
                        &RunInfo::default(),
                        locker.store_now(),
                    );
                    event.other = lock
                        .as_ref()
                        .map(|l| l.holder.describe())
                        .unwrap_or_default();
                    events.record(&event);
                    return End::Lost(environment.to_owned(), lock);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    report(&Beat::Failed(msg.clone()));
                    if !failing {
                        log::warn(&format!(
                            "renewing the lock on {environment} failed, retrying every {}: {msg}",
                            human_std(retry_after(ttl))
                        ));
                        let mut event = LockEvent::of(
                            EventKind::RenewFailed,
                            environment,
                            me,
                            &RunInfo::default(),
                            locker.store_now(),
                        );
                        event.reason.clone_from(&msg);
                        events.record(&event);
                    }
                    failed.get_or_insert((environment, msg));
                }
            }
        }
        let Some((environment, _)) = failed else {
            if failing {
                log::note(&format!(
                    "renewed {} again after {} without a renewal",
                    names(kept),
                    human_std(last_renewed.elapsed())
                ));
            } else if !warned_past_ttl && last_renewed.elapsed() >= ttl {
                // One renewal (its write retried by the client through an outage) took longer
                // than the ttl: said as a failed one would have said it.
                log::warn(&format!(
                    "{} went {} without a renewal, longer than its ttl: it may have been taken by \
                     another meanwhile; nobody did, and it is renewed",
                    names(kept),
                    human_std(last_renewed.elapsed())
                ));
            }
            failing = false;
            warned_past_ttl = false;
            if let Some(own) = shortest {
                ttl = own;
            }
            last_renewed = Instant::now();
            next = pace(ttl);
            report(&Beat::Renewed);
            continue;
        };
        failing = true;
        if !warned_past_ttl && last_renewed.elapsed() >= ttl {
            warned_past_ttl = true;
            log::warn(&format!(
                "could not renew the lock on {environment} for {}, longer than its ttl: it may \
                 have been taken by another meanwhile; still trying, and it is kept if nobody \
                 took it",
                human_std(last_renewed.elapsed())
            ));
        }
        next = retry_after(ttl);
    }
}

/// "the lock on eu", or "the locks on eu,us".
fn names(kept: &[Kept<'_>]) -> String {
    let envs: Vec<&str> = kept.iter().map(|k| k.environment).collect();
    match envs.as_slice() {
        [one] => format!("the lock on {one}"),
        _ => format!("the locks on {}", envs.join(",")),
    }
}
