//! The lock's current version, handed on between processes (docs/design.md, "Requests"), so that
//! a renewal is one conditional write and a release one conditional delete (and the audit
//! append), without a read first:
//! - between the steps of one job: the main step writes the record and version its acquisition
//!   left, the detached heartbeat starts from them and rewrites them after every renewal, and the
//!   post step releases with them;
//! - between the commands of one user on one machine: `acquire` and `renew` remember the version
//!   they left in the user's state directory (`remembered`), and a later `release` or `renew` of
//!   the same lock starts from it.
//!
//! A version that is out of date costs nothing but a read: the conditional write or delete fails
//! and the reading path settles it by the token. Whether the caller may release or renew is
//! decided on the remembered record exactly as on a read one. A file that is missing or
//! unreadable means the reading path from the start.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::default_local_dir;
use crate::lock::{Identity, LockRecord};
use crate::store::Store;

/// Acquisitions of one lock remembered at most: one user's terminals and scripts.
const MAX_REMEMBERED: usize = 8;

/// A remembered version not touched for this long is forgotten (its lock expired long ago).
const FORGET_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// One lock we hold: its environment (a lock set's member), its record and current version, and
/// the store's clock and ours at one moment, to estimate the store's time later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub environment: String,
    pub record: LockRecord,
    pub etag: String,
    /// The store's time and the local clock's at the same moment, milliseconds since 1970.
    pub store_ms: i64,
    pub local_ms: i64,
}

impl Version {
    /// `record` at version `etag`, written when the store's clock said `store` and ours `local`.
    #[must_use]
    pub fn new(
        environment: &str,
        record: &LockRecord,
        etag: &str,
        store: DateTime<Utc>,
        local: DateTime<Utc>,
    ) -> Self {
        Self {
            environment: environment.to_owned(),
            record: record.clone(),
            etag: etag.to_owned(),
            store_ms: store.timestamp_millis(),
            local_ms: local.timestamp_millis(),
        }
    }

    /// An acquisition just made: its record's acquisition time is the store's time now.
    #[must_use]
    pub fn acquired(
        environment: &str,
        record: &LockRecord,
        etag: &str,
        local: DateTime<Utc>,
    ) -> Self {
        let store = DateTime::parse_from_rfc3339(&record.acquired_at)
            .map_or(local, |t| t.with_timezone(&Utc));
        Self::new(environment, record, etag, store, local)
    }

    /// The store's time now, as estimated from the store's time at the moment the version was
    /// seen plus how long the local clock says has passed since (so the local clock's offset
    /// does not matter), for the release event's hold time.
    #[must_use]
    pub fn store_now(&self, local_now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(
            self.store_ms + (local_now.timestamp_millis() - self.local_ms),
        )
    }
}

/// The file of the acquisition whose first token is `first`, in the job's temp folder.
#[must_use]
pub fn file(dir: &Path, first: &str) -> PathBuf {
    dir.join(format!("deploy-lock-version-{first}.json"))
}

/// Replaces the file at once (written beside it, then renamed), readable by its owner only: the
/// record carries the token.
pub fn write(path: &Path, versions: &[Version]) -> std::io::Result<()> {
    let json = serde_json::to_vec(versions).map_err(std::io::Error::other)?;
    // Beside it, under a name of this process's own: two commands may remember at once.
    let next = path.with_extension(format!("{}.next", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    // Not synced to disk: a file a crash leaves empty or half-written only costs a read.
    options.open(&next)?.write_all(&json)?;
    fs::rename(&next, path)
}

/// The versions the file holds; none when it is missing or not ours.
#[must_use]
pub fn read(path: &Path) -> Vec<Version> {
    fs::read(path)
        .ok()
        .and_then(|data| serde_json::from_slice(&data).ok())
        .unwrap_or_default()
}

/// The version of `environment` whose record carries `token`, if the file has it.
#[must_use]
pub fn find<'v>(versions: &'v [Version], environment: &str, token: &str) -> Option<&'v Version> {
    versions
        .iter()
        .find(|v| v.environment == environment && v.record.token == token)
}

/// The remembered acquisition a caller most likely means: the one with its token, else the
/// latest (whether it may release or renew it is decided as after a read).
#[must_use]
pub fn pick<'v>(versions: &'v [Version], me: &Identity) -> Option<&'v Version> {
    match me.token.as_deref() {
        Some(token) => versions.iter().find(|v| v.record.token == token),
        None => versions.last(),
    }
}

/// Where this user's acquisitions of `environment` in `store` are remembered: one small file per
/// store and environment in the user's state directory.
#[must_use]
pub fn remembered(store: &dyn Store, environment: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\n{environment}", store.describe()).as_bytes());
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    default_local_dir()
        .join("versions")
        .join(format!("{name}.json"))
}

/// Remembers `version` (replacing an earlier one of the same acquisition) and forgets files that
/// have not been touched for a month. Best effort: a version not remembered costs a read later.
pub fn remember(path: &Path, version: Version) {
    let mut versions = read(path);
    versions.retain(|v| v.record.token != version.record.token);
    versions.push(version);
    let keep_from = versions.len().saturating_sub(MAX_REMEMBERED);
    let kept = versions.split_off(keep_from);
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
        forget_old(dir);
    }
    if let Err(e) = write(path, &kept) {
        crate::log::debug(&format!("cannot remember the lock's version: {e}"));
    }
}

/// Forgets the acquisition with `token`.
pub fn forget(path: &Path, token: &str) {
    let mut versions = read(path);
    let before = versions.len();
    versions.retain(|v| v.record.token != token);
    if versions.len() == before {
        return;
    }
    let _ = if versions.is_empty() {
        fs::remove_file(path)
    } else {
        write(path, &versions)
    };
}

fn forget_old(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > FORGET_AFTER);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_a_bad_file_is_none() {
        let dir = std::env::temp_dir().join(format!("deploy-lock-known-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = file(&dir, "ab");
        let record = LockRecord {
            token: "ab".into(),
            acquired_at: "2026-01-01T10:00:00Z".into(),
            ..LockRecord::default()
        };
        let local = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let versions = vec![Version::acquired("prod", &record, "\"0x1\"", local)];
        write(&path, &versions).expect("write");
        let back = read(&path);
        assert_eq!(back, versions);
        assert!(find(&back, "prod", "ab").is_some());
        assert!(find(&back, "prod", "cd").is_none());
        assert!(find(&back, "dev", "ab").is_none());
        // Ten minutes later by the local clock is ten minutes after the store's acquisition.
        assert_eq!(
            back[0]
                .store_now(local + chrono::Duration::minutes(10))
                .map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:10:00+00:00".to_owned())
        );
        fs::write(&path, b"{not json").expect("write garbage");
        assert!(read(&path).is_empty());
        assert!(read(&dir.join("missing.json")).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
