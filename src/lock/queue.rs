//! The waiters' queue (docs/design.md, "Queue"): each waiter keeps a ticket blob, and only the oldest
//! live ticket tries to take the lock, so waiters are served first come, first served instead of
//! whoever polls at the right moment.
//!
//! The queue is advisory. It decides who tries; the conditional create still decides who wins,
//! so a broken or missing queue can cost fairness, never safety. Every queue error therefore
//! degrades to racing as before.
//!
//! A ticket is `deployment-queue-{env}.{joined}.{token}.{poll}`: `joined` is the store's time
//! (milliseconds) when the waiter joined, so names sort in arrival order, then by token; `poll`
//! (milliseconds) says how often its owner refreshed it when it joined, and the ticket's metadata
//! `refresh_ms` how often it does now (listings return both). A ticket not refreshed for three of
//! its refreshes (at least 2 s) belongs to a waiter that died, and is skipped and cleaned up.
//! Ticket names and metadata are written by anyone who can write to the container: a declared
//! refresh counts for at most `MAX_DECLARED_POLL`, so no ticket holds up the queue for long.
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
use crate::ci::runs::CiRun;
use crate::log;
use crate::store::{Entry, Store, StoreError};

pub const QUEUE_PREFIX: &str = "deployment-queue-";

/// The longest refresh interval a ticket's name or metadata is believed for. A live waiter that
/// refreshes less often is taken for dead between its refreshes, and puts its ticket back in
/// the same place.
const MAX_DECLARED_POLL: Duration = Duration::from_secs(75);

/// The ticket metadata that says how often its owner refreshes it now, in milliseconds.
const REFRESH_META: &str = "refresh_ms";

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
/// Requests a second: the first reads the lock every `head` and refreshes every fifth time,
/// `1.2 / head`; the second refreshes and lists every `5 head`, `0.4 / head`; each of the other
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

/// How long a ticket lives without a refresh, for its owner's poll interval. Taking a live
/// waiter for dead costs little (it puts its ticket back in the same place at its next poll),
/// while a dead waiter at the head holds up everyone behind it; so this is short, but at least
/// two seconds, since the store's times have whole seconds.
pub(super) fn ticket_ttl(poll: Duration) -> chrono::Duration {
    let ttl = (poll * 3).max(Duration::from_secs(2));
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// One waiter's place in the queue of one environment.
pub struct Queue<'a> {
    store: &'a dyn Store,
    prefix: String,
    token: String,
    poll: Duration,
    /// Who waits, as the ticket's metadata and body.
    waiter: BTreeMap<String, String>,
    body: Vec<u8>,
    /// Our run, named in our ticket so others can ask whether it ended; and who asks about theirs.
    run: Option<CiRun>,
    reaper: Option<&'a Reaper<'a>>,
    /// Our ticket's key and version, once we joined.
    ticket: Option<(String, String)>,
    /// Our place among the live tickets (0: first) and how many there are, as last listed.
    position: usize,
    waiting: usize,
    /// Wakes since we joined, for the refreshes every so many wakes.
    wakes: u32,
    /// The refresh interval our ticket declares now.
    declared: Duration,
}

/// A ticket as listed: its key, version and whether its owner still refreshes it.
struct Listed {
    key: String,
    live: bool,
    etag: String,
}

impl<'a> Queue<'a> {
    #[must_use]
    pub fn new(store: &'a dyn Store, environment: &str, token: &str, poll: Duration) -> Self {
        Self {
            store,
            prefix: format!("{QUEUE_PREFIX}{environment}."),
            token: token.to_owned(),
            poll,
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

    /// Whether anyone is waiting already (a newcomer then queues instead of jumping ahead).
    pub fn others_waiting(&mut self) -> bool {
        match self.tickets() {
            Ok(tickets) => {
                self.waiting = tickets.iter().filter(|t| t.live).count();
                self.waiting > 0
            }
            Err(e) => {
                log::debug(&format!("cannot read the waiters' queue: {e}"));
                false
            }
        }
    }

    /// Takes a ticket at the end of the queue (once). `now` is the store's time. Returns our
    /// place (1 for the first) when this call took the ticket: the waiters seen before, plus
    /// one; advisory, as the queue is.
    pub fn join(&mut self, now: DateTime<Utc>) -> Option<usize> {
        if self.ticket.is_some() {
            return None;
        }
        // Behind everyone listed so far.
        self.position = self.waiting;
        self.waiting += 1;
        let key = format!(
            "{}{:013}.{}.{}",
            self.prefix,
            now.timestamp_millis().max(0),
            self.token,
            self.cadence().declared.as_millis()
        );
        match self.store.create(&key, &self.body, &self.metadata()) {
            Ok(w) => {
                self.ticket = Some((key, w.etag));
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
    fn refresh(&mut self, key: &str, etag: &str) -> bool {
        let metadata = self.metadata();
        match self.store.replace(key, &self.body, &metadata, etag) {
            Ok(w) => self.ticket = Some((key.to_owned(), w.etag)),
            // Someone took our ticket for a dead one: put it back in the same place.
            Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                match self.store.create(key, &self.body, &metadata) {
                    Ok(w) => self.ticket = Some((key.to_owned(), w.etag)),
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
    pub fn my_turn(&mut self) -> bool {
        let Some((key, etag)) = self.ticket.clone() else {
            return true;
        };
        let cadence = self.cadence();
        self.wakes = self.wakes.wrapping_add(1);
        if self.wakes.is_multiple_of(cadence.refresh_every) && !self.refresh(&key, &etag) {
            return true;
        }
        // The first wake after joining confirms our place, which joining only estimated.
        if !cadence.lists && self.wakes > 1 {
            return self.position == 0;
        }
        match self.tickets() {
            Ok(mut tickets) => {
                // A waiter ahead of us whose run ended (as its CI says) is gone like a dead one.
                if let Some(reaper) = self.reaper {
                    for t in tickets.iter_mut().take_while(|t| t.key != key) {
                        t.live = t.live && reaper.ticket_ended(self.store, &t.key).is_none();
                    }
                }
                for dead in tickets.iter().filter(|t| !t.live) {
                    // Best effort and conditional: a waiter that just came back keeps its ticket.
                    let _ = self.store.delete(&dead.key, &dead.etag);
                }
                let live: Vec<&Listed> = tickets.iter().filter(|t| t.live).collect();
                self.waiting = live.len();
                // Not listed (taken for dead meanwhile): first, as without a queue.
                self.position = live.iter().position(|t| t.key == key).unwrap_or(0);
                // A new place that refreshes more rarely than our ticket says is declared at
                // once, before the others take us for dead.
                if self.cadence().declared > self.declared
                    && let Some((key, etag)) = self.ticket.clone()
                {
                    self.refresh(&key, &etag);
                }
                self.position == 0
            }
            Err(e) => {
                log::debug(&format!("cannot read the waiters' queue: {e}"));
                true
            }
        }
    }

    /// Gives up our ticket (we hold the lock, gave up, or were interrupted). A ticket left
    /// behind holds up the queue until it goes stale, so a lost answer is retried a few times.
    pub fn leave(&mut self) {
        let Some((key, mut etag)) = self.ticket.take() else {
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
            .filter_map(|e| {
                let live = is_live(&e, e.key.get(self.prefix.len()..)?, listing.now)?;
                Some(Listed {
                    key: e.key,
                    live,
                    etag: e.etag,
                })
            })
            .collect();
        tickets.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(tickets)
    }
}

/// Whether a listed ticket's owner still refreshes it, by the store's clock `now`: its
/// metadata's `refresh_ms` where it has one, else the interval its name declares (`rest`, the
/// name after the environment's prefix); None when it is not a ticket.
pub(super) fn is_live(entry: &Entry, rest: &str, now: DateTime<Utc>) -> Option<bool> {
    let named = parse_ticket(rest)?;
    let poll = entry
        .metadata
        .get(REFRESH_META)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(named, |ms| Duration::from_millis(ms).min(MAX_DECLARED_POLL));
    Some(
        entry
            .last_modified
            .checked_add_signed(ticket_ttl(poll))
            .is_none_or(|until| now <= until),
    )
}

/// `{joined:013}.{token:32 hex}.{poll ms}` → the poll interval, at most `MAX_DECLARED_POLL`;
/// anything else is not a ticket of this environment (an environment `a.b` shares the prefix of
/// `a`, but not this shape).
pub(super) fn parse_ticket(rest: &str) -> Option<Duration> {
    let mut parts = rest.split('.');
    let (joined, token, poll) = (parts.next()?, parts.next()?, parts.next()?);
    let shaped = parts.next().is_none()
        && joined.len() == 13
        && joined.bytes().all(|b| b.is_ascii_digit())
        && token.len() == 32
        && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !shaped {
        return None;
    }
    if poll.is_empty() || !poll.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for a number is as long as the longest we believe.
    let millis = poll.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_millis(millis).min(MAX_DECLARED_POLL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_names() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse_ticket(&format!("1700000000000.{token}.30000")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_ticket(&format!("b.1700000000000.{token}.30000")),
            None
        );
        assert_eq!(parse_ticket(&format!("1700000000000.{token}")), None);
        assert_eq!(parse_ticket("1700000000000.xyz.5"), None);
        assert_eq!(parse_ticket(&format!("17.{token}.5")), None);
        assert_eq!(parse_ticket(&format!("1700000000000.{token}.")), None);
        assert_eq!(parse_ticket(&format!("1700000000000.{token}.+5")), None);
    }

    #[test]
    fn a_declared_poll_counts_for_at_most_a_minute() {
        let token = "0123456789abcdef0123456789abcdef";
        for poll in [
            "604800000",
            "99999999999999999",
            "18446744073709551615",
            "99999999999999999999999999",
        ] {
            let poll = parse_ticket(&format!("0000000000000.{token}.{poll}")).expect("a ticket");
            assert_eq!(poll, MAX_DECLARED_POLL);
            assert_eq!(ticket_ttl(poll), chrono::Duration::seconds(225));
        }
    }

    #[test]
    fn dead_waiters_are_noticed_after_three_polls_or_two_seconds() {
        assert_eq!(
            ticket_ttl(Duration::from_millis(20)),
            chrono::Duration::seconds(2)
        );
        assert_eq!(
            ticket_ttl(Duration::from_secs(30)),
            chrono::Duration::seconds(90)
        );
    }

    /// Requests a second of a queue of `waiting` with a one-second head, from the cadences.
    fn load(waiting: usize) -> f64 {
        (0..waiting)
            .map(|p| {
                let c = cadence(p, waiting, Duration::from_secs(30));
                let per_wake = f64::from(u8::from(c.reads_lock))
                    + 1.0 / f64::from(c.refresh_every)
                    + f64::from(u8::from(c.lists));
                per_wake / c.wake.as_secs_f64()
            })
            .sum()
    }

    #[test]
    fn fifty_waiters_send_about_three_requests_a_second() {
        for waiting in [1, 2, 3, 10, 50] {
            assert!(load(waiting) <= 3.1, "{waiting}: {}", load(waiting));
        }
        // Beyond what the cadence spreads, each further waiter adds one request per 37.5 s.
        assert!(load(100) <= 4.5, "{}", load(100));
    }

    #[test]
    fn the_first_waiter_polls_every_second_and_is_taken_for_dead_within_fifteen() {
        let head = cadence(0, 50, Duration::from_secs(30));
        assert_eq!(head.wake, HEAD_POLL);
        assert!(head.reads_lock && !head.lists);
        assert_eq!(ticket_ttl(head.refresh()), chrono::Duration::seconds(15));
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
