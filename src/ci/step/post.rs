//! The post step: stop the heartbeat and give the lock back.

use std::path::{Path, PathBuf};

use super::heartbeat;
use super::inputs::StepInputs;
use crate::ci::Platform;
use crate::cli::GlobalArgs;
use crate::clock::{Clock, SYSTEM};
use crate::commands::outcome::Handback;
use crate::commands::release::{hand_back, hand_back_known};
use crate::commands::versions;
use crate::commands::{Context, Since, dashboard, event_sink, open_store};
use crate::config::{self, Pipeline};
use crate::exit::Result;
use crate::log;
use crate::report::{Caller, Reporter, summary};

pub fn post_step(inputs: &StepInputs, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let (Some(environment), Some(token)) = (
        platform.load_state("environment"),
        platform.load_state("token"),
    ) else {
        log::note("deploy-lock: this step took no lock, so there is nothing to release");
        return Ok(0);
    };
    // The heartbeat ends with the job either way; a lock kept for a later job then lives for its ttl.
    if let Some(file) = platform.load_state("heartbeat") {
        heartbeat::stop(Path::new(&file));
    }
    if !inputs.release.get(true)? {
        let how: Vec<String> = environment
            .split(',')
            .zip(token.split(','))
            .map(|(env, token)| format!("`deploy-lock release {env} --token {token}`"))
            .collect();
        log::note(&format!(
            "deploy-lock: release is false, so the lock on {environment} stays held; release it \
             later with {}",
            how.join(" and ")
        ));
        return Ok(0);
    }
    // A lock set's members and tokens, comma-separated in the same order.
    let envs = environment
        .split(',')
        .map(config::validate_environment)
        .collect::<Result<Vec<_>>>()?;
    let cfg = inputs.config(global, platform)?;
    let pipeline = match platform.load_state("pipeline") {
        Some(p) => config::validate_pipeline(&p)?,
        None => Pipeline::of(platform),
    };
    let store = open_store(&cfg)?;
    let events = event_sink(&cfg, &*store);
    let ctx = Context::new(&cfg, &*store, &*events);
    let reporter = Reporter::new(platform, cfg.output);
    // The versions the main step's writes or the heartbeat's renewals left (`known.rs`): a
    // release with one is a conditional delete without a read first.
    let version_file = platform.load_state("version").map(PathBuf::from);
    let versions = version_file
        .as_deref()
        .map(versions::read)
        .unwrap_or_default();
    let mut failed = Vec::new();
    for (env, token) in envs.iter().zip(token.split(',')) {
        let me = cfg.holder(&pipeline, token);
        let handback = match versions::find(&versions, env.as_str(), token) {
            Some(v) => hand_back_known(
                &ctx,
                env,
                &me,
                &v.record,
                &v.etag,
                v.store_now(SYSTEM.wall()),
            ),
            None => hand_back(&ctx, env, &me),
        };
        if let Err(e) = summary::post_summary(platform, env, &handback) {
            log::warn(&format!("could not write the summary: {e}"));
        }
        match handback {
            Handback::Failed(e) => failed.push(e),
            handback => reporter.handback(env, &handback, Caller::PostStep),
        }
    }
    if let Some(file) = &version_file {
        let _ = std::fs::remove_file(file);
    }
    if inputs.dashboard.get(false).unwrap_or(false) {
        publish_dashboard(&ctx, reporter);
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(failed.join("; ")).into())
    }
}

/// Publishes the dashboard after the release; a page that cannot be published is a warning,
/// never a failed step.
fn publish_dashboard(ctx: &Context<'_>, reporter: Reporter) {
    let request = dashboard::Request {
        out: None,
        publish: true,
        since: Since::Ago(std::time::Duration::from_secs(7 * 86_400)),
    };
    let published = dashboard::dashboard(ctx, &request).and_then(|o| reporter.report(&o));
    if let Err(e) = published {
        log::warn(&format!(
            "deploy-lock: the dashboard was not published (the release is not affected): {e}"
        ));
    }
}
