//! A store in memory, for unit tests and the deterministic simulation: the same contract as the
//! Azure and file stores, with a clock that is passed in.
//!
//! Its times have whole seconds, like Azure's `Last-Modified` and `Date` headers, so the lock's
//! rounding rules meet the same coarse clock they meet in production.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, Utc};

use super::{Blob, Entry, Listing, Read, Store, StoreError, StoreResult, Written};

/// The store's clock: a function so that tests can move it.
pub type ServerClock = Box<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A key → value map with versions, guarded by one mutex.
pub struct MemoryStore {
    state: Mutex<State>,
    clock: ServerClock,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, Blob>,
    /// Every write gets a new version from this counter.
    versions: u64,
}

impl MemoryStore {
    /// A store on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Box::new(Utc::now))
    }

    /// A store whose clock is `clock`.
    #[must_use]
    pub fn with_clock(clock: ServerClock) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)().trunc_subsecs(0)
    }

    fn locked(&self) -> StoreResult<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Transient("the memory store was poisoned".into()))
    }

    /// The value of `key` as stored now, for checks from outside the protocol.
    #[must_use]
    pub fn peek(&self, key: &str) -> Option<Vec<u8>> {
        self.locked()
            .ok()
            .and_then(|s| s.blobs.get(key).map(|b| b.data.clone()))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn write(
        &mut self,
        key: &str,
        data: Vec<u8>,
        metadata: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Written {
        self.versions += 1;
        let etag = format!("\"0x{:x}\"", self.versions);
        let created = self.blobs.get(key).and_then(|b| b.created).or(Some(now));
        self.blobs.insert(
            key.to_owned(),
            Blob {
                data,
                etag: etag.clone(),
                last_modified: now,
                created,
                metadata: metadata.clone(),
            },
        );
        Written {
            etag,
            last_modified: now,
            now,
        }
    }

    fn version_of(&self, key: &str) -> Option<&str> {
        self.blobs.get(key).map(|b| b.etag.as_str())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> StoreResult<Read> {
        let now = self.now();
        Ok(Read {
            blob: self.locked()?.blobs.get(key).cloned(),
            now,
        })
    }

    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<Written> {
        let now = self.now();
        let mut state = self.locked()?;
        if state.blobs.contains_key(key) {
            return Err(StoreError::Conflict);
        }
        Ok(state.write(key, data.to_vec(), metadata, now))
    }

    fn replace(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
        etag: &str,
    ) -> StoreResult<Written> {
        let now = self.now();
        let mut state = self.locked()?;
        if state.version_of(key) != Some(etag) {
            return Err(StoreError::Conflict);
        }
        Ok(state.write(key, data.to_vec(), metadata, now))
    }

    fn delete(&self, key: &str, etag: &str) -> StoreResult<()> {
        let mut state = self.locked()?;
        match state.version_of(key) {
            None => Err(StoreError::NotFound(key.to_owned())),
            Some(v) if v != etag => Err(StoreError::Conflict),
            Some(_) => {
                state.blobs.remove(key);
                Ok(())
            }
        }
    }

    fn list(&self, prefix: &str) -> StoreResult<Listing> {
        let now = self.now();
        let state = self.locked()?;
        let entries = state
            .blobs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(key, b)| Entry {
                key: key.clone(),
                etag: b.etag.clone(),
                last_modified: b.last_modified,
                created: b.created,
                metadata: b.metadata.clone(),
            })
            .collect();
        Ok(Listing { entries, now })
    }

    fn append(&self, key: &str, line: &[u8]) -> StoreResult<u64> {
        let now = self.now();
        let mut state = self.locked()?;
        let mut data = state
            .blobs
            .get(key)
            .map(|b| b.data.clone())
            .unwrap_or_default();
        let offset = data.len() as u64;
        data.extend_from_slice(line);
        state.write(key, data, &BTreeMap::new(), now);
        Ok(offset)
    }

    fn describe(&self) -> String {
        "memory store".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_writes() {
        let store = MemoryStore::new();
        let none = BTreeMap::new();
        let first = store.create("k", b"1", &none).expect("created");
        assert!(matches!(
            store.create("k", b"2", &none),
            Err(StoreError::Conflict)
        ));
        let second = store.replace("k", b"2", &none, &first.etag).expect("moved");
        assert!(matches!(
            store.replace("k", b"3", &none, &first.etag),
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            store.delete("k", &first.etag),
            Err(StoreError::Conflict)
        ));
        store.delete("k", &second.etag).expect("deleted");
        assert!(matches!(
            store.delete("k", &second.etag),
            Err(StoreError::NotFound(_))
        ));
        assert!(store.get("k").expect("read").blob.is_none());
    }

    #[test]
    fn listing_is_by_prefix_in_name_order() {
        let store = MemoryStore::new();
        let none = BTreeMap::new();
        for key in ["b-2", "a-1", "b-1", "c"] {
            store.create(key, b"x", &none).expect("created");
        }
        let keys: Vec<String> = store
            .list("b-")
            .expect("listed")
            .entries
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["b-1", "b-2"]);
    }

    #[test]
    fn times_have_whole_seconds_and_appends_keep_order() {
        let store = MemoryStore::new();
        let w = store.create("k", b"x", &BTreeMap::new()).expect("created");
        assert_eq!(w.last_modified.timestamp_subsec_nanos(), 0);
        assert_eq!(store.append("log", b"a\n").expect("appended"), 0);
        assert_eq!(store.append("log", b"b\n").expect("appended"), 2);
        assert_eq!(store.peek("log").as_deref(), Some(&b"a\nb\n"[..]));
    }
}
