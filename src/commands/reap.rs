//! `reap [ENV…]`: one pass over every environment (or the given ones), removing the locks and
//! queue tickets of runs that have ended, as their CI says; each removal is recorded as a
//! `reaped` event. Useful as a scheduled job.

use super::context::Context;
use super::outcome::{Outcome, ReapedItem, Reaping};
use crate::config::{self, Config, Environment, StoreChoice};
use crate::exit::{ExitCode, Failure, Result};
use crate::lock::ci_api::CiApi;
use crate::lock::{EventKind, LockEvent};

/// The environments asked for, validated; refused without a token, before any request.
pub fn request(words: &[String], cfg: &Config) -> Result<Vec<Environment>> {
    if !cfg.ci_api.any() {
        return Err(Failure::usage(
            "reap asks the runs' CI whether they ended and needs a token for it: GITHUB_TOKEN or \
             GH_TOKEN (with GITHUB_API_URL for GitHub Enterprise Server), or SYSTEM_ACCESSTOKEN \
             with SYSTEM_COLLECTIONURI on Azure DevOps",
        ));
    }
    words
        .iter()
        .map(|w| config::validate_environment(w))
        .collect()
}

/// The client of this run's own CI APIs, when it has a token for one.
pub fn ci_api(cfg: &Config) -> Result<Option<CiApi>> {
    if !cfg.ci_api.any() {
        return Ok(None);
    }
    let ca_file = match &cfg.store {
        StoreChoice::Azure(settings) => settings.ca_file.as_deref(),
        StoreChoice::File(_) => None,
    };
    CiApi::new(cfg.ci_api.clone(), ca_file)
        .map(Some)
        .map_err(|e| Failure::new(ExitCode::Error, anyhow::anyhow!(e)))
}

pub fn reap(ctx: &Context<'_>, envs: &[Environment]) -> Result<Outcome> {
    let cfg = ctx.cfg;
    let locker = ctx.locker();
    let names: Vec<String> = if envs.is_empty() {
        locker.environments()?
    } else {
        envs.iter().map(|e| e.as_str().to_owned()).collect()
    };
    let me = cfg.identity(&cfg.default_pipeline);
    let mut outcome = Reaping {
        checked: names.len(),
        removed: Vec::new(),
    };
    for env in names {
        let reaped = locker.reap(&env)?;
        let event = |other: String, conclusion: &str| {
            let mut event =
                LockEvent::of(EventKind::Reaped, &env, &me, &cfg.run, locker.store_now());
            event.other = other;
            conclusion.clone_into(&mut event.conclusion);
            event
        };
        if let Some((lock, conclusion)) = reaped.lock {
            let mut e = event(lock.holder.describe(), &conclusion);
            e.held_seconds = Some(lock.age.num_seconds());
            ctx.events.record(&e);
            let run = lock
                .holder
                .record()
                .and_then(|r| r.ci_run.clone())
                .unwrap_or_default();
            outcome.removed.push(ReapedItem {
                env: env.clone(),
                lock: Some(lock),
                run,
                conclusion,
            });
        }
        for (_, run, conclusion) in reaped.tickets {
            let who = format!("the queue ticket of {} run {}", run.system, run.run_id);
            ctx.events.record(&event(who, &conclusion));
            outcome.removed.push(ReapedItem {
                env: env.clone(),
                lock: None,
                run,
                conclusion,
            });
        }
    }
    Ok(Outcome::Reaped(outcome))
}
