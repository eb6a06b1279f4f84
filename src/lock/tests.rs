//! The lock operations against the in-memory store, with its clock moved by the tests: acquire,
//! re-entrant refresh, takeover of a stale lock, release, renew, fencing, and the waiters' queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use std::collections::BTreeMap;

use super::freeze::FreezeGate;
use super::queue::{Queue, Turn};
use super::*;
use crate::ci::RunInfo;
use crate::clock::Clock;
use crate::store::Store as _;
use crate::store::memory::MemoryStore;

const ENV: &str = "sandbox";
const TTL: Duration = Duration::from_secs(60);

/// A memory store whose clock the test moves.
fn store() -> (MemoryStore, Arc<AtomicI64>) {
    let offset = Arc::new(AtomicI64::new(0));
    let start = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let moved = Arc::clone(&offset);
    let store = MemoryStore::with_clock(Box::new(move || {
        start + chrono::Duration::seconds(moved.load(Ordering::SeqCst))
    }));
    (store, offset)
}

fn advance(offset: &AtomicI64, seconds: i64) {
    offset.fetch_add(seconds, Ordering::SeqCst);
}

fn who(build: &str) -> Identity {
    Identity {
        pipeline: "github".into(),
        build_id: build.into(),
        job: "deploy".into(),
        ..Identity::default()
    }
}

fn acquire(locker: &Locker<'_>, me: &Identity, wait: Option<Duration>) -> Acquired {
    let run = RunInfo::default();
    let holding = Holding::new(&run, "test");
    locker.acquire(ENV, me, &holding, wait).expect("acquire")
}

fn taken(acquired: Acquired) -> (LockRecord, String, bool, Option<Holder>) {
    match acquired {
        Acquired::Taken {
            record,
            etag,
            reentrant,
            stolen_from,
            ..
        } => (record, etag, reentrant, stolen_from),
        other => panic!("not taken: {other:?}"),
    }
}

fn with_token(me: &Identity, record: &LockRecord) -> Identity {
    Identity {
        token: Some(record.token.clone()),
        ..me.clone()
    }
}

#[test]
fn a_free_lock_is_taken_and_released() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let me = who("1");
    let (record, _, reentrant, stolen) = taken(acquire(&locker, &me, None));
    assert!(!reentrant && stolen.is_none());
    assert_eq!(record.ttl_seconds, 60);
    let held = locker.read(ENV).expect("read").expect("held");
    assert_eq!(held.holder.record().map(|r| &r.token), Some(&record.token));
    match locker
        .release(ENV, &with_token(&me, &record))
        .expect("release")
    {
        Released::Released(lock) => assert_eq!(lock.holder.build_id(), "1"),
        other => panic!("{other:?}"),
    }
    assert!(locker.read(ENV).expect("read").is_none());
    assert!(matches!(
        locker.release(ENV, &me).expect("release"),
        Released::Absent
    ));
}

#[test]
fn our_own_run_refreshes_in_place_and_others_are_blocked() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let (first, ..) = taken(acquire(&locker, &who("1"), None));
    let (again, _, reentrant, _) = taken(acquire(&locker, &who("1"), None));
    assert!(reentrant);
    assert_eq!(again.token, first.token);
    match acquire(&locker, &who("2"), None) {
        Acquired::Blocked {
            lock, timed_out, ..
        } => {
            assert!(!timed_out);
            assert_eq!(lock.holder.build_id(), "1");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        locker.release(ENV, &who("2")).expect("release"),
        Released::Refused(_)
    ));
}

#[test]
fn a_stale_lock_is_taken_over_by_the_stores_clock() {
    let (store, offset) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    taken(acquire(&locker, &who("1"), None));
    advance(&offset, 30);
    assert!(matches!(
        acquire(&locker, &who("2"), None),
        Acquired::Blocked { .. }
    ));
    advance(&offset, 31);
    let (record, _, reentrant, stolen) = taken(acquire(&locker, &who("2"), None));
    assert!(!reentrant);
    assert_eq!(record.build_id, "2");
    assert_eq!(stolen.map(|h| h.build_id().to_owned()), Some("1".into()));
}

#[test]
fn renewing_moves_staleness_and_fails_once_the_lock_is_someone_elses() {
    let (store, offset) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let me = who("1");
    let (record, ..) = taken(acquire(&locker, &me, None));
    let mine = with_token(&me, &record);
    advance(&offset, 50);
    match locker.renew(ENV, &mine, None).expect("renew") {
        Renewed::Renewed(lock) => assert_eq!(lock.ttl, chrono::Duration::seconds(60)),
        other @ Renewed::Lost(_) => panic!("{other:?}"),
    }
    advance(&offset, 50);
    assert!(!locker.read(ENV).expect("read").expect("held").is_stale());
    assert!(matches!(
        acquire(&locker, &who("2"), None),
        Acquired::Blocked { .. }
    ));
    advance(&offset, 61);
    taken(acquire(&locker, &who("2"), None));
    assert!(matches!(
        locker.renew(ENV, &mine, None).expect("renew"),
        Renewed::Lost(Some(_))
    ));
}

#[test]
fn fencing_numbers_grow_with_every_acquisition() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let mut numbers = Vec::new();
    for build in ["1", "2", "3"] {
        let me = who(build);
        let (mut record, etag, ..) = taken(acquire(&locker, &me, None));
        match locker.fence(ENV, &mut record, &etag, None).expect("fence") {
            Fenced::Fenced { fence, .. } => numbers.push(fence),
            Fenced::Lost(_) => panic!("lost"),
        }
        let held = locker.read(ENV).expect("read").expect("held");
        assert_eq!(
            held.holder.record().and_then(|r| r.fence),
            numbers.last().copied()
        );
        locker
            .release(ENV, &with_token(&me, &record))
            .expect("release");
    }
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[test]
fn fencing_numbers_are_the_month_above_the_position_in_its_log_segment() {
    use crate::lock::fence::{month_of, number};
    let jan = chrono::DateTime::parse_from_rfc3339("2025-01-31T23:59:59Z").expect("time");
    let feb = chrono::DateTime::parse_from_rfc3339("2025-02-01T00:00:00Z").expect("time");
    let (jan, feb) = (month_of(jan.to_utc()), month_of(feb.to_utc()));
    assert_eq!(jan, 55 * 12);
    assert_eq!(feb, jan + 1);
    assert_eq!(
        crate::lock::audit::segment_key("prod", jan),
        "deployment-audit-prod..2025-01"
    );
    // A later month's first line is above every position of an earlier month.
    let last_of_january = number(jan, (1 << 40) - 1).expect("fits");
    assert!(number(feb, 0).expect("fits") > last_of_january);
    assert_eq!(number(jan, 1 << 40), None);
    // Above every number the old counter blob handed out.
    assert!(number(0, 0).is_some_and(|n| n == 0) && number(jan, 0) > Some(u64::from(u32::MAX)));
}

#[test]
fn a_fence_after_the_lock_was_taken_over_reports_the_loss() {
    let (store, offset) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let (mut record, etag, ..) = taken(acquire(&locker, &who("1"), None));
    advance(&offset, 61);
    taken(acquire(&locker, &who("2"), None));
    match locker.fence(ENV, &mut record, &etag, None).expect("fence") {
        Fenced::Lost(Some(now)) => assert_eq!(now.holder.build_id(), "2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn force_break_deletes_whoever_holds_it() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    taken(acquire(&locker, &who("1"), None));
    let broken = locker.force_break(ENV).expect("break").expect("was held");
    assert_eq!(broken.holder.build_id(), "1");
    assert!(locker.force_break(ENV).expect("break").is_none());
}

fn mine(queue: &mut Queue<'_>) -> bool {
    matches!(queue.my_turn(), Turn::Mine)
}

/// Who waits, as a ticket's metadata says.
fn waiter_of(build: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("pipeline".to_owned(), "github".to_owned()),
        ("build_id".to_owned(), build.to_owned()),
        (
            "run_url".to_owned(),
            format!("https://example.test/runs/{build}"),
        ),
    ])
}

#[test]
fn a_high_priority_waiter_goes_ahead_of_normal_ones_that_joined_before_it() {
    let (store, offset) = store();
    let poll = Duration::from_secs(10);
    let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let mut normal = Queue::new(&store, ENV, &"a".repeat(32), poll);
    let mut hotfix =
        Queue::new(&store, ENV, &"b".repeat(32), poll).with_order(Priority::High, None);
    assert!(!normal.others_waiting());
    normal.join(at);
    advance(&offset, 1);
    // Nobody of its priority waits: the hotfix would try the lock at once.
    assert!(!hotfix.others_waiting());
    hotfix.join(at + chrono::Duration::seconds(1));
    assert_eq!(hotfix.place(), Some((1, 2)));
    assert!(mine(&mut hotfix));
    assert!(!mine(&mut normal));
    hotfix.leave();
    assert!(mine(&mut normal));
}

#[test]
fn a_newer_run_with_the_same_key_supersedes_older_waiters_not_its_own_jobs() {
    let (store, _) = store();
    let poll = Duration::from_secs(10);
    let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let queue = |token: &str, build: &str, key: &str| {
        Queue::new(&store, ENV, &token.repeat(32), poll)
            .with_order(Priority::Normal, Some(key))
            .with_waiter(waiter_of(build))
    };
    let mut old = queue("a", "7", "deploy@main");
    let mut other_branch = queue("b", "8", "deploy@feature");
    let mut same_run = queue("c", "7", "deploy@main");
    old.join(at);
    other_branch.join(at + chrono::Duration::seconds(1));
    same_run.join(at + chrono::Duration::seconds(2));
    // Another branch's key and another job of our own run leave us in line.
    assert!(mine(&mut old));
    let mut new = queue("d", "9", "deploy@main");
    new.join(at + chrono::Duration::seconds(3));
    match old.my_turn() {
        Turn::Superseded(by) => {
            assert_eq!(by.build_id, "9");
            assert_eq!(by.run_url, "https://example.test/runs/9");
        }
        other => panic!("not superseded: {other:?}"),
    }
    assert!(matches!(same_run.my_turn(), Turn::Superseded(_)));
    assert!(!matches!(other_branch.my_turn(), Turn::Superseded(_)));
    // The newest is superseded by nobody.
    assert!(!matches!(new.my_turn(), Turn::Superseded(_)));
}

#[test]
fn waiters_are_served_in_the_order_they_joined() {
    let (store, offset) = store();
    let poll = Duration::from_secs(10);
    let mut first = Queue::new(&store, ENV, &"a".repeat(32), poll);
    let mut second = Queue::new(&store, ENV, &"b".repeat(32), poll);
    let mut third = Queue::new(&store, ENV, &"c".repeat(32), poll);
    assert!(!second.others_waiting());
    let now = |o: &AtomicI64| {
        DateTime::from_timestamp(1_700_000_000 + o.load(Ordering::SeqCst), 0).expect("time")
    };
    // Joined in the order third, first, second: the store's time decides, not the token.
    third.join(now(&offset));
    advance(&offset, 1);
    first.join(now(&offset));
    advance(&offset, 1);
    second.join(now(&offset));
    assert!(first.others_waiting());
    assert!(mine(&mut third));
    assert!(!mine(&mut first));
    assert!(!mine(&mut second));
    third.leave();
    assert!(mine(&mut first));
    assert!(!mine(&mut second));
    first.leave();
    assert!(mine(&mut second));
}

#[test]
fn a_waiter_whose_ticket_is_not_refreshed_is_skipped() {
    let (store, offset) = store();
    let poll = Duration::from_secs(1);
    let mut dead = Queue::new(&store, ENV, &"a".repeat(32), poll);
    let mut live = Queue::new(&store, ENV, &"b".repeat(32), poll);
    let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    dead.join(at);
    live.join(at + chrono::Duration::seconds(1));
    assert!(!mine(&mut live));
    // The first waiter refreshes every five of its one-second polls: dead after three of those.
    advance(&offset, 15);
    assert!(!mine(&mut live));
    advance(&offset, 1);
    assert!(mine(&mut live));
}

/// A clock that says a signal came.
struct Interrupted;

impl Clock for Interrupted {
    fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
    fn sleep(&self, _d: Duration) -> bool {
        false
    }
    fn cancelled(&self) -> bool {
        true
    }
    fn wall(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }
    fn random(&self) -> f64 {
        0.5
    }
}

#[test]
fn cancellation_reaches_the_lock_through_the_clock() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10)).with_clock(&Interrupted);
    assert!(matches!(
        acquire(&locker, &who("1"), Some(Duration::from_secs(60))),
        Acquired::Cancelled { .. }
    ));
    assert!(locker.read(ENV).expect("read").is_none());
}

/// A version remembered by an earlier process is used only as a read would be: it releases or
/// renews the caller's own lock in one request, never someone else's, and an outdated one falls
/// back to reading.
#[test]
fn a_remembered_version_never_releases_or_renews_someone_elses_lock() {
    let (store, offset) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let (mine, etag, ..) = taken(acquire(&locker, &who("1"), None));
    let now = locker.store_now();
    // Another caller holding the remembered record of build 1: refused, nothing deleted.
    assert!(matches!(
        locker
            .release_remembered(ENV, &who("2"), &mine, &etag, now)
            .expect("release"),
        Released::Refused(_)
    ));
    assert!(matches!(
        locker
            .renew_remembered(ENV, &who("2"), (&mine, &etag), None, now)
            .expect("renew"),
        Renewed::Lost(_)
    ));
    assert_eq!(
        locker.read(ENV).expect("read").map(|l| l.etag),
        Some(etag.clone())
    );
    // Ours: renewed in place, then the lock expires and build 3 takes it over.
    let Renewed::Renewed(renewed) = locker
        .renew_remembered(ENV, &who("1"), (&mine, &etag), None, now)
        .expect("renew")
    else {
        panic!("not renewed");
    };
    assert_ne!(renewed.etag, etag);
    advance(&offset, 120);
    let (theirs, ..) = taken(acquire(&locker, &who("3"), None));
    // The outdated version: the delete does not match, and the reading path finds nothing of
    // ours left (as after a delete whose answer was lost) and leaves build 3's lock alone.
    assert!(matches!(
        locker
            .release_remembered(ENV, &who("1"), &mine, &renewed.etag, locker.store_now())
            .expect("release"),
        Released::Absent
    ));
    let holder = locker.read(ENV).expect("read").expect("held");
    assert_eq!(
        holder.holder.record().map(|r| &r.token),
        Some(&theirs.token)
    );
}

/// A store whose next delete lands, after which someone else takes the lock, and whose answer is
/// lost: what a release on a known version meets when a retry of its delete finds the next
/// holder's version.
struct DeleteLandsUnanswered<'a> {
    inner: &'a MemoryStore,
    next_holder: &'a LockRecord,
}

impl crate::store::Store for DeleteLandsUnanswered<'_> {
    fn get(&self, key: &str) -> crate::store::StoreResult<crate::store::Read> {
        self.inner.get(key)
    }
    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> crate::store::StoreResult<crate::store::Written> {
        self.inner.create(key, data, metadata)
    }
    fn replace(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
        etag: &str,
    ) -> crate::store::StoreResult<crate::store::Written> {
        self.inner.replace(key, data, metadata, etag)
    }
    fn delete(&self, key: &str, etag: &str) -> crate::store::StoreResult<()> {
        self.inner.delete(key, etag)?;
        let next = self.next_holder;
        self.inner
            .create(key, &next.to_bytes(), &next.metadata())
            .map(|_| ())?;
        Err(crate::store::StoreError::Conflict)
    }
    fn list(&self, prefix: &str) -> crate::store::StoreResult<crate::store::Listing> {
        self.inner.list(prefix)
    }
    fn append(&self, key: &str, line: &[u8]) -> crate::store::StoreResult<u64> {
        self.inner.append(key, line)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_release_on_a_known_version_whose_delete_landed_unanswered_is_not_refused() {
    let (store, _) = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(10));
    let (mine, etag, ..) = taken(acquire(&locker, &who("1"), None));
    let next_holder = LockRecord {
        pipeline: "github".into(),
        build_id: "2".into(),
        job: "deploy".into(),
        token: "b".repeat(32),
        ..mine.clone()
    };
    let lossy = DeleteLandsUnanswered {
        inner: &store,
        next_holder: &next_holder,
    };
    let locker = Locker::new(&lossy, TTL, Duration::from_millis(10));
    let released = locker
        .release_known(ENV, &who("1"), &mine, &etag, locker.store_now())
        .expect("release");
    // Nothing of ours is left: not a refusal (exit 3) of a release that happened.
    assert!(matches!(released, Released::Absent), "{released:?}");
    let holder = locker.read(ENV).expect("read").expect("the next holder's");
    assert_eq!(holder.holder.build_id(), "2");
}

/// A freeze gate that overrides or not, and counts how often it was asked.
struct Gate {
    overrides: bool,
    asked: std::cell::Cell<u32>,
}

impl Gate {
    fn new(overrides: bool) -> Self {
        Self {
            overrides,
            asked: std::cell::Cell::new(0),
        }
    }
}

impl FreezeGate for Gate {
    fn overrides(&self, _: &str, _: &Window, _: DateTime<Utc>) -> bool {
        self.asked.set(self.asked.get() + 1);
        self.overrides
    }
}

fn freeze_for_an_hour(locker: &Locker<'_>, environment: &str) {
    locker
        .add_freeze(environment, &|now| Window {
            when: freeze::When::Once {
                from: now.timestamp(),
                until: now.timestamp() + 3600,
            },
            reason: "incident".into(),
            by: "ops".into(),
            created_at: String::new(),
        })
        .expect("freeze");
}

fn frozen(acquired: &Acquired) -> Option<bool> {
    match acquired {
        Acquired::Frozen {
            window, timed_out, ..
        } => {
            assert_eq!(window.reason, "incident");
            Some(*timed_out)
        }
        _ => None,
    }
}

#[test]
fn a_freeze_stops_every_take_and_never_a_lock_already_held() {
    let (store, _) = store();
    let poll = Duration::from_millis(5);
    let refuse = Gate::new(false);
    let overrides = Gate::new(true);
    let gated = |gate| Locker::new(&store, TTL, poll).with_freeze_gate(gate);
    // Held before the freeze: a nested acquire of its holder refreshes it during the freeze.
    let (held, ..) = taken(acquire(&gated(&refuse), &who("1"), None));
    freeze_for_an_hour(&gated(&refuse), ENV);
    freeze_for_an_hour(&gated(&refuse), "other");
    let (_, _, reentrant, _) = taken(acquire(&gated(&refuse), &who("1"), None));
    assert!(reentrant);
    let me = with_token(&who("1"), &held);
    assert!(matches!(
        gated(&refuse).release(ENV, &me).expect("release"),
        Released::Released(_)
    ));
    // One environment, fail-fast and waiting; capacity 2; a set.
    assert_eq!(
        frozen(&acquire(&gated(&refuse), &who("2"), None)),
        Some(false)
    );
    let wait = Some(Duration::from_millis(30));
    assert_eq!(
        frozen(&acquire(&gated(&refuse), &who("2"), wait)),
        Some(true)
    );
    let shared = gated(&refuse).with_capacity(2);
    assert_eq!(frozen(&acquire(&shared, &who("2"), None)), Some(false));
    let run = RunInfo::default();
    let set = gated(&refuse)
        .acquire_set(
            &["other", ENV],
            &who("2"),
            &Holding::new(&run, "test"),
            None,
        )
        .expect("set");
    assert!(
        matches!(&set, SetAcquired::Frozen { environment, .. } if environment == "other"),
        "{set:?}"
    );
    assert!(
        store.list(KEY_PREFIX).expect("list").entries.is_empty(),
        "nothing taken during the freeze"
    );
    // Overridden: taken, and the override was asked for.
    taken(acquire(&gated(&overrides), &who("2"), None));
    assert!(overrides.asked.get() >= 1);
    // A set whose members are ours already is nested: refreshed during the freeze.
    let nested = gated(&refuse)
        .acquire_set(&[ENV], &who("2"), &Holding::new(&run, "test"), None)
        .expect("nested set");
    assert!(matches!(nested, SetAcquired::Taken { .. }), "{nested:?}");
    // Without a gate the windows are not read at all.
    let ungated = Locker::new(&store, TTL, poll);
    assert!(matches!(
        acquire(&ungated, &who("2"), None),
        Acquired::Taken {
            reentrant: true,
            ..
        }
    ));
}
