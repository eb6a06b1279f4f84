//! The lock store: a key → bytes map with versions and a server clock.
//!
//! Every store implements the same small contract so the lock protocol never needs to know where the
//! lock lives. Writes that depend on what was read are conditional on the version (ETag) that was read.

pub mod azure;
pub mod file;
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

/// A stored value with its version and the store's timestamps.
#[derive(Debug, Clone)]
pub struct Blob {
    pub data: Vec<u8>,
    /// Opaque version; conditional writes compare it exactly.
    pub etag: String,
    /// When the store last wrote this value, by the store's clock.
    pub last_modified: DateTime<Utc>,
    /// When the store created this key, where the store knows it.
    pub created: Option<DateTime<Utc>>,
    /// Metadata stored beside the value (names lower-case).
    pub metadata: BTreeMap<String, String>,
}

/// The answer to a read: the value, if any, and the store's clock at the time of the answer.
#[derive(Debug, Clone)]
pub struct Read {
    pub blob: Option<Blob>,
    /// "Now" as the store sees it (the `Date` header on Azure).
    pub now: DateTime<Utc>,
}

/// The answer to a successful write.
#[derive(Debug, Clone)]
pub struct Written {
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// One key of a listing, without its value.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub created: Option<DateTime<Utc>>,
    pub metadata: BTreeMap<String, String>,
}

/// The answer to a listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub now: DateTime<Utc>,
}

/// What went wrong with a store request, sorted by what a caller does about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The key does not exist (delete, replace, or a missing container).
    NotFound(String),
    /// A conditional write lost: the key exists (create) or its version moved (replace, delete).
    Conflict,
    /// The store refused the credentials or the permission (401/403).
    Auth(String),
    /// Worth retrying: timeouts, resets, 408, 429, 5xx. Already retried where the store retries.
    Transient(String),
    /// The request or the configuration is wrong; retrying will not help.
    BadRequest(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(what) => write!(f, "not found: {what}"),
            Self::Conflict => f.write_str("the lock changed while we were writing it"),
            Self::Auth(msg) | Self::Transient(msg) | Self::BadRequest(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// The contract every lock store fulfils.
pub trait Store {
    /// Reads a key. A missing key is `Ok` with `blob: None`, so the caller still learns the time.
    fn get(&self, key: &str) -> StoreResult<Read>;
    /// Creates a key that must not exist yet; `Conflict` when it does.
    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<Written>;
    /// Replaces a key only while it still has version `etag`; `Conflict` when it moved or is gone.
    fn replace(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
        etag: &str,
    ) -> StoreResult<Written>;
    /// Deletes a key only while it still has version `etag`; `Conflict` when it moved,
    /// `NotFound` when it is gone.
    fn delete(&self, key: &str, etag: &str) -> StoreResult<()>;
    /// Lists the keys that start with `prefix`, in name order.
    fn list(&self, prefix: &str) -> StoreResult<Listing>;
    /// Appends one line to a log key, creating it when missing. Returns the offset the line was
    /// written at, which strictly increases for a key.
    fn append(&self, key: &str, line: &[u8]) -> StoreResult<u64>;
    /// Where the store is, for messages (never contains a secret).
    fn describe(&self) -> String;
    /// Reads several keys, answers in the order asked. A store whose reads wait on the network
    /// overrides this to read them concurrently (Azure: a small pool of connections).
    fn get_many(&self, keys: &[String]) -> Vec<StoreResult<Read>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
}
