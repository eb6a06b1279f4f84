//! Queue ticket names (docs/design.md, "Queue"): everything the queue's order needs is in the
//! name, so one listing orders the queue on every store.
//!
//! `deployment-queue-{env}.{joined}.{token}.{poll}[.{tag}]`: `joined` is the store's time in
//! milliseconds (13 digits) when the waiter joined, `token` its 32 hex digits, `poll` how often
//! it refreshed its ticket when it joined (milliseconds). The optional `tag` is `h` (priority
//! high) or `n` (normal), followed by 16 hex digits when the waiter can be superseded: the first
//! 64 bits of the SHA-256 of its supersede key. A plain ticket is a normal waiter without a key.
//!
//! The environment may contain dots; the rest of the name is read from its end, where a poll
//! (digits) and a tag (a letter first) never look alike.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::Entry;

pub const QUEUE_PREFIX: &str = "deployment-queue-";

/// The longest refresh interval a ticket's name or metadata is believed for. A live waiter that
/// refreshes less often is taken for dead between its refreshes, and puts its ticket back in
/// the same place.
pub const MAX_DECLARED_POLL: Duration = Duration::from_secs(75);

/// The ticket metadata that says how often its owner refreshes it now, in milliseconds.
pub const REFRESH_META: &str = "refresh_ms";

/// Hex digits of a supersede key's digest in a ticket's name.
const TAG_HEX: usize = 16;

/// Where a waiter stands in line: `High` goes ahead of every `Normal` waiter (never ahead of the
/// holder, whose lock is never cut short).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
}

impl Priority {
    /// `high` or `normal`, as the command line, the audit log and JSON spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
        }
    }

    #[must_use]
    pub fn is_normal(&self) -> bool {
        *self == Self::Normal
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "high" => Some(Self::High),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }

    fn letter(self) -> char {
        match self {
            Self::High => 'h',
            Self::Normal => 'n',
        }
    }
}

/// The digest of a supersede key as ticket names carry it.
#[must_use]
pub fn supersede_tag(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    digest
        .iter()
        .take(TAG_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One ticket, as its name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// When its owner joined, milliseconds of the store's clock.
    pub joined: i64,
    pub token: String,
    /// The refresh interval its name declares, at most `MAX_DECLARED_POLL`.
    pub poll: Duration,
    pub priority: Priority,
    /// The digest of its supersede key.
    pub supersede: Option<String>,
}

impl Ticket {
    /// The name after the environment's prefix: `{joined}.{token}.{poll}[.{tag}]`.
    #[must_use]
    pub fn name(&self, poll_ms: u128) -> String {
        let mut name = format!("{:013}.{}.{poll_ms}", self.joined.max(0), self.token);
        if self.priority != Priority::Normal || self.supersede.is_some() {
            name.push('.');
            name.push(self.priority.letter());
            name.push_str(self.supersede.as_deref().unwrap_or_default());
        }
        name
    }

    /// A ticket of one environment from its name after `deployment-queue-{env}.`; None for
    /// anything else (an environment `a.b` shares the prefix of `a`, but not this shape).
    #[must_use]
    pub fn parse(rest: &str) -> Option<Self> {
        match split(rest)? {
            ("", ticket) => Some(ticket),
            _ => None,
        }
    }

    /// Queue order: high before normal, then by arrival, then by token.
    #[must_use]
    pub fn order(&self, other: &Self) -> Ordering {
        (self.priority, self.joined, &self.token).cmp(&(other.priority, other.joined, &other.token))
    }

    /// Whether it joined after `other`, whatever their priorities.
    #[must_use]
    pub fn newer_than(&self, other: &Self) -> bool {
        (self.joined, &self.token) > (other.joined, &other.token)
    }

    /// Whether its owner still refreshes it, by the store's clock `now`: its metadata's
    /// `refresh_ms` where it has one, else the interval its name declares.
    #[must_use]
    pub fn is_live(&self, entry: &Entry, now: DateTime<Utc>) -> bool {
        let poll = entry
            .metadata
            .get(REFRESH_META)
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(self.poll, |ms| {
                Duration::from_millis(ms).min(MAX_DECLARED_POLL)
            });
        entry
            .last_modified
            .checked_add_signed(ticket_ttl(poll))
            .is_none_or(|until| now <= until)
    }
}

/// How long a ticket lives without a refresh, for its owner's poll interval. Taking a live
/// waiter for dead costs little (it puts its ticket back in the same place at its next poll),
/// while a dead waiter at the head holds up everyone behind it; so this is short, but at least
/// two seconds, since the store's times have whole seconds.
#[must_use]
pub fn ticket_ttl(poll: Duration) -> chrono::Duration {
    let ttl = (poll * 3).max(Duration::from_secs(2));
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// `{env}.{joined}.{token}.{poll}[.{tag}]` (a name after `QUEUE_PREFIX`) → the environment
/// and the ticket. A name that is only `{joined}.{token}.{poll}[.{tag}]` gives an empty
/// environment.
#[must_use]
pub fn split(rest: &str) -> Option<(&str, Ticket)> {
    let (front, last) = match rest.rsplit_once('.') {
        Some((front, last)) => (front, last),
        None => ("", rest),
    };
    let (head, tag) = match parse_tag(last) {
        Some(tag) => (front, Some(tag)),
        None => (rest, None),
    };
    let (head, poll) = head.rsplit_once('.')?;
    let (head, token) = head.rsplit_once('.')?;
    let (env, joined) = match head.rsplit_once('.') {
        Some((env, joined)) => (env, joined),
        None => ("", head),
    };
    let shaped = joined.len() == 13
        && joined.bytes().all(|b| b.is_ascii_digit())
        && token.len() == 32
        && token.bytes().all(|b| b.is_ascii_hexdigit())
        && !poll.is_empty()
        && poll.bytes().all(|b| b.is_ascii_digit());
    if !shaped {
        return None;
    }
    // Too many digits for a number is as long as the longest we believe.
    let millis = poll.parse::<u64>().unwrap_or(u64::MAX);
    let (priority, supersede) = tag.unwrap_or((Priority::Normal, None));
    Some((
        env,
        Ticket {
            joined: joined.parse().ok()?,
            token: token.to_owned(),
            poll: Duration::from_millis(millis).min(MAX_DECLARED_POLL),
            priority,
            supersede,
        },
    ))
}

/// `h` / `n`, then nothing or the 16 hex digits of a supersede key.
fn parse_tag(text: &str) -> Option<(Priority, Option<String>)> {
    let priority = match text.as_bytes().first()? {
        b'h' => Priority::High,
        b'n' => Priority::Normal,
        _ => return None,
    };
    let digest = &text[1..];
    if digest.is_empty() {
        return Some((priority, None));
    }
    let shaped = digest.len() == TAG_HEX
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    shaped.then(|| (priority, Some(digest.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn ticket_names() {
        let t = Ticket::parse(&format!("1700000000000.{TOKEN}.30000")).expect("a ticket");
        assert_eq!(t.poll, Duration::from_secs(30));
        assert_eq!(
            (t.priority, t.supersede.as_deref()),
            (Priority::Normal, None)
        );
        assert_eq!(
            Ticket::parse(&format!("b.1700000000000.{TOKEN}.30000")),
            None
        );
        assert_eq!(Ticket::parse(&format!("1700000000000.{TOKEN}")), None);
        assert_eq!(Ticket::parse("1700000000000.xyz.5"), None);
        assert_eq!(Ticket::parse(&format!("17.{TOKEN}.5")), None);
        assert_eq!(Ticket::parse(&format!("1700000000000.{TOKEN}.")), None);
        assert_eq!(Ticket::parse(&format!("1700000000000.{TOKEN}.+5")), None);
        assert_eq!(Ticket::parse(&format!("1700000000000.{TOKEN}.5.x")), None);
        assert_eq!(
            Ticket::parse(&format!("1700000000000.{TOKEN}.5.habc")),
            None
        );
    }

    #[test]
    fn priority_and_supersede_key_round_trip_through_the_name() {
        let tag = supersede_tag("deploy.yml@refs/heads/main");
        assert_eq!(tag.len(), 16);
        for (priority, supersede) in [
            (Priority::High, None),
            (Priority::High, Some(tag.clone())),
            (Priority::Normal, Some(tag.clone())),
            (Priority::Normal, None),
        ] {
            let t = Ticket {
                joined: 1_700_000_000_000,
                token: TOKEN.into(),
                poll: Duration::from_secs(5),
                priority,
                supersede,
            };
            let name = t.name(5000);
            assert_eq!(Ticket::parse(&name), Some(t.clone()), "{name}");
            // Environments with dots, and ones that end like a tag, split where they should.
            for env in ["web.prod", "a.h", "n", "x.1700000000000"] {
                assert_eq!(split(&format!("{env}.{name}")), Some((env, t.clone())));
            }
        }
        // A normal waiter without a key keeps the plain three-part name.
        let plain = format!("1700000000000.{TOKEN}.5");
        assert_eq!(Ticket::parse(&plain).map(|t| t.name(5)), Some(plain));
    }

    #[test]
    fn high_goes_before_normal_then_first_come_first_served() {
        let t = |joined, priority| Ticket {
            joined,
            token: TOKEN.into(),
            poll: Duration::from_secs(5),
            priority,
            supersede: None,
        };
        let mut queue = [
            t(3, Priority::Normal),
            t(4, Priority::High),
            t(1, Priority::Normal),
            t(2, Priority::High),
        ];
        queue.sort_by(Ticket::order);
        let joined: Vec<i64> = queue.iter().map(|t| t.joined).collect();
        assert_eq!(joined, [2, 4, 1, 3]);
        assert!(queue[1].newer_than(&queue[2]));
    }

    #[test]
    fn a_declared_poll_counts_for_at_most_seventy_five_seconds() {
        for poll in [
            "604800000",
            "99999999999999999",
            "18446744073709551615",
            "99999999999999999999999999",
        ] {
            let t = Ticket::parse(&format!("0000000000000.{TOKEN}.{poll}")).expect("a ticket");
            assert_eq!(t.poll, MAX_DECLARED_POLL);
            assert_eq!(ticket_ttl(t.poll), chrono::Duration::seconds(225));
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
