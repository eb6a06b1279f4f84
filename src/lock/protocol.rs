//! The lock protocol's decisions: pure functions of what the store answered, with the store's
//! clock passed in. No I/O here, so every rule is unit-tested directly.
//!
//! - A lock is stale when the store's now is past the blob's `Last-Modified` + ttl. Both times are
//!   the store's; no local clock takes part (docs/design.md, "Clocks").
//! - The token decides ownership where we have one; otherwise pipeline + build id (+ job), but
//!   only when the build id proves who we are: a CI run, or a build id given explicitly. Outside
//!   CI the default build id `user@host` is shared by every process of that person on that
//!   machine, so it only lets that person release, from that machine, a lock taken there.

use chrono::{DateTime, Duration, Utc};

use super::record::{Holder, LockRecord};
use crate::store::Blob;

/// Who we are, for ownership decisions.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub pipeline: String,
    pub build_id: String,
    pub job: String,
    /// The run's attempt (a re-run of a job is a new attempt).
    pub attempt: String,
    /// The runner or agent (or machine) we run on.
    pub host: String,
    /// The token of an acquisition we made earlier (from CI state or `--token`).
    pub token: Option<String>,
    /// `build_id` is the default outside CI (`user@host`), which every process of that person on
    /// that machine shares: two terminals, two cron jobs or two Jenkins executors. It never makes
    /// a lock ours; only the token does.
    pub shared_build_id: bool,
}

/// A lock as read from the store, judged against the store's clock.
#[derive(Debug, Clone)]
pub struct LockView {
    pub holder: Holder,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The ttl that applies: the record's own, or the seed's timeout for records without one.
    pub ttl: Duration,
    /// How long the lock has been held since it was acquired (not since its last renewal), by
    /// the store's clock.
    pub age: Duration,
    /// How long until the lock is stale (negative once it is).
    pub expires_in: Duration,
}

impl LockView {
    /// `foreign_ttl` judges a lock whose record carries no ttl of its own (the seed script's, or
    /// one we cannot read): that writer's own timeout, never the reader's ttl, so a short-lived
    /// reader does not take over a lock its writer still considers held.
    #[must_use]
    pub fn new(blob: &Blob, now: DateTime<Utc>, foreign_ttl: Duration) -> Self {
        let holder = Holder::parse(&blob.data);
        let ttl = match holder.record() {
            Some(r) if r.ttl_seconds > 0 => seconds(r.ttl_seconds),
            _ => foreign_ttl,
        };
        let expires_at = blob
            .last_modified
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            age: now.signed_duration_since(acquired(&holder, blob)),
            holder,
            etag: blob.etag.clone(),
            last_modified: blob.last_modified,
            now,
            ttl,
            expires_in: expires_at.signed_duration_since(now),
        }
    }

    /// Stale: the store's now is past `Last-Modified + ttl`.
    #[must_use]
    pub fn is_stale(&self) -> bool {
        self.expires_in < Duration::zero()
    }
}

/// When the lock was acquired, by the store's clock. Renewals keep the record's `acquired_at`
/// (the store's time at the acquiring write) while they move `Last-Modified`, so it is the start.
/// It can only be earlier than the write of this version. A record without it (the seed's, an
/// unknown one) falls back to the blob's creation time, which a create sets and a renewal keeps
/// on Azure.
fn acquired(holder: &Holder, blob: &Blob) -> DateTime<Utc> {
    let recorded = holder
        .record()
        .and_then(|r| DateTime::parse_from_rfc3339(&r.acquired_at).ok())
        .map(|t| t.with_timezone(&Utc));
    let since = recorded.or(blob.created).unwrap_or(blob.last_modified);
    since.min(blob.last_modified)
}

/// A ttl in whole seconds as a `Duration`, saturating instead of overflowing.
#[must_use]
pub fn seconds(s: u64) -> Duration {
    Duration::try_seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000)).unwrap_or(Duration::MAX)
}

/// How a lock relates to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Our acquisition: same token, or same pipeline, build and job.
    Ours,
    /// Another job of our own run (same pipeline and build id).
    SameRun,
    /// Taken outside CI by the same user on the same host, by another process (or by this one
    /// without its token): this user may release it, but not share it.
    SameUserAndHost,
    /// Someone else.
    Other,
}

#[must_use]
pub fn ownership(holder: &Holder, me: &Identity) -> Ownership {
    let same_run = |pipeline: &str, build: &str| {
        !build.is_empty() && pipeline.eq_ignore_ascii_case(&me.pipeline) && build == me.build_id
    };
    match holder {
        Holder::Current(r) => {
            if me
                .token
                .as_deref()
                .is_some_and(|t| !t.is_empty() && t == r.token)
            {
                Ownership::Ours
            } else if same_run(&r.pipeline, &r.build_id) {
                if me.shared_build_id {
                    return Ownership::SameUserAndHost;
                }
                let same_job = r.job.is_empty() || me.job.is_empty() || r.job == me.job;
                // Matrix legs of one job share run, job and attempt, but not the runner: they are
                // different jobs. A re-run (another attempt) takes over its own job's lock.
                let other_leg = !r.attempt.is_empty()
                    && r.attempt == me.attempt
                    && !r.host.is_empty()
                    && !me.host.is_empty()
                    && r.host != me.host;
                if same_job && !other_leg {
                    Ownership::Ours
                } else {
                    Ownership::SameRun
                }
            } else {
                Ownership::Other
            }
        }
        Holder::Seed {
            pipeline, build_id, ..
        } => {
            if !same_run(pipeline, build_id) {
                Ownership::Other
            } else if me.shared_build_id {
                Ownership::SameUserAndHost
            } else {
                Ownership::Ours
            }
        }
        Holder::Unknown { .. } => Ownership::Other,
    }
}

/// The next step of `acquire`, given the current lock (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireStep {
    /// No lock: create it (conditional on absence).
    Create,
    /// Ours already: rewrite it in place, conditional on the version read (re-entrant acquire).
    Refresh { etag: String },
    /// Stale: take it over, conditional on the stale version.
    Steal { etag: String },
    /// Held by someone else and fresh.
    Blocked,
}

/// A lock of our run and job taken by another attempt: a re-run of the job, whose earlier
/// attempt is over. The re-run is a new holder, not a nested one.
#[must_use]
pub fn from_another_attempt(holder: &Holder, me: &Identity) -> bool {
    match holder {
        Holder::Current(r) => {
            !r.attempt.is_empty()
                && !me.attempt.is_empty()
                && r.attempt != me.attempt
                && me.token.as_deref() != Some(r.token.as_str())
                && ownership(holder, me) == Ownership::Ours
        }
        Holder::Seed { .. } | Holder::Unknown { .. } => false,
    }
}

/// Re-entrant (`Refresh`) only for the holder itself: same token, or the same CI run, attempt
/// and job on the same runner, or the same explicit build id. Such a caller is nested inside the
/// acquisition and must leave it held; another attempt of our job takes the lock over instead.
#[must_use]
pub fn acquire_step(lock: Option<&LockView>, me: &Identity) -> AcquireStep {
    let Some(lock) = lock else {
        return AcquireStep::Create;
    };
    match ownership(&lock.holder, me) {
        Ownership::Ours if from_another_attempt(&lock.holder, me) => AcquireStep::Steal {
            etag: lock.etag.clone(),
        },
        Ownership::Ours => AcquireStep::Refresh {
            etag: lock.etag.clone(),
        },
        _ if lock.is_stale() => AcquireStep::Steal {
            etag: lock.etag.clone(),
        },
        _ => AcquireStep::Blocked,
    }
}

/// How much of a wait of `wait` is left after `waited`: None without a wait, or once it ran out.
#[must_use]
pub fn time_left(
    wait: Option<std::time::Duration>,
    waited: std::time::Duration,
) -> Option<std::time::Duration> {
    wait.and_then(|w| w.checked_sub(waited))
        .filter(|l| !l.is_zero())
}

/// What an acquire does next, once the lock, our place in the queue and the time left are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireMove {
    /// Write: create, refresh or take over.
    Write(AcquireStep),
    /// Wait (at most `left`) and look again.
    Wait { left: std::time::Duration },
    /// Give up: held by someone else. `timed_out` when a wait ran out.
    Blocked { timed_out: bool },
}

/// The queue's and the deadline's part of an acquire (docs/design.md, "Queue"): behind earlier
/// waiters even a free or stale lock is theirs to take first, until our wait runs out; then we
/// try once, whatever our place. `waiting` says whether the caller asked to wait at all.
#[must_use]
pub fn acquire_move(
    step: AcquireStep,
    our_turn: bool,
    left: Option<std::time::Duration>,
    waiting: bool,
) -> AcquireMove {
    let step = match step {
        AcquireStep::Create | AcquireStep::Steal { .. } if !our_turn && left.is_some() => {
            AcquireStep::Blocked
        }
        step => step,
    };
    match (step, left) {
        (AcquireStep::Blocked, Some(left)) => AcquireMove::Wait { left },
        (AcquireStep::Blocked, None) => AcquireMove::Blocked { timed_out: waiting },
        (step, _) => AcquireMove::Write(step),
    }
}

/// Whether our create or takeover landed although its answer was lost (docs/design.md, "Lost
/// answers"): the lock carries our fresh token, or exactly the record we sent when the token was
/// given to us (a given token may also be on a lock our own job took earlier).
#[must_use]
pub fn landed<'a>(
    sent: &LockRecord,
    lock: &'a LockView,
    fresh_token: bool,
) -> Option<&'a LockRecord> {
    lock.holder
        .record()
        .filter(|r| r.token == sent.token && (fresh_token || *r == sent))
}

/// The next step of `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseStep {
    /// There is no lock: nothing to do (a cleanup release is idempotent).
    Absent,
    /// Ours (or our run's): delete it, conditional on the version read.
    Delete { etag: String },
    /// Someone else's: refuse.
    Refuse,
}

/// With a token, only that acquisition may be released; without one, any lock of our run (the
/// seed's cleanup release from a later job), or outside CI a lock this user took on this host.
#[must_use]
pub fn release_step(lock: Option<&LockView>, me: &Identity) -> ReleaseStep {
    let Some(lock) = lock else {
        return ReleaseStep::Absent;
    };
    let allowed = match (&lock.holder, me.token.as_deref()) {
        (Holder::Current(r), Some(t)) if !t.is_empty() && !r.token.is_empty() => r.token == t,
        (holder, _) => ownership(holder, me) != Ownership::Other,
    };
    if allowed {
        ReleaseStep::Delete {
            etag: lock.etag.clone(),
        }
    } else {
        ReleaseStep::Refuse
    }
}

/// The next step of `renew`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewStep {
    /// Ours: rewrite it conditional on the version read, which moves `Last-Modified`.
    Rewrite { etag: String },
    /// Gone, or someone else's: the lock was lost.
    Lost,
}

/// Renewal needs the exact acquisition: by token when we have one, else by run and job.
#[must_use]
pub fn renew_step(lock: Option<&LockView>, me: &Identity) -> RenewStep {
    let Some(lock) = lock else {
        return RenewStep::Lost;
    };
    let ours = match (&lock.holder, me.token.as_deref()) {
        (Holder::Current(r), Some(t)) if !t.is_empty() => r.token == t,
        (holder, _) => ownership(holder, me) == Ownership::Ours,
    };
    if ours {
        RenewStep::Rewrite {
            etag: lock.etag.clone(),
        }
    } else {
        RenewStep::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::LockRecord;
    use super::*;
    use std::collections::BTreeMap;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("valid time")
    }

    fn blob(data: &[u8], modified: i64) -> Blob {
        Blob {
            data: data.to_vec(),
            etag: "\"e1\"".into(),
            last_modified: t(modified),
            created: None,
            metadata: BTreeMap::new(),
        }
    }

    fn record(pipeline: &str, build: &str, job: &str, token: &str, ttl: u64) -> Vec<u8> {
        LockRecord {
            schema: 1,
            pipeline: pipeline.into(),
            build_id: build.into(),
            job: job.into(),
            token: token.into(),
            ttl_seconds: ttl,
            ..LockRecord::default()
        }
        .to_bytes()
    }

    fn me(pipeline: &str, build: &str, job: &str, token: Option<&str>) -> Identity {
        Identity {
            pipeline: pipeline.into(),
            build_id: build.into(),
            job: job.into(),
            token: token.map(Into::into),
            ..Identity::default()
        }
    }

    #[test]
    fn matrix_legs_exclude_each_other_but_a_rerun_takes_over() {
        let data = LockRecord {
            schema: 1,
            pipeline: "github".into(),
            build_id: "77".into(),
            job: "deploy".into(),
            attempt: "1".into(),
            host: "runner-a".into(),
            token: "tok".into(),
            ttl_seconds: 600,
            ..LockRecord::default()
        }
        .to_bytes();
        let v = view(&data, 0, 5);
        let leg = |attempt: &str, host: &str| Identity {
            attempt: attempt.into(),
            host: host.into(),
            ..me("github", "77", "deploy", None)
        };
        assert_eq!(
            acquire_step(Some(&v), &leg("1", "runner-b")),
            AcquireStep::Blocked,
            "another matrix leg"
        );
        assert!(matches!(
            acquire_step(Some(&v), &leg("1", "runner-a")),
            AcquireStep::Refresh { .. }
        ));
        // A re-run is a new holder: it takes the lock over, with a new token and fence.
        assert_eq!(
            acquire_step(Some(&v), &leg("2", "runner-c")),
            AcquireStep::Steal {
                etag: "\"e1\"".into()
            }
        );
        assert!(from_another_attempt(&v.holder, &leg("2", "runner-c")));
        assert!(!from_another_attempt(&v.holder, &leg("1", "runner-a")));
        // With the lock's token it is the holder itself, whatever the attempt.
        let with_token = Identity {
            token: Some("tok".into()),
            ..leg("2", "runner-c")
        };
        assert!(matches!(
            acquire_step(Some(&v), &with_token),
            AcquireStep::Refresh { .. }
        ));
        // The other leg may still do a cleanup release of its run's lock, as the seed did.
        assert!(matches!(
            release_step(Some(&v), &leg("1", "runner-b")),
            ReleaseStep::Delete { .. }
        ));
    }

    fn view(data: &[u8], modified: i64, now: i64) -> LockView {
        LockView::new(&blob(data, modified), t(now), Duration::seconds(1800))
    }

    #[test]
    fn free_lock_is_created() {
        assert_eq!(
            acquire_step(None, &me("github", "1", "a", None)),
            AcquireStep::Create
        );
    }

    #[test]
    fn staleness_uses_store_clock_and_record_ttl() {
        let data = record("azdevops", "9", "", "tok", 60);
        let fresh = view(&data, 0, 60);
        assert!(!fresh.is_stale(), "exactly at the ttl is still held");
        let stale = view(&data, 0, 61);
        assert!(stale.is_stale());
        assert_eq!(
            acquire_step(Some(&fresh), &me("github", "1", "", None)),
            AcquireStep::Blocked
        );
        assert_eq!(
            acquire_step(Some(&stale), &me("github", "1", "", None)),
            AcquireStep::Steal {
                etag: "\"e1\"".into()
            }
        );
    }

    #[test]
    fn record_without_ttl_uses_the_configured_one() {
        let seed = view(b"github|2025-09-27 17:30:00 UTC|1234567890", 0, 1800);
        assert!(!seed.is_stale());
        assert!(view(b"github|2025-09-27 17:30:00 UTC|1234567890", 0, 1801).is_stale());
        assert!(!view(b"\x00garbage", 0, 1799).is_stale());
    }

    #[test]
    fn age_counts_from_the_acquisition_not_the_last_renewal() {
        let at = |acquired_at: &str| {
            LockRecord {
                schema: 1,
                pipeline: "github".into(),
                build_id: "1".into(),
                token: "tok".into(),
                acquired_at: acquired_at.into(),
                ttl_seconds: 60,
                ..LockRecord::default()
            }
            .to_bytes()
        };
        // Acquired at 0, renewed at 100, read at 130: held 130 s, stale in 30 s.
        let start = t(0).to_rfc3339();
        let v = view(&at(&start), 100, 130);
        assert_eq!(v.age, Duration::seconds(130));
        assert_eq!(v.expires_in, Duration::seconds(30));
        // No time recorded: the blob's creation, else its last write.
        let mut b = blob(&at(""), 100);
        assert_eq!(
            LockView::new(&b, t(130), Duration::zero())
                .age
                .num_seconds(),
            30
        );
        b.created = Some(t(10));
        assert_eq!(
            LockView::new(&b, t(130), Duration::zero())
                .age
                .num_seconds(),
            120
        );
        // A recorded time after the write it is in is not believed.
        let v = view(&at(&t(500).to_rfc3339()), 100, 130);
        assert_eq!(v.age, Duration::seconds(30));
    }

    #[test]
    fn records_without_a_ttl_take_the_foreign_one_not_ours() {
        let seed = b"github|2025-09-27 17:30:00 UTC|1234567890";
        let v = LockView::new(&blob(seed, 0), t(360), Duration::minutes(30));
        assert_eq!(v.ttl, Duration::minutes(30));
        assert!(!v.is_stale());
        assert_eq!(v.expires_in, Duration::minutes(24));
    }

    #[test]
    fn huge_ttl_does_not_overflow() {
        let v = view(&record("a", "1", "", "t", u64::MAX), 0, 10);
        assert!(!v.is_stale());
    }

    #[test]
    fn reentrant_for_same_run_and_job_blocked_for_other_job() {
        let data = record("github", "77", "deploy", "tok", 600);
        let v = view(&data, 0, 5);
        assert!(matches!(
            acquire_step(Some(&v), &me("github", "77", "deploy", None)),
            AcquireStep::Refresh { .. }
        ));
        assert_eq!(
            acquire_step(Some(&v), &me("github", "77", "other", None)),
            AcquireStep::Blocked
        );
        assert_eq!(
            acquire_step(Some(&v), &me("azdevops", "77", "deploy", None)),
            AcquireStep::Blocked
        );
        assert!(matches!(
            acquire_step(Some(&v), &me("x", "y", "z", Some("tok"))),
            AcquireStep::Refresh { .. }
        ));
    }

    #[test]
    fn seed_holder_is_ours_by_pipeline_and_build() {
        let v = view(b"github|2025-09-27 17:30:00 UTC|1234567890", 0, 5);
        assert!(matches!(
            acquire_step(Some(&v), &me("github", "1234567890", "any", None)),
            AcquireStep::Refresh { .. }
        ));
        assert_eq!(
            release_step(Some(&v), &me("azdevops", "1234567890", "", None)),
            ReleaseStep::Refuse
        );
    }

    #[test]
    fn unknown_holder_is_never_ours() {
        let v = view(b"{}", 0, 5);
        assert_eq!(
            acquire_step(Some(&v), &me("github", "", "", Some(""))),
            AcquireStep::Blocked
        );
        assert_eq!(
            release_step(Some(&v), &me("github", "", "", None)),
            ReleaseStep::Refuse
        );
    }

    #[test]
    fn release_rules() {
        let data = record("github", "77", "deploy", "tok", 600);
        let v = view(&data, 0, 5);
        assert_eq!(
            release_step(None, &me("github", "77", "", None)),
            ReleaseStep::Absent
        );
        // Cleanup release from another job of the same run.
        assert!(matches!(
            release_step(Some(&v), &me("github", "77", "cleanup", None)),
            ReleaseStep::Delete { .. }
        ));
        // With a token, only that acquisition.
        assert_eq!(
            release_step(Some(&v), &me("github", "77", "deploy", Some("other"))),
            ReleaseStep::Refuse
        );
        assert!(matches!(
            release_step(Some(&v), &me("zzz", "0", "", Some("tok"))),
            ReleaseStep::Delete { .. }
        ));
        assert_eq!(
            release_step(Some(&v), &me("github", "78", "deploy", None)),
            ReleaseStep::Refuse
        );
    }

    fn terminal(user_at_host: &str, token: Option<&str>) -> Identity {
        Identity {
            shared_build_id: true,
            ..me("local", user_at_host, "", token)
        }
    }

    #[test]
    fn terminals_of_one_user_never_share_a_lock() {
        let data = record("local", "alice@box", "", "tok", 300);
        let fresh = view(&data, 0, 5);
        let alice = terminal("alice@box", None);
        assert_eq!(ownership(&fresh.holder, &alice), Ownership::SameUserAndHost);
        assert_eq!(acquire_step(Some(&fresh), &alice), AcquireStep::Blocked);
        assert_eq!(renew_step(Some(&fresh), &alice), RenewStep::Lost);
        // Stale, it is taken over like anyone else's.
        assert!(matches!(
            acquire_step(Some(&view(&data, 0, 301)), &alice),
            AcquireStep::Steal { .. }
        ));
        // The same user on the same host may release it from a terminal.
        assert!(matches!(
            release_step(Some(&fresh), &alice),
            ReleaseStep::Delete { .. }
        ));
        for other in ["bob@box", "alice@other-box"] {
            assert_eq!(
                release_step(Some(&fresh), &terminal(other, None)),
                ReleaseStep::Refuse,
                "{other}"
            );
        }
        // The token proves the holder: a nested run, or `--token` from another terminal.
        let holder = terminal("alice@box", Some("tok"));
        assert_eq!(ownership(&fresh.holder, &holder), Ownership::Ours);
        assert!(matches!(
            acquire_step(Some(&fresh), &holder),
            AcquireStep::Refresh { .. }
        ));
        assert!(matches!(
            renew_step(Some(&fresh), &holder),
            RenewStep::Rewrite { .. }
        ));
        assert_eq!(
            release_step(Some(&fresh), &terminal("alice@box", Some("other"))),
            ReleaseStep::Refuse
        );
        // An explicit build id is a claim of the caller: the same one is the same holder.
        assert!(matches!(
            acquire_step(Some(&fresh), &me("local", "alice@box", "", None)),
            AcquireStep::Refresh { .. }
        ));
    }

    #[test]
    fn a_terminal_never_shares_a_ci_runs_lock() {
        let data = record("github", "77", "deploy", "tok", 600);
        let v = view(&data, 0, 5);
        let alice = Identity {
            pipeline: "github".into(),
            ..terminal("alice@box", None)
        };
        assert_eq!(ownership(&v.holder, &alice), Ownership::Other);
        assert_eq!(release_step(Some(&v), &alice), ReleaseStep::Refuse);
    }

    #[test]
    fn a_seed_lock_with_a_shared_build_id_is_only_released() {
        let v = view(b"local|2025-09-27 17:30:00 UTC|alice@box", 0, 5);
        let alice = terminal("alice@box", None);
        assert_eq!(ownership(&v.holder, &alice), Ownership::SameUserAndHost);
        assert_eq!(acquire_step(Some(&v), &alice), AcquireStep::Blocked);
        assert!(matches!(
            release_step(Some(&v), &alice),
            ReleaseStep::Delete { .. }
        ));
    }

    #[test]
    fn renew_needs_the_exact_acquisition() {
        let data = record("github", "77", "deploy", "tok", 600);
        let v = view(&data, 0, 5);
        assert!(matches!(
            renew_step(Some(&v), &me("github", "77", "deploy", Some("tok"))),
            RenewStep::Rewrite { .. }
        ));
        assert_eq!(
            renew_step(Some(&v), &me("github", "77", "deploy", Some("new"))),
            RenewStep::Lost
        );
        assert_eq!(
            renew_step(Some(&v), &me("github", "77", "other", None)),
            RenewStep::Lost
        );
        assert_eq!(
            renew_step(None, &me("github", "77", "deploy", None)),
            RenewStep::Lost
        );
    }

    #[test]
    fn time_left_runs_out() {
        let s = std::time::Duration::from_secs;
        assert_eq!(time_left(None, s(0)), None);
        assert_eq!(time_left(Some(s(10)), s(4)), Some(s(6)));
        assert_eq!(time_left(Some(s(10)), s(10)), None);
        assert_eq!(time_left(Some(s(10)), s(11)), None);
    }

    #[test]
    fn behind_earlier_waiters_a_free_lock_is_theirs_until_the_wait_runs_out() {
        let left = Some(std::time::Duration::from_secs(5));
        let steal = AcquireStep::Steal { etag: "1".into() };
        for step in [AcquireStep::Create, steal.clone()] {
            assert_eq!(
                acquire_move(step.clone(), false, left, true),
                AcquireMove::Wait {
                    left: std::time::Duration::from_secs(5)
                }
            );
            assert_eq!(
                acquire_move(step.clone(), true, left, true),
                AcquireMove::Write(step.clone())
            );
            // Out of time: try once, whatever our place.
            assert_eq!(
                acquire_move(step.clone(), false, None, true),
                AcquireMove::Write(step)
            );
        }
        // Our own lock is refreshed even behind others.
        let refresh = AcquireStep::Refresh { etag: "2".into() };
        assert_eq!(
            acquire_move(refresh.clone(), false, left, true),
            AcquireMove::Write(refresh)
        );
    }

    #[test]
    fn a_held_lock_is_waited_for_then_reported() {
        let left = Some(std::time::Duration::from_secs(5));
        assert!(matches!(
            acquire_move(AcquireStep::Blocked, true, left, true),
            AcquireMove::Wait { .. }
        ));
        assert_eq!(
            acquire_move(AcquireStep::Blocked, true, None, true),
            AcquireMove::Blocked { timed_out: true }
        );
        assert_eq!(
            acquire_move(AcquireStep::Blocked, true, None, false),
            AcquireMove::Blocked { timed_out: false }
        );
    }

    #[test]
    fn a_lost_answer_is_recognised_by_our_token() {
        let sent = LockRecord {
            pipeline: "github".into(),
            build_id: "1".into(),
            token: "t1".into(),
            reason: "ours".into(),
            ..LockRecord::default()
        };
        let on_store = |r: &LockRecord| view(&serde_json::to_vec(r).expect("json"), 0, 1800);
        let changed = LockRecord {
            reason: "refreshed".into(),
            ..sent.clone()
        };
        let other = LockRecord {
            token: "t2".into(),
            ..sent.clone()
        };
        assert!(landed(&sent, &on_store(&sent), false).is_some());
        assert!(landed(&sent, &on_store(&changed), true).is_some());
        // A given token may be on an earlier acquisition of ours: only the exact record counts.
        assert!(landed(&sent, &on_store(&changed), false).is_none());
        assert!(landed(&sent, &on_store(&other), true).is_none());
    }
}
