//! The lock's current version, handed on between the steps of one job (docs/design.md,
//! "Requests"): the main step writes the record and version its acquisition left, the detached
//! heartbeat starts from them and rewrites them after every renewal, and the post step releases
//! with them. So every renewal is one conditional write and the release one conditional delete
//! (and the audit append), without a read first.
//!
//! A version that is out of date costs nothing but a read: the conditional write or delete fails
//! and the reading path settles it by the token. A file that is missing or unreadable means the
//! reading path from the start.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lock::LockRecord;

/// One lock we hold: its environment (a lock set's member), its record and current version, and
/// the local clock when it was acquired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub environment: String,
    pub record: LockRecord,
    pub etag: String,
    /// Milliseconds since 1970 by the local clock.
    pub acquired_locally: i64,
}

impl Version {
    /// The store's time now, as estimated from the store's time of the acquisition plus how long
    /// the local clock says has passed since (so the local clock's offset does not matter), for
    /// the release event's hold time.
    #[must_use]
    pub fn store_now(&self, local_now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let acquired = DateTime::parse_from_rfc3339(&self.record.acquired_at).ok()?;
        let since = DateTime::from_timestamp_millis(self.acquired_locally)?;
        Some(acquired.with_timezone(&Utc) + (local_now - since))
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
    let next = path.with_extension("next");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options.open(&next)?;
    out.write_all(&json)?;
    out.sync_all()?;
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
        let versions = vec![Version {
            environment: "prod".into(),
            record,
            etag: "\"0x1\"".into(),
            acquired_locally: local.timestamp_millis(),
        }];
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
