//! Many environments' audit logs read at once: one read per environment, spread over a small
//! pool of threads, each with its own store handle (a store need not be shared across threads).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

use super::audit::{AuditLog, LockEvent};
use crate::store::Store;

/// How many reads run at once: enough to hide a store's latency, few enough to be polite to it.
pub const READERS: usize = 8;

/// One environment's log as read: its events and the store's time, or why it could not be read.
pub type LogRead = anyhow::Result<(Vec<LockEvent>, DateTime<Utc>)>;

/// Reads the audit log of every environment in `environments`, in their order. `open` gives each
/// reader thread its own store; a reader whose store does not open reports that for its share.
pub fn read_logs<F>(open: &F, environments: &[String]) -> Vec<(String, LogRead)>
where
    F: Fn() -> anyhow::Result<Box<dyn Store>> + Sync,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<LogRead>>> =
        Mutex::new(environments.iter().map(|_| None).collect());
    let readers = READERS.min(environments.len());
    std::thread::scope(|scope| {
        for _ in 0..readers {
            scope.spawn(|| {
                let store = open();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(env) = environments.get(i) else {
                        break;
                    };
                    let read = match &store {
                        Ok(store) => AuditLog::new(&**store).read(env),
                        Err(e) => Err(anyhow::anyhow!("{e:#}")),
                    };
                    if let Ok(mut results) = results.lock() {
                        results[i] = Some(read);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    environments
        .iter()
        .cloned()
        .zip(results)
        .map(|(env, read)| {
            let read = read.unwrap_or_else(|| Err(anyhow::anyhow!("the log was not read")));
            (env, read)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::audit::{EventKind, audit_sink};
    use crate::store::file::FileStore;

    #[test]
    fn every_log_is_read_in_order_by_a_pool_of_readers() {
        let dir = std::env::temp_dir().join(format!("deploy-lock-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::new(&dir, "locks");
        let sink = audit_sink(&store, true);
        let envs: Vec<String> = (0..20).map(|i| format!("env{i:02}")).collect();
        for (i, env) in envs.iter().enumerate() {
            for _ in 0..=i {
                sink.record(&LockEvent {
                    kind: EventKind::Acquire,
                    environment: env.clone(),
                    ..LockEvent::default()
                });
            }
        }
        let open =
            || -> anyhow::Result<Box<dyn Store>> { Ok(Box::new(FileStore::new(&dir, "locks"))) };
        let read = read_logs(&open, &envs);
        assert_eq!(read.len(), 20);
        for (i, (env, events)) in read.into_iter().enumerate() {
            assert_eq!(env, envs[i]);
            assert_eq!(events.expect("read").0.len(), i + 1);
        }
        let failing = || -> anyhow::Result<Box<dyn Store>> { Err(anyhow::anyhow!("no store")) };
        let read = read_logs(&failing, &envs[..2]);
        assert!(read.iter().all(|(_, r)| r.is_err()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
