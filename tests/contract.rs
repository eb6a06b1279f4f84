//! The store contract, run unchanged against every store: the local directory store, the Azure
//! store against a real Azurite, and the in-memory store the simulation runs on. The lock protocol relies on nothing beyond what is checked here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Duration, Utc};
use deploy_lock::config::secrets::Secret;
use deploy_lock::store::azure::AzureSettings;
use deploy_lock::store::file::FileStore;
use deploy_lock::store::memory::MemoryStore;
use deploy_lock::store::{Store, StoreError};

use crate::support::azurite::azurite;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Azure,
    Memory,
}

/// A store under test, with the temporary folder it lives in (removed on drop).
struct Subject {
    store: Box<dyn Store>,
    dir: Option<PathBuf>,
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn subject(kind: Kind, hint: &str) -> Subject {
    match kind {
        Kind::File => {
            let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default();
            let dir = std::env::temp_dir().join(format!(
                "deploy-lock-contract-{}-{hint}-{stamp}",
                std::process::id()
            ));
            Subject {
                store: Box::new(FileStore::new(&dir, "deployment-locks")),
                dir: Some(dir),
            }
        }
        Kind::Memory => Subject {
            store: Box::new(MemoryStore::new()),
            dir: None,
        },
        Kind::Azure => {
            let az = azurite();
            let settings = AzureSettings {
                connection_string: Some(Secret::new(az.connection_string())),
                container: az.unique_container(hint),
                ..AzureSettings::default()
            };
            let store = deploy_lock::store::azure::open(&settings).expect("open the Azurite store");
            Subject {
                store: Box::new(store),
                dir: None,
            }
        }
    }
}

fn no_meta() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn assert_conflict<T: std::fmt::Debug>(result: &Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "{what}: expected Conflict, got {result:?}"
    );
}

fn get_missing_is_none_with_a_time(kind: Kind) {
    let s = subject(kind, "get-missing");
    let read = s.store.get("deployment-lock-prod").expect("get");
    assert!(read.blob.is_none());
    let skew = (read.now - Utc::now()).num_seconds().abs();
    assert!(skew < 300, "server time {} is far from ours", read.now);
}

fn create_then_create_again_conflicts(kind: Kind) {
    let s = subject(kind, "create");
    let w = s
        .store
        .create("deployment-lock-prod", b"first", &no_meta())
        .expect("create");
    assert!(!w.etag.is_empty());
    let read = s.store.get("deployment-lock-prod").expect("get");
    let blob = read.blob.expect("created blob");
    assert_eq!(blob.data, b"first");
    assert_eq!(blob.etag, w.etag);
    assert_eq!(blob.last_modified, w.last_modified);
    assert!(read.now >= blob.last_modified - Duration::seconds(1));
    assert_conflict(
        &s.store
            .create("deployment-lock-prod", b"second", &no_meta()),
        "second create",
    );
    let blob = s.store.get("deployment-lock-prod").unwrap().blob.unwrap();
    assert_eq!(blob.data, b"first", "a failed create must not write");
}

fn replace_is_conditional(kind: Kind) {
    let s = subject(kind, "replace");
    let first = s.store.create("k", b"one", &no_meta()).unwrap();
    let second = s
        .store
        .replace("k", b"two", &no_meta(), &first.etag)
        .expect("replace with the current etag");
    assert_ne!(first.etag, second.etag);
    assert_eq!(s.store.get("k").unwrap().blob.unwrap().data, b"two");
    assert_conflict(
        &s.store.replace("k", b"three", &no_meta(), &first.etag),
        "replace with a stale etag",
    );
    assert_conflict(
        &s.store
            .replace("k", b"three", &no_meta(), "\"0x8D0000000000000\""),
        "replace with a wrong etag",
    );
    assert_conflict(
        &s.store.replace("missing", b"x", &no_meta(), &second.etag),
        "replace of a missing key",
    );
    assert_eq!(s.store.get("k").unwrap().blob.unwrap().data, b"two");
    assert!(s.store.get("missing").unwrap().blob.is_none());
}

fn delete_is_conditional(kind: Kind) {
    let s = subject(kind, "delete");
    let first = s.store.create("k", b"one", &no_meta()).unwrap();
    let second = s
        .store
        .replace("k", b"two", &no_meta(), &first.etag)
        .unwrap();
    assert_conflict(
        &s.store.delete("k", &first.etag),
        "delete with a stale etag",
    );
    assert!(s.store.get("k").unwrap().blob.is_some());
    s.store.delete("k", &second.etag).expect("delete");
    assert!(s.store.get("k").unwrap().blob.is_none());
    let again = s.store.delete("k", &second.etag);
    assert!(
        matches!(again, Err(StoreError::NotFound(_))),
        "delete of a missing key: {again:?}"
    );
}

fn list_returns_exactly_the_prefix(kind: Kind) {
    let s = subject(kind, "list");
    assert!(s.store.list("deployment-lock-").unwrap().entries.is_empty());
    for key in [
        "deployment-lock-b",
        "deployment-lock-a",
        "other-c",
        "deployment-lockx",
    ] {
        s.store.create(key, key.as_bytes(), &no_meta()).unwrap();
    }
    let listing = s.store.list("deployment-lock-").unwrap();
    let keys: Vec<&str> = listing.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["deployment-lock-a", "deployment-lock-b"]);
    for entry in &listing.entries {
        let blob = s.store.get(&entry.key).unwrap().blob.unwrap();
        assert_eq!(entry.etag, blob.etag, "{}", entry.key);
        assert_eq!(entry.last_modified, blob.last_modified, "{}", entry.key);
    }
    let skew = (listing.now - Utc::now()).num_seconds().abs();
    assert!(skew < 300);
    assert_eq!(s.store.list("").unwrap().entries.len(), 4);
}

fn append_offsets_increase(kind: Kind) {
    let s = subject(kind, "append");
    let lines: Vec<String> = (0..5)
        .map(|i| format!("{{\"event\":\"acquire\",\"n\":{i}}}\n"))
        .collect();
    let mut last = None;
    for line in &lines {
        let offset = s
            .store
            .append("audit-log", line.as_bytes())
            .expect("append");
        if let Some(prev) = last {
            assert!(offset > prev, "offset {offset} after {prev}");
        }
        last = Some(offset);
    }
    let blob = s.store.get("audit-log").unwrap().blob.unwrap();
    assert_eq!(String::from_utf8(blob.data).unwrap(), lines.concat());
}

fn metadata_round_trips(kind: Kind) {
    let s = subject(kind, "metadata");
    let meta: BTreeMap<String, String> = [
        ("pipeline", "github"),
        ("build_id", "1234567890"),
        ("actor", "octo cat"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let w = s.store.create("k", b"{}", &meta).unwrap();
    // The local directory keeps values only.
    let expected = if kind == Kind::File {
        BTreeMap::new()
    } else {
        meta.clone()
    };
    let blob = s.store.get("k").unwrap().blob.unwrap();
    assert_eq!(blob.metadata, expected);
    assert_eq!(s.store.list("k").unwrap().entries[0].metadata, expected);

    let mut changed = meta.clone();
    changed.insert("build_id".to_owned(), "42".to_owned());
    s.store.replace("k", b"{}", &changed, &w.etag).unwrap();
    let blob = s.store.get("k").unwrap().blob.unwrap();
    if kind == Kind::File {
        assert!(blob.metadata.is_empty());
    } else {
        assert_eq!(blob.metadata, changed);
        assert!(
            blob.created.is_some(),
            "Azure and memory report the creation time"
        );
    }
}

fn describe_names_the_store(kind: Kind) {
    let s = subject(kind, "describe");
    let text = s.store.describe();
    assert!(!text.is_empty());
    assert!(
        !text.contains("AccountKey") && !text.contains("sig="),
        "{text}"
    );
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod file {
            $(#[test] fn $case() { super::$case(super::Kind::File) })*
        }
        mod azurite {
            $(#[test] fn $case() { super::$case(super::Kind::Azure) })*
        }
        mod memory {
            $(#[test] fn $case() { super::$case(super::Kind::Memory) })*
        }
    };
}

contract!(
    get_missing_is_none_with_a_time,
    create_then_create_again_conflicts,
    replace_is_conditional,
    delete_is_conditional,
    list_returns_exactly_the_prefix,
    append_offsets_increase,
    metadata_round_trips,
    describe_names_the_store,
);
