//! The local directory store: one file per key under `ROOT/CONTAINER/`, for one machine.
//!
//! Creates are atomic through a hard link of a fully written temporary file (the key appears
//! whole or not at all). Every write also holds an exclusive advisory lock on the container's
//! `.mutex` file, so the compare-and-swap of replace and delete cannot interleave with another
//! process. Readers need no lock: a key is only ever swapped in by rename, so a reader sees the old
//! value or the new one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use chrono::Utc;
use sha2::{Digest, Sha256};

use super::{Blob, Entry, Listing, Read, Store, StoreError, StoreResult, Written};

const MUTEX: &str = ".mutex";

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `root/container`. Nothing is created until the first write.
    #[must_use]
    pub fn new(root: &Path, container: &str) -> Self {
        Self {
            dir: root.join(container),
        }
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let valid = !key.is_empty()
            && !key.starts_with('.')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(self.dir.join(key))
        } else {
            Err(StoreError::BadRequest(format!(
                "`{key}` cannot be a key of the local store"
            )))
        }
    }

    /// Holds the container's write lock until dropped (the OS releases it when the file closes).
    fn write_lock(&self) -> StoreResult<File> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io_error("create", &self.dir, &e))?;
        let path = self.dir.join(MUTEX);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| self.io_error("open", &path, &e))?;
        file.lock().map_err(|e| self.io_error("lock", &path, &e))?;
        Ok(file)
    }

    fn io_error(&self, what: &str, path: &Path, e: &io::Error) -> StoreError {
        let msg = format!("cannot {what} {}: {e}", path.display());
        match e.kind() {
            io::ErrorKind::PermissionDenied => StoreError::Auth(format!(
                "{msg}; check that you may write to {}",
                self.dir.display()
            )),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                StoreError::Transient(msg)
            }
            _ => StoreError::BadRequest(msg),
        }
    }

    fn read_blob(&self, path: &Path) -> StoreResult<Option<Blob>> {
        // Metadata and contents come from one open handle, so they describe the same version
        // even if a writer renames a new file over the path meanwhile.
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error("open", path, &e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| self.io_error("stat", path, &e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| self.io_error("read", path, &e))?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Some(Blob {
            etag: etag(&data, modified),
            last_modified: modified.into(),
            created: meta.created().ok().map(Into::into),
            metadata: BTreeMap::new(),
            data,
        }))
    }

    /// Writes `data` to a new temporary file in the container and returns its path.
    fn write_temp(&self, data: &[u8]) -> StoreResult<PathBuf> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| self.io_error("create", &path, &e))?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| {
                let _ = fs::remove_file(&path);
                self.io_error("write", &path, &e)
            })?;
        Ok(path)
    }

    fn written(&self, path: &Path) -> StoreResult<Written> {
        let blob = self
            .read_blob(path)?
            .ok_or_else(|| StoreError::Transient(format!("{} vanished", path.display())))?;
        Ok(Written {
            etag: blob.etag,
            last_modified: blob.last_modified,
            now: Utc::now(),
        })
    }
}

fn etag(data: &[u8], modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(data);
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{nanos:x}-{}-{short}\"", data.len())
}

impl Store for FileStore {
    fn get(&self, key: &str) -> StoreResult<Read> {
        let blob = self.read_blob(&self.path(key)?)?;
        Ok(Read {
            blob,
            now: Utc::now(),
        })
    }

    fn create(
        &self,
        key: &str,
        data: &[u8],
        _metadata: &BTreeMap<String, String>,
    ) -> StoreResult<Written> {
        let path = self.path(key)?;
        let _guard = self.write_lock()?;
        let temp = self.write_temp(data)?;
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => self.written(&path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Conflict),
            Err(e) => Err(self.io_error("create", &path, &e)),
        }
    }

    fn replace(
        &self,
        key: &str,
        data: &[u8],
        _metadata: &BTreeMap<String, String>,
        etag: &str,
    ) -> StoreResult<Written> {
        let path = self.path(key)?;
        let _guard = self.write_lock()?;
        match self.read_blob(&path)? {
            Some(current) if current.etag == etag => {}
            _ => return Err(StoreError::Conflict),
        }
        let temp = self.write_temp(data)?;
        fs::rename(&temp, &path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            self.io_error("replace", &path, &e)
        })?;
        self.written(&path)
    }

    fn delete(&self, key: &str, etag: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        let _guard = self.write_lock()?;
        match self.read_blob(&path)? {
            None => Err(StoreError::NotFound(key.to_owned())),
            Some(current) if current.etag != etag => Err(StoreError::Conflict),
            Some(_) => fs::remove_file(&path).map_err(|e| self.io_error("delete", &path, &e)),
        }
    }

    fn list(&self, prefix: &str) -> StoreResult<Listing> {
        let now = Utc::now();
        let dir = match fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Listing {
                    entries: Vec::new(),
                    now,
                });
            }
            Err(e) => return Err(self.io_error("list", &self.dir, &e)),
        };
        let mut entries = Vec::new();
        for item in dir {
            let item = item.map_err(|e| self.io_error("list", &self.dir, &e))?;
            // A name that is not UTF-8 is listed as best it can be shown; reading it then fails
            // for that entry alone, as for a directory or an unreadable file.
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.starts_with(prefix) {
                continue;
            }
            match self.read_blob(&item.path()) {
                Ok(Some(blob)) => entries.push(Entry {
                    key: name,
                    etag: blob.etag,
                    last_modified: blob.last_modified,
                    created: blob.created,
                    metadata: blob.metadata,
                }),
                Ok(None) => {}
                Err(_) => entries.push(Entry {
                    key: name,
                    etag: String::new(),
                    last_modified: item
                        .metadata()
                        .and_then(|m| m.modified())
                        .map_or(now, Into::into),
                    created: None,
                    metadata: BTreeMap::new(),
                }),
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { entries, now })
    }

    fn append(&self, key: &str, line: &[u8]) -> StoreResult<u64> {
        let path = self.path(key)?;
        let _guard = self.write_lock()?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| self.io_error("open", &path, &e))?;
        let offset = file
            .metadata()
            .map_err(|e| self.io_error("stat", &path, &e))?
            .len();
        file.write_all(line)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.io_error("append to", &path, &e))?;
        Ok(offset)
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.dir.display())
    }
}
