//! The waiters' queue (docs/design.md, "Queue"): each waiter keeps a ticket blob, and only the oldest
//! live ticket tries to take the lock, so waiters are served first come, first served instead of
//! whoever polls at the right moment.
//!
//! The queue is advisory. It decides who tries; the conditional create still decides who wins,
//! so a broken or missing queue can cost fairness, never safety. Every queue error therefore
//! degrades to racing as before.
//!
//! A ticket's name (`ticket.rs`) says when its owner joined, how often it refreshed it then, its
//! priority and the digest of its supersede key; its metadata `refresh_ms` says how often it
//! does now (listings return both). The queue is in priority order, then in arrival order. A
//! ticket not refreshed for three of its refreshes (at least 2 s) belongs to a waiter that died,
//! and is skipped and cleaned up. Ticket names and metadata are written by anyone who can write
//! to the container: a declared refresh counts for at most `MAX_DECLARED_POLL`, so no ticket
//! holds up the queue for long.
//!
//! A waiter with a supersede key leaves the queue when it sees a newer waiter of another run with
//! the same key (`Turn::Superseded`): the first waiter then looks at the queue on every wake.
//!
//! The store's load is bounded however many wait (`cadence`): only the first waiter reads the
//! lock, about every second; the second looks at the queue every few seconds; the rest look and
//! refresh more rarely the longer the queue, so all of them together send about three requests
//! a second.
//!
//! A ticket says who waits: the holder fields the waiter's lock record would carry
//! (`LockRecord::metadata`, bounded below Azure's 8 KiB), as its metadata, so `status` shows
//! the queue from one listing on Azure, and as its body (a JSON object of the same fields, and
//! the waiter's CI run where it has one, so others can ask whether it ended), for stores that keep
//! no metadata. Tickets of earlier versions (body `waiting`) still count; they show as unknown
//! waiters.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::reaper::{Reaper, ticket_body};
use super::ticket::{self, MAX_DECLARED_POLL, Priority, REFRESH_META, Ticket};
use super::waiters::{Waiter, meta_decode, waiter};
use crate::ci::runs::CiRun;
use crate::log;
use crate::store::{Entry, Store, StoreError};

pub use super::ticket::QUEUE_PREFIX;

/// How often the first waiter reads the lock at most: a freed lock passes to it within about
/// this (plus its create).
pub const HEAD_POLL: Duration = Duration::from_secs(1);

/// The first waiter refreshes its ticket every this many looks at the lock.
const HEAD_REFRESH_EVERY: u32 = 5;

/// The waiters behind the second share about this many requests a second between them.
const BACK_REQUESTS_PER_SECOND: f64 = 1.4;

/// What a waiter does while it waits, by its place: how long it sleeps between wakes, whether a
/// wake reads the lock, every how many wakes it refreshes its ticket, whether a wake lists the
/// queue (to learn its place and clean up dead tickets), and the refresh interval its ticket
/// declares to the others.
///
/// The first two declare how often they really refresh, so a dead one is skipped soon. The
/// others declare twice their interval (at most `MAX_DECLARED_POLL`): their cadence changes
/// with every listing as the queue grows and shrinks, and must never be slower than what their
/// ticket says, or they would be taken for dead between their refreshes; a waiter whose new
/// place needs more rewrites its ticket at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub wake: Duration,
    pub reads_lock: bool,
    pub refresh_every: u32,
    pub lists: bool,
    pub declared: Duration,
}

impl Cadence {
    /// How often the ticket is refreshed.
    #[must_use]
    pub fn refresh(&self) -> Duration {
        self.wake * self.refresh_every
    }
}

/// The cadence of the waiter at `position` (0: first) among `waiting` live tickets, for the
/// configured poll `poll` (the first waiter reads the lock at most every `HEAD_POLL`).
///
/// Requests a second: the first reads the lock every `head`, and refreshes its ticket and lists
/// the queue every fifth time, `1.4 / head`; the second refreshes and lists every `5 head`, `0.4 / head`; each of the other
/// `waiting - 2` refreshes and lists every `(waiting - 2) · 2 / 1.4 head` (at least `5 head`, at
/// most `MAX_DECLARED_POLL`), so together about `1.4 / head`. With the one-second head (any
/// poll of a second or more) that is about three a second for a queue of up to about 55; a
/// longer one adds little per waiter. A shorter poll speeds every cadence up alike.
#[must_use]
pub fn cadence(position: usize, waiting: usize, poll: Duration) -> Cadence {
    let head = poll.min(HEAD_POLL);
    match position {
        0 => Cadence {
            wake: head,
            reads_lock: true,
            refresh_every: HEAD_REFRESH_EVERY,
            lists: false,
            declared: head * HEAD_REFRESH_EVERY,
        },
        1 => Cadence {
            wake: head * HEAD_REFRESH_EVERY,
            reads_lock: false,
            refresh_every: 1,
            lists: true,
            declared: head * HEAD_REFRESH_EVERY,
        },
        _ => {
            let behind = u32::try_from(waiting.saturating_sub(2)).unwrap_or(u32::MAX);
            // In units of the head's poll: with the one-second head, seconds.
            let spread = head.mul_f64(f64::from(behind) * 2.0 / BACK_REQUESTS_PER_SECOND);
            let low = head * HEAD_REFRESH_EVERY;
            let wake = spread.clamp(low, MAX_DECLARED_POLL.max(low));
            Cadence {
                wake,
                reads_lock: false,
                refresh_every: 1,
                lists: true,
                declared: (wake * 2).min(MAX_DECLARED_POLL.max(wake)),
            }
        }
    }
}

/// What one wake of a waiter found.
#[derive(Debug)]
pub enum Turn {
    /// We are first among the live waiters (or the queue cannot be read): try the lock.
    Mine,
    /// Someone is ahead of us.
    NotYet,
    /// A newer waiter of another run with our supersede key joined: we leave the queue.
    Superseded(Box<Waiter>),
}

/// One waiter's place in the queue of one environment.
pub struct Queue<'a> {
    store: &'a dyn Store,
    prefix: String,
    token: String,
    poll: Duration,
    priority: Priority,
    /// The digest of our supersede key.
    supersede: Option<String>,
    /// Who waits, as the ticket's metadata and body.
    waiter: BTreeMap<String, String>,
    body: Vec<u8>,
    /// Our run, named in our ticket so others can ask whether it ended; and who asks about theirs.
    run: Option<CiRun>,
    reaper: Option<&'a Reaper<'a>>,
    /// Our ticket's key, what its name says and its version, once we joined.
    ticket: Option<(String, Ticket, String)>,
    /// Our place among the live tickets (0: first) and how many there are, as last listed.
    position: usize,
    waiting: usize,
    /// Wakes since we joined, for the refreshes every so many wakes.
    wakes: u32,
    /// The refresh interval our ticket declares now.
    declared: Duration,
}

/// A ticket as listed: what its name says, its listing entry and whether its owner still
/// refreshes it.
struct Listed {
    ticket: Ticket,
    entry: Entry,
    live: bool,
}

impl<'a> Queue<'a> {
    #[must_use]
    pub fn new(store: &'a dyn Store, environment: &str, token: &str, poll: Duration) -> Self {
        Self {
            store,
            prefix: format!("{QUEUE_PREFIX}{environment}."),
            token: token.to_owned(),
            poll,
            priority: Priority::Normal,
            supersede: None,
            waiter: BTreeMap::new(),
            body: b"waiting".to_vec(),
            run: None,
            reaper: None,
            ticket: None,
            position: 0,
            waiting: 0,
            wakes: 0,
            declared: Duration::ZERO,
        }
    }

    /// Our priority, and the key a newer waiter of another run supersedes us with.
    #[must_use]
    pub fn with_order(self, priority: Priority, supersede: Option<&str>) -> Self {
        Self {
            priority,
            supersede: supersede.map(ticket::supersede_tag),
            ..self
        }
    }

    /// Names `run` in our ticket, and gives up the places of waiters whose runs ended.
    #[must_use]
    pub fn with_run(self, run: Option<CiRun>, reaper: Option<&'a Reaper<'a>>) -> Self {
        let body = ticket_body(&self.waiter, run.as_ref());
        Self {
            body,
            run,
            reaper,
            ..self
        }
    }

    /// Who waits, written as the ticket's metadata (`LockRecord::metadata` of the record the
    /// waiter would write), so others can see the queue.
    #[must_use]
    pub fn with_waiter(mut self, waiter: BTreeMap<String, String>) -> Self {
        self.body = ticket_body(&waiter, self.run.as_ref());
        self.waiter = waiter;
        self
    }

    /// Our place in line and how many wait (1-based), as of the latest look; None before we
    /// joined.
    #[must_use]
    pub fn place(&self) -> Option<(usize, usize)> {
        self.ticket
            .as_ref()
            .map(|_| (self.position + 1, self.waiting.max(self.position + 1)))
    }

    /// Our cadence at our place in the queue.
    #[must_use]
    pub fn cadence(&self) -> Cadence {
        cadence(self.position, self.waiting, self.poll)
    }

    /// Whether anyone is waiting ahead of where we would join (a newcomer then queues instead
    /// of jumping ahead; a high-priority one goes before normal waiters).
    pub fn others_waiting(&mut self) -> bool {
        match self.tickets() {
            Ok(tickets) => {
                let live = tickets.iter().filter(|t| t.live);
                self.waiting = live.clone().count();
                self.position = live.filter(|t| t.ticket.priority <= self.priority).count();
                self.position > 0
            }
            Err(e) => {
                log::debug(&format!("cannot read the waiters' queue: {e}"));
                false
            }
        }
    }

    /// Takes a ticket (once). `now` is the store's time. Returns our place (1 for the first)
    /// when this call took the ticket: the waiters seen ahead of us before, plus one; advisory,
    /// as the queue is.
    pub fn join(&mut self, now: DateTime<Utc>) -> Option<usize> {
        if self.ticket.is_some() {
            return None;
        }
        self.waiting += 1;
        let ours = Ticket {
            joined: now.timestamp_millis().max(0),
            token: self.token.clone(),
            poll: self.cadence().declared,
            priority: self.priority,
            supersede: self.supersede.clone(),
        };
        let key = format!(
            "{}{}",
            self.prefix,
            ours.name(self.cadence().declared.as_millis())
        );
        match self.store.create(&key, &self.body, &self.metadata()) {
            Ok(w) => {
                self.ticket = Some((key, ours, w.etag));
                self.declared = self.cadence().declared;
                Some(self.position + 1)
            }
            Err(e) => {
                log::debug(&format!("cannot join the waiters' queue: {e}"));
                None
            }
        }
    }

    /// Our ticket's metadata: who waits, and how often we refresh it at our place.
    fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = self.waiter.clone();
        metadata.insert(
            REFRESH_META.to_owned(),
            self.cadence().declared.as_millis().to_string(),
        );
        metadata
    }

    /// Rewrites our ticket (with what our place declares now); false when that failed.
    fn refresh(&mut self) -> bool {
        let Some((key, ours, etag)) = self.ticket.clone() else {
            return false;
        };
        let metadata = self.metadata();
        match self.store.replace(&key, &self.body, &metadata, &etag) {
            Ok(w) => self.ticket = Some((key, ours, w.etag)),
            // Someone took our ticket for a dead one: put it back in the same place.
            Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                match self.store.create(&key, &self.body, &metadata) {
                    Ok(w) => self.ticket = Some((key, ours, w.etag)),
                    Err(_) => return false,
                }
            }
            Err(e) => {
                log::debug(&format!("cannot refresh our place in the queue: {e}"));
                return false;
            }
        }
        self.declared = self.cadence().declared;
        true
    }

    /// One wake of a waiter: refreshes our ticket and lists the queue when our cadence says so,
    /// and says whether we are first among the live ones. Without a ticket, or when the queue
    /// cannot be read, it is always our turn (racing, as without a queue).
    ///
    /// The first waiter lists the queue when it refreshes, so a high-priority newcomer goes
    /// ahead of it within a refresh, and on every wake while it can be superseded.
    pub fn my_turn(&mut self) -> Turn {
        let Some((key, ours, _)) = self.ticket.clone() else {
            return Turn::Mine;
        };
        let cadence = self.cadence();
        self.wakes = self.wakes.wrapping_add(1);
        let refreshes = self.wakes.is_multiple_of(cadence.refresh_every);
        if refreshes && !self.refresh() {
            return Turn::Mine;
        }
        // The first wake after joining confirms our place, which joining only estimated.
        let lists = cadence.lists || refreshes || self.supersede.is_some() || self.wakes == 1;
        if !lists {
            return self.turn();
        }
        let mut tickets = match self.tickets() {
            Ok(tickets) => tickets,
            Err(e) => {
                log::debug(&format!("cannot read the waiters' queue: {e}"));
                return Turn::Mine;
            }
        };
        // A waiter ahead of us whose run ended (as its CI says) is gone like a dead one.
        if let Some(reaper) = self.reaper {
            for t in tickets.iter_mut().take_while(|t| t.entry.key != key) {
                t.live = t.live && reaper.ticket_ended(self.store, &t.entry.key).is_none();
            }
        }
        for dead in tickets.iter().filter(|t| !t.live) {
            // Best effort and conditional: a waiter that just came back keeps its ticket.
            let _ = self.store.delete(&dead.entry.key, &dead.entry.etag);
        }
        let live: Vec<&Listed> = tickets.iter().filter(|t| t.live).collect();
        if let Some(newer) = self.superseded_by(&ours, &live) {
            return Turn::Superseded(Box::new(newer));
        }
        self.waiting = live.len();
        // Not listed (taken for dead meanwhile): first, as without a queue.
        self.position = live.iter().position(|t| t.entry.key == key).unwrap_or(0);
        // A new place that refreshes more rarely than our ticket says is declared at once,
        // before the others take us for dead.
        if self.cadence().declared > self.declared {
            self.refresh();
        }
        self.turn()
    }

    fn turn(&self) -> Turn {
        if self.position == 0 {
            Turn::Mine
        } else {
            Turn::NotYet
        }
    }

    /// The newest live waiter of another run that carries our supersede key and joined after
    /// us, if any.
    fn superseded_by(&self, ours: &Ticket, live: &[&Listed]) -> Option<Waiter> {
        let tag = self.supersede.as_ref()?;
        let field = |name: &str| self.waiter.get(name).map(|v| meta_decode(v));
        let (our_pipeline, our_build) = (field("pipeline"), field("build_id"));
        live.iter()
            .rev()
            .filter(|t| t.ticket.supersede.as_ref() == Some(tag) && t.ticket.newer_than(ours))
            .map(|t| {
                let since = DateTime::from_timestamp_millis(t.ticket.joined);
                waiter(self.store, &t.entry, since)
            })
            .find(|w| {
                Some(&w.pipeline) != our_pipeline.as_ref()
                    || Some(&w.build_id) != our_build.as_ref()
            })
    }

    /// Gives up our ticket (we hold the lock, gave up, or were interrupted). A ticket left
    /// behind holds up the queue until it goes stale, so a lost answer is retried a few times.
    pub fn leave(&mut self) {
        let Some((key, _, mut etag)) = self.ticket.take() else {
            return;
        };
        for _ in 0..3 {
            match self.store.delete(&key, &etag) {
                Ok(()) | Err(StoreError::NotFound(_)) => return,
                // Only we write a ticket with our token in its name: a moved version is our own
                // refresh whose answer was lost. Remove the version that is there now.
                Err(StoreError::Conflict) => match self.store.get(&key) {
                    Ok(read) => match read.blob {
                        Some(blob) => etag = blob.etag,
                        None => return,
                    },
                    Err(e) => log::debug(&format!("cannot read our queue ticket {key}: {e}")),
                },
                Err(e) => log::debug(&format!("cannot remove our queue ticket {key}: {e}")),
            }
        }
    }

    /// This environment's tickets in queue order, each judged live or dead by the store's clock.
    fn tickets(&self) -> Result<Vec<Listed>, StoreError> {
        let listing = self.store.list(&self.prefix)?;
        let mut tickets: Vec<Listed> = listing
            .entries
            .into_iter()
            .filter_map(|entry| {
                let ticket = Ticket::parse(entry.key.get(self.prefix.len()..)?)?;
                let live = ticket.is_live(&entry, listing.now);
                Some(Listed {
                    ticket,
                    entry,
                    live,
                })
            })
            .collect();
        tickets.sort_by(|a, b| a.ticket.order(&b.ticket));
        Ok(tickets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests a second of a queue of `waiting` with a one-second head, from the cadences.
    fn load(waiting: usize) -> f64 {
        (0..waiting)
            .map(|p| {
                let c = cadence(p, waiting, Duration::from_secs(30));
                // The first lists the queue when it refreshes its ticket.
                let listings = if c.lists {
                    1.0
                } else {
                    1.0 / f64::from(c.refresh_every)
                };
                let per_wake =
                    f64::from(u8::from(c.reads_lock)) + 1.0 / f64::from(c.refresh_every) + listings;
                per_wake / c.wake.as_secs_f64()
            })
            .sum()
    }

    #[test]
    fn fifty_waiters_send_about_three_requests_a_second() {
        for waiting in [1, 2, 3, 10, 50] {
            assert!(load(waiting) <= 3.3, "{waiting}: {}", load(waiting));
        }
        // Beyond what the cadence spreads, each further waiter adds one request per 37.5 s.
        assert!(load(100) <= 4.5, "{}", load(100));
    }

    #[test]
    fn the_first_waiter_polls_every_second_and_is_taken_for_dead_within_fifteen() {
        let head = cadence(0, 50, Duration::from_secs(30));
        assert_eq!(head.wake, HEAD_POLL);
        assert!(head.reads_lock && !head.lists);
        assert_eq!(
            ticket::ticket_ttl(head.refresh()),
            chrono::Duration::seconds(15)
        );
        // The second notices within five seconds that it became the first.
        let second = cadence(1, 50, Duration::from_secs(30));
        assert_eq!(second.wake, Duration::from_secs(5));
        assert!(!second.reads_lock && second.lists);
        // The rest refresh at most every 75 s; a short queue keeps them close.
        assert_eq!(
            cadence(2, 100, Duration::from_secs(30)).wake,
            MAX_DECLARED_POLL
        );
        assert_eq!(
            cadence(2, 3, Duration::from_secs(30)).wake,
            Duration::from_secs(5)
        );
        // A short configured poll shortens every cadence (the simulation's virtual clock).
        assert_eq!(
            cadence(0, 5, Duration::from_millis(10)).wake,
            Duration::from_millis(10)
        );
    }
}
