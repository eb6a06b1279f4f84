//! The lock operations over a store: acquire, release, check, wait, force-break, status, renew.
//! Decisions come from `protocol`; this module does the requests and the waiting.

use std::cell::Cell;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::audit::{Discard, EventKind, EventSink, LockEvent};
use super::freeze::{Admit, FreezeGate, Window};
use super::protocol::{
    AcquireMove, AcquireStep, Identity, LockView, acquire_move, acquire_step, landed, time_left,
};
use super::queue::{Queue, Turn};
use super::reaper::Reaper;
use super::record::{Holder, LockRecord, SCHEMA};
use super::record::{KEY_PREFIX, SEED_TIMEOUT_MINUTES, key};
use super::ticket::Priority;
use super::waiters::Waiter;
use super::watch::{Unwatched, WaitSeen, WaitWatch};
use crate::ci::RunInfo;
use crate::clock::{Clock, SYSTEM};
use crate::log;
use crate::store::{Store, StoreError, StoreResult, Written};

/// Writes of one acquire that may end unanswered (each after the client's own retries) before
/// it gives up with an error.
pub(super) const MAX_UNANSWERED_WRITES: u32 = 3;

/// What a new acquisition writes beside the identity: the run's details and why.
#[derive(Debug, Clone, Copy)]
pub struct Holding<'a> {
    pub run: &'a RunInfo,
    pub reason: &'a str,
    /// Where a waiter stands in line.
    pub priority: Priority,
    /// `--supersede`: a newer waiter of another run with this key makes this one leave.
    pub supersede: Option<&'a str>,
}

impl<'a> Holding<'a> {
    /// A plain acquisition: normal priority, never superseded.
    #[must_use]
    pub fn new(run: &'a RunInfo, reason: &'a str) -> Self {
        Self {
            run,
            reason,
            priority: Priority::Normal,
            supersede: None,
        }
    }
}

/// The lock service for one store.
pub struct Locker<'a> {
    pub store: &'a dyn Store,
    /// The ttl of our own acquisitions.
    pub ttl: Duration,
    /// Judges records that carry no ttl (the seed's, unknown ones): the seed's own timeout.
    pub foreign_ttl: Duration,
    pub poll: Duration,
    /// The local clock: paces waits and measures how long we waited, never judges staleness.
    pub(super) clock: &'a dyn Clock,
    /// Told what a wait sees (the holder, our place in line), for the progress report.
    pub(super) watch: &'a dyn WaitWatch,
    /// The store's clock at its latest answer, for audit timestamps.
    last_now: Cell<Option<DateTime<Utc>>>,
    /// Where the events that happen inside an operation go (an acquire entering the queue).
    events: &'a dyn EventSink,
    /// Asks whether a holder's run has ended (`reap.rs`); None without a CI token.
    pub(super) reaper: Option<&'a Reaper<'a>>,
    /// Capacity (`slots.rs`): how many holders share each environment; 1 is a plain lock.
    pub(super) capacity: u32,
    /// Freeze windows are read before every write that would take a lock; None ignores them.
    pub(super) freeze_gate: Option<&'a dyn FreezeGate>,
}

#[derive(Debug)]
pub enum Acquired {
    /// We hold the lock now.
    Taken {
        record: LockRecord,
        /// The lock's version after our write, for the fencing write that follows.
        etag: String,
        /// It was already ours (same token, or same run and job): refreshed in place.
        reentrant: bool,
        /// A stale holder we took over from.
        stolen_from: Option<Holder>,
        /// The conclusion of the holder's run, when it was taken over because that run ended.
        reaped: Option<String>,
        waited: Duration,
    },
    /// Held by someone else (and we did not wait, or the wait ran out).
    Blocked {
        lock: Box<LockView>,
        waited: Duration,
        timed_out: bool,
    },
    /// A signal arrived while waiting; nothing is held.
    Cancelled { waited: Duration },
    /// A newer waiter of another run with our supersede key joined the queue: we left it.
    Superseded { by: Box<Waiter>, waited: Duration },
    /// A freeze window is in force (and we did not wait, or it outlasted the wait).
    Frozen {
        window: Box<Window>,
        waited: Duration,
        timed_out: bool,
    },
}

/// What one look at the lock during a wait found.
enum Look {
    Seen(Option<LockView>),
    /// The store did not answer this time; nothing new was learned.
    Unreadable,
}

#[derive(Debug)]
pub enum Waited {
    Free {
        waited: Duration,
    },
    TimedOut {
        lock: Box<LockView>,
        waited: Duration,
    },
    Cancelled {
        waited: Duration,
    },
}

/// A fresh 128-bit token from the operating system's random source.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the system's random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl<'a> Locker<'a> {
    #[must_use]
    pub fn new(store: &'a dyn Store, ttl: Duration, poll: Duration) -> Self {
        Self {
            store,
            ttl,
            foreign_ttl: Duration::from_secs_f64(SEED_TIMEOUT_MINUTES * 60.0),
            poll,
            clock: &SYSTEM,
            watch: &Unwatched,
            last_now: Cell::new(None),
            events: &Discard,
            reaper: None,
            capacity: 1,
            freeze_gate: None,
        }
    }

    /// The same locker letting up to `capacity` holders share an environment (`slots.rs`).
    #[must_use]
    pub fn with_capacity(self, capacity: u32) -> Self {
        Self {
            capacity: capacity.max(1),
            ..self
        }
    }

    /// This locker on one slot at a time (capacity 1), for `slots.rs`, which reads the freeze
    /// windows once for every pass over the slots.
    pub(super) fn single(&self) -> Locker<'a> {
        Locker {
            capacity: 1,
            ..self.ungated()
        }
    }

    /// This locker without reading freeze windows, for callers that read them once for several
    /// locks (a pass over slots or over the members of a set).
    pub(super) fn ungated(&self) -> Locker<'a> {
        Locker {
            freeze_gate: None,
            last_now: Cell::new(self.last_now.get()),
            ..*self
        }
    }

    /// The same locker, reading the freeze windows before it takes a lock; `gate` decides about
    /// overrides.
    #[must_use]
    pub fn with_freeze_gate(self, gate: &'a dyn FreezeGate) -> Self {
        Self {
            freeze_gate: Some(gate),
            ..self
        }
    }

    /// The same locker, reporting the events inside its operations to `events`.
    #[must_use]
    pub fn with_events(self, events: &'a dyn EventSink) -> Self {
        Self { events, ..self }
    }

    /// The same locker on another clock (the simulation's virtual one).
    #[must_use]
    pub fn with_clock(self, clock: &'a dyn Clock) -> Self {
        Self { clock, ..self }
    }

    /// The same locker, reaping holders whose runs have ended.
    #[must_use]
    pub fn with_reaper(self, reaper: Option<&'a Reaper<'a>>) -> Self {
        Self { reaper, ..self }
    }

    /// The same locker telling `watch` what its waits see.
    #[must_use]
    pub fn with_watch(self, watch: &'a dyn WaitWatch) -> Self {
        Self { watch, ..self }
    }

    /// Another timeout for records without a ttl of their own (`LOCK_TIMEOUT_MINUTES`).
    #[must_use]
    pub fn with_foreign_ttl(mut self, foreign_ttl: Duration) -> Self {
        self.foreign_ttl = foreign_ttl;
        self
    }

    pub(super) fn saw(&self, now: DateTime<Utc>) {
        self.last_now.set(Some(now));
    }

    /// The store's time as of its latest answer (our own clock only before the first answer).
    #[must_use]
    pub fn store_now(&self) -> DateTime<Utc> {
        self.last_now.get().unwrap_or_else(|| self.clock.wall())
    }

    /// When a waiter joins the queue: the store's time, which has whole seconds on Azure, with
    /// the local clock's milliseconds within that second, so that waiters who join in the same
    /// second of the store are in the order they joined, as far as their machines' clocks agree
    /// (a supersede key goes by who joined later).
    fn join_time(&self) -> DateTime<Utc> {
        let now = self.store_now();
        if now.timestamp_subsec_millis() != 0 {
            return now;
        }
        now + chrono::Duration::milliseconds(i64::from(self.clock.wall().timestamp_subsec_millis()))
    }

    /// The ttl a record carries: whole seconds, rounded up so a lock never goes stale before the
    /// holder's ttl. The store's `Last-Modified` and `Date` have whole seconds too, and "now is
    /// past Last-Modified + ttl" in whole seconds means that more than the ttl really passed.
    pub(super) fn ttl_seconds(&self) -> u64 {
        ttl_seconds(self.ttl)
    }

    pub(super) fn foreign_ttl_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.foreign_ttl).unwrap_or(chrono::Duration::MAX)
    }

    /// Reads and judges the lock of `environment`.
    pub fn read(&self, environment: &str) -> Result<Option<LockView>, StoreError> {
        let read = self.store.get(&key(environment))?;
        self.saw(read.now);
        Ok(read
            .blob
            .map(|b| LockView::new(&b, read.now, self.foreign_ttl_chrono())))
    }

    /// Takes the lock, re-entrant for our own run and job; waits up to `wait` when given.
    ///
    /// The first request is the conditional create, so an uncontended acquire costs one request.
    /// Every later write is conditional on the version just read.
    pub fn acquire(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        wait: Option<Duration>,
    ) -> anyhow::Result<Acquired> {
        // Capacity: the slots of a shared environment (lock/slots.rs).
        if self.capacity > 1 {
            return self.acquire_shared(environment, me, holding, wait);
        }
        // A token of our own making can only be on the lock if one of our writes put it there.
        let fresh_token = me.token.is_none();
        let token = match &me.token {
            Some(t) => t.clone(),
            None => new_token()?,
        };
        // Our own token identifies a create that succeeded although its answer was lost.
        let me = Identity {
            token: Some(token.clone()),
            ..me.clone()
        };
        // Only waiters queue; a fail-fast acquire stays one request.
        let mut queue = wait.map(|_| {
            let waiter = self
                .new_record(environment, &me, holding, &token)
                .metadata();
            Queue::new(self.store, environment, &token, self.poll)
                .with_order(holding.priority, holding.supersede)
                .with_waiter(waiter)
                .with_run(holding.run.ci_run.clone(), self.reaper)
        });
        let outcome =
            self.acquire_queued(environment, &me, holding, wait, fresh_token, queue.as_mut());
        if let Some(q) = queue.as_mut() {
            q.leave();
        }
        outcome
    }

    /// The acquire loop: reads, writes and waits; `protocol` decides each move.
    fn acquire_queued(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        wait: Option<Duration>,
        fresh_token: bool,
        mut queue: Option<&mut Queue<'_>>,
    ) -> anyhow::Result<Acquired> {
        let started = self.clock.elapsed();
        let token = me.token.clone().unwrap_or_default();
        // A newcomer behind earlier waiters takes its place in line instead of trying first.
        let mut our_turn = queue.as_deref_mut().is_none_or(|q| !q.others_waiting());
        let mut lock: Option<Option<LockView>> = if our_turn {
            None
        } else {
            Some(self.read(environment)?)
        };
        let mut unanswered = 0;
        // Told that a freeze makes us wait.
        let mut told = false;
        // Our latest create or takeover while its outcome is unknown: the record we sent and the
        // holder it replaced (None for a create). Finding that record later means the write landed
        // although its answer was lost: it is what it was, not a re-entrant refresh.
        let mut sent: Option<(LockRecord, Option<Holder>, Option<String>)> = None;
        loop {
            if self.clock.cancelled() {
                return Ok(Acquired::Cancelled {
                    waited: self.since(started),
                });
            }
            if let (Some((record, stolen_from, reaped)), Some(Some(view))) = (&sent, &lock)
                && let Some(landed) = landed(record, view, fresh_token)
            {
                let mut record = landed.clone();
                record.acquired_at = store_time(view.last_modified);
                return Ok(Acquired::Taken {
                    record,
                    etag: view.etag.clone(),
                    reentrant: false,
                    stolen_from: stolen_from.clone(),
                    reaped: reaped.clone(),
                    waited: self.since(started),
                });
            }
            let step = match &lock {
                None => AcquireStep::Create,
                Some(current) => acquire_step(current.as_ref(), me),
            };
            // Only a waiter asks the holder's CI: a fail-fast acquire stays as cheap as it was.
            let (step, reaped) = if wait.is_some() {
                self.reap_step(step, lock.as_ref().and_then(Option::as_ref))
            } else {
                (step, None)
            };
            let left = time_left(wait, self.since(started));
            let mut next = acquire_move(step, our_turn, left, wait.is_some());
            // A freeze is judged right before the write that would take the lock; a wait for
            // a freeze looks at the freeze windows next, not at the lock.
            let (mut frozen, mut window) = (false, None);
            if let AcquireMove::Write(step) = &next
                && !matches!(step, AcquireStep::Refresh { .. })
            {
                match self.admit(environment, left)? {
                    Admit::Go => {}
                    // Frozen before we ever read the lock: it may be ours already (nested), and a
                    // freeze never touches a lock that is held. Read it and decide again.
                    _ if lock.is_none() => {
                        lock = Some(self.read(environment)?);
                        continue;
                    }
                    admit @ Admit::Wait { .. } => {
                        admit.note(environment, &mut told);
                        frozen = true;
                        if let Admit::Wait { window: w, .. } = admit {
                            window = w;
                        }
                        next = AcquireMove::Wait {
                            left: left.unwrap_or_default(),
                        };
                    }
                    Admit::Frozen(window) => {
                        return Ok(Acquired::Frozen {
                            window,
                            waited: self.since(started),
                            timed_out: wait.is_some(),
                        });
                    }
                }
            }
            let step = match next {
                AcquireMove::Write(step) => step,
                AcquireMove::Wait { left } => {
                    if let Some(q) = queue.as_deref_mut()
                        && let Some(position) = q.join(self.join_time())
                    {
                        let mut event = LockEvent::of(
                            EventKind::Waiting,
                            environment,
                            me,
                            holding.run,
                            self.store_now(),
                        );
                        holding.reason.clone_into(&mut event.reason);
                        event.position = Some(position as u64);
                        event.priority = holding.priority;
                        event.other = lock
                            .as_ref()
                            .and_then(Option::as_ref)
                            .map(|l| l.holder.describe())
                            .unwrap_or_default();
                        self.events.record(&event);
                    }
                    self.watch.seen(&WaitSeen {
                        lock: lock.as_ref().and_then(Option::as_ref),
                        place: queue.as_deref().and_then(Queue::place),
                        elapsed: self.since(started),
                        frozen: window.as_deref(),
                    });
                    // Our place in the queue paces us (docs/design.md, "Requests").
                    let interval = queue.as_deref().map_or(self.poll, |q| q.cadence().wake);
                    if !self.pause(interval, left) {
                        return Ok(Acquired::Cancelled {
                            waited: self.since(started),
                        });
                    }
                    our_turn = match queue.as_deref_mut().map(Queue::my_turn) {
                        None | Some(Turn::Mine) => true,
                        Some(Turn::NotYet) => false,
                        Some(Turn::Superseded(by)) => {
                            return Ok(Acquired::Superseded {
                                by,
                                waited: self.since(started),
                            });
                        }
                    };
                    // Only the first waiter reads the lock, and anyone for its last try; during
                    // a freeze the lock was free, and the freeze windows are read first (the
                    // write that follows is conditional, so an outdated view only costs a read).
                    let last_try = time_left(wait, self.since(started)).is_none();
                    if (our_turn || last_try)
                        && !frozen
                        && let Look::Seen(current) = self.read_while_waiting(environment)?
                    {
                        lock = Some(current);
                    }
                    continue;
                }
                AcquireMove::Blocked { timed_out } => {
                    let Some(current) = lock.and_then(|l| l).map(Box::new) else {
                        return Err(anyhow::anyhow!("internal error: blocked without a lock"));
                    };
                    return Ok(Acquired::Blocked {
                        lock: current,
                        waited: self.since(started),
                        timed_out,
                    });
                }
            };
            let current = lock.as_ref().and_then(Option::as_ref);
            let (record, result, stolen_from) =
                self.write_step(environment, me, holding, &token, &step, current);
            let reentrant = matches!(step, AcquireStep::Refresh { .. });
            if !reentrant {
                sent = Some((record.clone(), stolen_from.clone(), reaped.clone()));
            }
            match result {
                Ok(written) => {
                    self.saw(written.now);
                    let mut record = record;
                    if !reentrant {
                        // The store's time of the write that took the lock; the fencing write
                        // that follows records it.
                        record.acquired_at = store_time(written.last_modified);
                    }
                    return Ok(Acquired::Taken {
                        record,
                        etag: written.etag,
                        reentrant,
                        stolen_from,
                        reaped,
                        waited: self.since(started),
                    });
                }
                // Lost a race, or our earlier attempt may have landed: read again and decide.
                Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                    lock = Some(self.read(environment)?);
                }
                // The write may or may not have reached the store. Only our token can tell.
                Err(StoreError::Transient(msg)) => {
                    // Each failed write already used the client's retries; a store that reads
                    // but never answers writes must end in an error, not an endless loop.
                    unanswered += 1;
                    if unanswered >= MAX_UNANSWERED_WRITES {
                        return Err(anyhow::anyhow!(
                            "{msg}; the lock on {environment} could not be written {unanswered} \
                             times in a row, so it may or may not be held now. If it landed, it \
                             expires after the ttl; free it sooner with `deploy-lock release \
                             {environment} --token {token}`"
                        ));
                    }
                    let current = self.read(environment).map_err(|e| {
                        anyhow::anyhow!(
                            "{msg}; and reading the lock back to see whether the acquire landed \
                             failed too: {e}. If it landed, it expires after the ttl; free it \
                             sooner with `deploy-lock release {environment} --token {token}`"
                        )
                    })?;
                    lock = Some(current);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One write of an acquire: the record written, the store's answer, and the holder a
    /// takeover replaced.
    fn write_step(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        token: &str,
        step: &AcquireStep,
        current: Option<&LockView>,
    ) -> (LockRecord, StoreResult<Written>, Option<Holder>) {
        let key = key(environment);
        match step {
            AcquireStep::Refresh { etag } => {
                let record = self.refreshed_record(environment, me, holding, current);
                let r = self
                    .store
                    .replace(&key, &record.to_bytes(), &record.metadata(), etag);
                (record, r, None)
            }
            AcquireStep::Steal { etag } => {
                let record = self.new_record(environment, me, holding, token);
                let r = self
                    .store
                    .replace(&key, &record.to_bytes(), &record.metadata(), etag);
                (record, r, current.map(|l| l.holder.clone()))
            }
            AcquireStep::Create | AcquireStep::Blocked => {
                let record = self.new_record(environment, me, holding, token);
                let r = self
                    .store
                    .create(&key, &record.to_bytes(), &record.metadata());
                (record, r, None)
            }
        }
    }

    /// A read during a wait: a store that is briefly unreachable (already retried by the store)
    /// does not end a wait of many minutes; it is reported and the wait goes on.
    fn read_while_waiting(&self, environment: &str) -> Result<Look, StoreError> {
        match self.read(environment) {
            Ok(lock) => Ok(Look::Seen(lock)),
            Err(StoreError::Transient(msg)) => {
                log::warn(&format!(
                    "could not look at the lock on {environment} ({msg}); still waiting"
                ));
                Ok(Look::Unreadable)
            }
            Err(e) => Err(e),
        }
    }

    /// Sleeps `interval`, jittered (at most `left`); false when cancelled meanwhile.
    pub(super) fn pause(&self, interval: Duration, left: Duration) -> bool {
        let interval = self.clock.jitter(interval).min(left);
        self.clock.sleep(interval)
    }

    /// How long since `started`, a reading of `self.clock.elapsed()`.
    pub(super) fn since(&self, started: Duration) -> Duration {
        self.clock.elapsed().saturating_sub(started)
    }

    fn new_record(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        token: &str,
    ) -> LockRecord {
        LockRecord {
            schema: SCHEMA,
            environment: environment.to_owned(),
            pipeline: me.pipeline.clone(),
            build_id: me.build_id.clone(),
            job: me.job.clone(),
            job_name: holding.run.job_name.clone(),
            attempt: holding.run.attempt.clone(),
            token: token.to_owned(),
            // The store's clock at its latest answer: no later than this write. Before any
            // answer, nothing: readers then go by the blob's creation time.
            acquired_at: self.last_now.get().map(store_time).unwrap_or_default(),
            ttl_seconds: self.ttl_seconds(),
            fence: None,
            run_url: holding.run.run_url.clone(),
            repository: holding.run.repository.clone(),
            git_ref: holding.run.git_ref.clone(),
            commit: holding.run.commit.clone(),
            actor: holding.run.actor.clone(),
            reason: holding.reason.to_owned(),
            host: holding.run.host.clone(),
            ci_run: holding.run.ci_run.clone(),
        }
    }

    /// A re-entrant acquire is nested in the acquisition that took the lock: the record stays
    /// that holder's (token, start, fence, identity), and its ttl is never shortened, only
    /// extended to ours. A seed-format lock of ours is upgraded to a full record.
    fn refreshed_record(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        current: Option<&LockView>,
    ) -> LockRecord {
        let Some(old) = current.and_then(|l| l.holder.record()) else {
            let token = me.token.clone().unwrap_or_default();
            return self.new_record(environment, me, holding, &token);
        };
        let mut record = old.clone();
        record.ttl_seconds = record.ttl_seconds.max(self.ttl_seconds());
        if record.reason.is_empty() {
            holding.reason.clone_into(&mut record.reason);
        }
        record
    }

    /// Waits until the lock is free (or stale), up to `timeout`.
    pub fn wait_free(&self, environment: &str, timeout: Duration) -> anyhow::Result<Waited> {
        // Capacity: free when any slot is (lock/slots.rs).
        if self.capacity > 1 {
            return self.wait_shared(environment, timeout);
        }
        let started = self.clock.elapsed();
        let mut last: Option<LockView> = None;
        loop {
            let lock = match self.read_while_waiting(environment)? {
                Look::Seen(Some(l)) if !l.is_stale() => l,
                Look::Seen(_) => {
                    return Ok(Waited::Free {
                        waited: self.since(started),
                    });
                }
                // Unreadable this time: keep what we saw last, or wait a poll and look again.
                Look::Unreadable => match last.take() {
                    Some(l) => l,
                    None if self.since(started) < timeout => {
                        if !self.pause(self.poll, timeout.saturating_sub(self.since(started))) {
                            return Ok(Waited::Cancelled {
                                waited: self.since(started),
                            });
                        }
                        continue;
                    }
                    None => {
                        return Err(anyhow::anyhow!(
                            "could not read the lock on {environment} before the wait ran out"
                        ));
                    }
                },
            };
            self.watch.seen(&WaitSeen {
                lock: Some(&lock),
                place: None,
                elapsed: self.since(started),
                frozen: None,
            });
            last = Some(lock.clone());
            let left = timeout.saturating_sub(self.since(started));
            if left.is_zero() {
                return Ok(Waited::TimedOut {
                    lock: Box::new(lock),
                    waited: self.since(started),
                });
            }
            if !self.pause(self.poll, left) {
                return Ok(Waited::Cancelled {
                    waited: self.since(started),
                });
            }
        }
    }

    /// Every lock in the store.
    pub fn status(&self) -> anyhow::Result<Vec<(String, Result<LockView, StoreError>)>> {
        let listing = self.store.list(KEY_PREFIX)?;
        let envs: Vec<&str> = listing
            .entries
            .iter()
            .filter_map(|e| e.key.strip_prefix(KEY_PREFIX))
            .collect();
        let keys: Vec<String> = envs.iter().map(|env| key(env)).collect();
        // Read whole, concurrently where the store can: the record's ttl and a seed-format body
        // are not in the listing. A blob that cannot be read is reported in its row; one odd
        // blob never hides the others.
        let mut out = Vec::new();
        for (env, read) in envs.into_iter().zip(self.store.get_many(&keys)) {
            match read {
                Ok(read) => {
                    self.saw(read.now);
                    if let Some(blob) = read.blob {
                        let view = LockView::new(&blob, read.now, self.foreign_ttl_chrono());
                        out.push((env.to_owned(), Ok(view)));
                    }
                }
                Err(e) => out.push((env.to_owned(), Err(e))),
            }
        }
        Ok(out)
    }
}

/// A ttl as a record carries it: whole seconds, rounded up (see `Locker::ttl_seconds`).
pub(super) fn ttl_seconds(ttl: Duration) -> u64 {
    (ttl.as_secs_f64().ceil() as u64).max(1)
}

/// A time of the store's clock as a record holds it.
pub(super) fn store_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
