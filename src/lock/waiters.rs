//! Who waits for which lock, as `status` and the dashboard show it: every environment's live
//! queue tickets from one listing, in queue order, with the holder fields each ticket carries
//! (from the listing's metadata; a store without metadata costs one read per waiter).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::ticket::{self, Priority, QUEUE_PREFIX};
use crate::store::{Entry, Store, StoreError};

/// The largest ticket body believed: what a waiter writes stays below Azure's metadata limit.
const MAX_TICKET_BYTES: usize = 16 * 1024;

/// One waiter, as its ticket says. Fields are empty for tickets written without them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waiter {
    /// When it joined, by the store's clock.
    pub since: Option<DateTime<Utc>>,
    pub pipeline: String,
    pub build_id: String,
    pub job: String,
    pub actor: String,
    pub run_url: String,
    pub reason: String,
    /// Where it stands in line (its ticket's name says).
    pub priority: Priority,
}

impl Waiter {
    /// `github build 42 (job deploy)`, or `an unknown waiter` for a ticket without holder fields.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.pipeline.is_empty() && self.build_id.is_empty() {
            return "an unknown waiter".into();
        }
        let mut s = format!("{} build {}", self.pipeline, self.build_id);
        if !self.job.is_empty() {
            s.push_str(&format!(" (job {})", self.job));
        }
        s
    }
}

/// Every environment's live waiters, first in line first, from one listing.
pub fn all_queues(store: &dyn Store) -> Result<BTreeMap<String, Vec<Waiter>>, StoreError> {
    let listing = store.list(QUEUE_PREFIX)?;
    let mut queues: BTreeMap<String, Vec<(ticket::Ticket, Waiter)>> = BTreeMap::new();
    for entry in listing.entries {
        let Some(rest) = entry.key.strip_prefix(QUEUE_PREFIX) else {
            continue;
        };
        let Some((env, ticket)) = ticket::split(rest) else {
            continue;
        };
        if env.is_empty() || !ticket.is_live(&entry, listing.now) {
            continue;
        }
        let since = DateTime::from_timestamp_millis(ticket.joined);
        let mut waiter = waiter(store, &entry, since);
        waiter.priority = ticket.priority;
        queues
            .entry(env.to_owned())
            .or_default()
            .push((ticket, waiter));
    }
    Ok(queues
        .into_iter()
        .map(|(env, mut waiters)| {
            waiters.sort_by(|a, b| a.0.order(&b.0));
            (env, waiters.into_iter().map(|(_, w)| w).collect())
        })
        .collect())
}

/// The waiter a ticket names: from its metadata, else from its body (a JSON object of the same
/// fields); a ticket of an earlier version names nobody.
pub(super) fn waiter(store: &dyn Store, entry: &Entry, since: Option<DateTime<Utc>>) -> Waiter {
    let fields = if entry.metadata.contains_key("pipeline") {
        entry.metadata.clone()
    } else {
        store
            .get(&entry.key)
            .ok()
            .and_then(|read| read.blob)
            .filter(|blob| blob.data.len() <= MAX_TICKET_BYTES)
            .and_then(|blob| serde_json::from_slice::<serde_json::Value>(&blob.data).ok())
            .and_then(|body| body.as_object().cloned())
            .map(|body| {
                body.into_iter()
                    .filter_map(|(name, value)| value.as_str().map(|v| (name, v.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let field = |name: &str| {
        fields
            .get(name)
            .map(|v: &String| meta_decode(v))
            .unwrap_or_default()
    };
    Waiter {
        since,
        pipeline: field("pipeline"),
        build_id: field("build_id"),
        job: field("job"),
        actor: field("actor"),
        run_url: field("run_url"),
        reason: field("reason"),
        priority: Priority::Normal,
    }
}

/// Undoes `record::meta_encode`: `%XX` back to bytes, anything malformed kept as written.
pub(super) fn meta_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lock::queue::Queue;
    use crate::lock::record::{LockRecord, meta_encode};
    use crate::store::memory::MemoryStore;

    #[test]
    fn metadata_decodes_back() {
        for v in ["plain", "ünï ✓", "100%", "%zz", "a%", "<img src=x>"] {
            assert_eq!(meta_decode(&meta_encode(v)), v.trim());
        }
        assert_eq!(meta_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn queues_list_waiters_in_order_with_who_they_are() {
        let store = MemoryStore::new();
        let poll = Duration::from_secs(30);
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let record = |build: &str| LockRecord {
            pipeline: "github".into(),
            build_id: build.into(),
            run_url: format!("https://example.test/run/{build}"),
            reason: "ship <it>".into(),
            ..LockRecord::default()
        };
        let mut second = Queue::new(&store, "web.prod", &"b".repeat(32), poll)
            .with_waiter(record("2").metadata());
        let mut first = Queue::new(&store, "web.prod", &"a".repeat(32), poll)
            .with_waiter(record("1").metadata());
        let mut unknown = Queue::new(&store, "web", &"c".repeat(32), poll);
        second.join(at + chrono::Duration::seconds(5));
        first.join(at);
        unknown.join(at);
        let queues = all_queues(&store).expect("queues");
        let prod: Vec<_> = queues["web.prod"].iter().map(Waiter::describe).collect();
        assert_eq!(prod, ["github build 1", "github build 2"]);
        assert_eq!(queues["web.prod"][0].since, Some(at));
        assert_eq!(queues["web.prod"][0].reason, "ship <it>");
        assert_eq!(queues["web.prod"][1].run_url, "https://example.test/run/2");
        assert_eq!(queues["web"][0].describe(), "an unknown waiter");
        first.leave();
        let queues = all_queues(&store).expect("queues");
        assert_eq!(queues["web.prod"].len(), 1);
    }
}
