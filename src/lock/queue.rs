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
//! (milliseconds) says how often its owner refreshes it. A ticket not refreshed for three polls
//! (at least 2 s) belongs to a waiter that died, and is skipped and cleaned up. Ticket names are
//! written by anyone who can write to the container: a declared poll counts for at most
//! `MAX_DECLARED_POLL`, so no ticket holds up the queue for longer than a few minutes.
//!
//! A ticket says who waits: the holder fields the waiter's lock record would carry
//! (`LockRecord::metadata`, bounded below Azure's 8 KiB), as its metadata, so `status` shows
//! the queue from one listing on Azure, and as its body (a JSON object of the same fields), for
//! stores that keep no metadata. Tickets of earlier versions (body `waiting`) still count; they
//! show as unknown waiters.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::reaper::{Reaper, ticket_body};
use crate::ci::runs::CiRun;
use crate::log;
use crate::store::{Store, StoreError};

pub const QUEUE_PREFIX: &str = "deployment-queue-";

/// The longest poll interval a ticket's name is believed for. A live waiter that polls less
/// often is taken for dead between its polls, and puts its ticket back in the same place.
const MAX_DECLARED_POLL: Duration = Duration::from_secs(60);

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
    /// Our ticket's key and version, once we joined.
    ticket: Option<(String, String)>,
    /// Live tickets ahead of us when we last looked, for our place when we join.
    ahead: usize,
    /// Our run, named in our ticket so others can ask whether it ended; and who asks about theirs.
    run: Option<CiRun>,
    reaper: Option<&'a Reaper<'a>>,
    /// Our place among the live tickets and how many there are, as of the latest look.
    place: Option<(usize, usize)>,
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
            ticket: None,
            ahead: 0,
            run: None,
            reaper: None,
            place: None,
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

    /// Whether anyone is waiting already (a newcomer then queues instead of jumping ahead).
    pub fn others_waiting(&mut self) -> bool {
        match self.tickets() {
            Ok(tickets) => {
                self.ahead = tickets.iter().filter(|t| t.live).count();
                self.ahead > 0
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
        let key = format!(
            "{}{:013}.{}.{}",
            self.prefix,
            now.timestamp_millis().max(0),
            self.token,
            self.poll.as_millis()
        );
        match self.store.create(&key, &self.body, &self.waiter) {
            Ok(w) => {
                self.ticket = Some((key, w.etag));
                Some(self.ahead + 1)
            }
            Err(e) => {
                log::debug(&format!("cannot join the waiters' queue: {e}"));
                None
            }
        }
    }

    /// Refreshes our ticket and says whether it is first among the live ones. Without a ticket,
    /// or when the queue cannot be read, it is always our turn (racing, as without a queue).
    pub fn my_turn(&mut self) -> bool {
        let Some((key, etag)) = self.ticket.clone() else {
            return true;
        };
        match self.store.replace(&key, &self.body, &self.waiter, &etag) {
            Ok(w) => self.ticket = Some((key.clone(), w.etag)),
            // Someone took our ticket for a dead one: put it back in the same place.
            Err(StoreError::Conflict | StoreError::NotFound(_)) => {
                match self.store.create(&key, &self.body, &self.waiter) {
                    Ok(w) => self.ticket = Some((key.clone(), w.etag)),
                    Err(_) => return true,
                }
            }
            Err(e) => {
                log::debug(&format!("cannot refresh our place in the queue: {e}"));
                return true;
            }
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
                self.place = place_in_line(&tickets, &key);
                tickets
                    .iter()
                    .find(|t| t.live)
                    .is_none_or(|first| first.key == key)
            }
            Err(e) => {
                log::debug(&format!("cannot read the waiters' queue: {e}"));
                true
            }
        }
    }

    /// Our place in line and how many wait (1-based), as of the latest `my_turn`.
    #[must_use]
    pub fn place(&self) -> Option<(usize, usize)> {
        self.place
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
                let poll = parse_ticket(e.key.get(self.prefix.len()..)?)?;
                let live = e
                    .last_modified
                    .checked_add_signed(ticket_ttl(poll))
                    .is_none_or(|until| listing.now <= until);
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

/// Our place among the live tickets (1-based) and how many are live.
fn place_in_line(tickets: &[Listed], ours: &str) -> Option<(usize, usize)> {
    let live: Vec<&Listed> = tickets.iter().filter(|t| t.live).collect();
    let at = live.iter().position(|t| t.key == ours)?;
    Some((at + 1, live.len()))
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
            assert_eq!(ticket_ttl(poll), chrono::Duration::minutes(3));
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
}
