//! `dashboard`: one self-contained HTML page of every environment (its lock, its queue, a
//! timeline of its holds, wait and hold percentiles, recent events), written to a folder or
//! published to the storage account's static website.
//!
//! The page is this command's product, as the audit line is the lock's: it is built here
//! (`html.rs`) and written to where it goes; `report` only says where it went.

mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::context::Context;
use super::history::Since;
use super::outcome::Outcome;
use super::stats::{read_all, store_now, window_start};
use crate::config::StoreChoice;
use crate::exit::{Failure, Result};
use crate::lock::stats::{Hold, Stats, holds, stats};
use crate::lock::waiters::{Waiter, all_queues};
use crate::lock::{LockEvent, LockView, Window};
use crate::log;

pub use html::page;

/// Where the page goes: Azure's static website folder, under the `$web` container.
pub const PUBLISH_PATH: &str = "deploy-lock/index.html";
/// How many of the latest events the page lists.
const RECENT_EVENTS: usize = 50;

/// What `dashboard` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub out: Option<PathBuf>,
    pub publish: bool,
    pub since: Since,
}

/// Everything the page shows, by the store's clock.
#[derive(Debug)]
pub struct Dashboard {
    pub now: DateTime<Utc>,
    /// The start of the timeline and of the statistics.
    pub since: DateTime<Utc>,
    pub environments: Vec<Panel>,
    /// The latest events of every environment, newest first.
    pub recent: Vec<LockEvent>,
}

/// One environment on the page.
#[derive(Debug)]
pub struct Panel {
    pub name: String,
    /// `free`, `held`, `stale` or `unreadable`.
    pub state: &'static str,
    pub lock: Option<LockView>,
    /// Why the lock or the log could not be read.
    pub problems: Vec<String>,
    pub queue: Vec<Waiter>,
    /// The freeze window in force: no new acquire until it ends.
    pub freeze: Option<Window>,
    pub holds: Vec<Hold>,
    pub stats: Stats,
}

/// Where the page went.
#[derive(Debug)]
pub struct Delivered {
    pub written: Option<PathBuf>,
    /// The blob's URL in the `$web` container.
    pub published: Option<String>,
    pub environments: usize,
}

/// Refuses what cannot work before anything is read or written.
pub fn check(request: &Request, store: &StoreChoice) -> Result<()> {
    if request.out.is_none() && !request.publish {
        return Err(Failure::usage(
            "dashboard needs --out DIR (writes DIR/index.html), --publish (the storage account's \
             static website), or both",
        ));
    }
    if request.publish && matches!(store, StoreChoice::File(_)) {
        return Err(Failure::usage(
            "--publish writes to an Azure storage account's static website, and the store is a \
             local directory: use --out DIR to write the page to a folder instead",
        ));
    }
    Ok(())
}

/// Gathers what the page shows: the locks, the queues and the audit logs.
pub fn gather(ctx: &Context<'_>, since: Since) -> Result<Dashboard> {
    // One panel per environment, for its first slot (capacity, `lock/slots.rs`).
    let mut locks = ctx.locker().status()?;
    locks.retain(|(name, _)| crate::lock::slots::split_slot(name).1 == 1);
    let queues = all_queues(ctx.store).unwrap_or_else(|e| {
        log::warn(&format!("cannot read the waiters' queues: {e}"));
        BTreeMap::new()
    });
    // Advisory on the page, as in `status`: a failed read costs the freeze badges only.
    let mut frozen = ctx.locker().freezes_in_force().unwrap_or_else(|e| {
        log::warn(&format!("cannot read the freeze windows: {e:#}"));
        BTreeMap::new()
    });
    let logs = read_all(ctx, &[])?;
    let now = store_now(&logs).max(
        locks
            .iter()
            .filter_map(|(_, l)| l.as_ref().ok().map(|l| l.now))
            .max()
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    );
    let since = window_start(since, now);
    let names: BTreeSet<String> = locks
        .iter()
        .map(|(e, _)| e.clone())
        .chain(queues.keys().cloned())
        .chain(frozen.keys().cloned())
        .chain(logs.iter().map(|(e, _)| e.clone()))
        .collect();
    let mut locks: BTreeMap<String, _> = locks.into_iter().collect();
    let mut logs: BTreeMap<String, _> = logs.into_iter().collect();
    let mut queues = queues;
    let mut recent = Vec::new();
    let environments = names
        .into_iter()
        .map(|name| {
            let mut problems = Vec::new();
            let (state, lock) = match locks.remove(&name) {
                None => ("free", None),
                Some(Ok(l)) if l.is_stale() => ("stale", Some(l)),
                Some(Ok(l)) => ("held", Some(l)),
                Some(Err(e)) => {
                    problems.push(format!("the lock could not be read: {e}"));
                    ("unreadable", None)
                }
            };
            let events = match logs.remove(&name) {
                Some(Ok((events, _))) => events,
                Some(Err(e)) => {
                    problems.push(format!("the audit log could not be read: {e:#}"));
                    Vec::new()
                }
                None => Vec::new(),
            };
            let panel = Panel {
                state,
                lock,
                problems,
                queue: queues.remove(&name).unwrap_or_default(),
                freeze: frozen.remove(&name),
                holds: holds(&events, since),
                stats: stats(&events, Some(since)),
                name,
            };
            recent.extend(events);
            panel
        })
        .collect();
    recent.sort_by_key(|e| std::cmp::Reverse(e.time()));
    recent.truncate(RECENT_EVENTS);
    Ok(Dashboard {
        now,
        since,
        environments,
        recent,
    })
}

pub fn dashboard(ctx: &Context<'_>, request: &Request) -> Result<Outcome> {
    check(request, &ctx.cfg.store)?;
    let data = gather(ctx, request.since)?;
    let html = page(&data);
    let written = request
        .out
        .as_deref()
        .map(|dir| write_page(dir, &html))
        .transpose()?;
    let published = match (&ctx.cfg.store, request.publish) {
        (StoreChoice::Azure(settings), true) => {
            let store = crate::store::azure::open(settings)?;
            Some(
                store
                    .publish_page(PUBLISH_PATH, html.as_bytes())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "could not publish the dashboard to the `$web` container: {e}; turn on \
                             the static website of the storage account (README: Dashboard) and \
                             use credentials that may write to `$web`"
                        )
                    })?,
            )
        }
        _ => None,
    };
    Ok(Outcome::Dashboard(Delivered {
        written,
        published,
        environments: data.environments.len(),
    }))
}

fn write_page(dir: &Path, html: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the folder {}: {e}", dir.display()))?;
    let path = dir.join("index.html");
    // Written beside and renamed, so a web server never serves half a page.
    let partial = dir.join(".index.html.partial");
    std::fs::write(&partial, html)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
