//! The post step: stop the heartbeat and give the lock back.

use std::path::Path;

use super::heartbeat;
use super::inputs::StepInputs;
use crate::ci::Platform;
use crate::cli::GlobalArgs;
use crate::commands::outcome::Handback;
use crate::commands::release::hand_back;
use crate::commands::{Context, Since, dashboard, event_sink, open_store};
use crate::config::{self, Pipeline};
use crate::exit::Result;
use crate::log;
use crate::report::{Caller, Reporter};

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
        log::note(&format!(
            "deploy-lock: release is false, so the lock on {environment} stays held; release it \
             later with `deploy-lock release {environment} --token {token}`"
        ));
        return Ok(0);
    }
    let env = config::validate_environment(&environment)?;
    let cfg = inputs.config(global, platform)?;
    let pipeline = match platform.load_state("pipeline") {
        Some(p) => config::validate_pipeline(&p)?,
        None => Pipeline::of(platform),
    };
    let store = open_store(&cfg)?;
    let events = event_sink(&cfg, &*store);
    let ctx = Context::new(&cfg, &*store, &*events);
    let reporter = Reporter::new(platform, cfg.output);
    let released = match hand_back(&ctx, &env, &cfg.holder(&pipeline, &token)) {
        Handback::Failed(e) => Err(anyhow::anyhow!(e).into()),
        handback => {
            reporter.handback(&env, &handback, Caller::PostStep);
            Ok(0)
        }
    };
    if inputs.dashboard.get(false).unwrap_or(false) {
        publish_dashboard(&ctx, reporter);
    }
    released
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
