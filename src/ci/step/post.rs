//! The post step: stop the heartbeat and give the lock back.

use std::path::Path;

use super::heartbeat;
use super::inputs::StepInputs;
use crate::ci::Platform;
use crate::cli::GlobalArgs;
use crate::commands::outcome::Handback;
use crate::commands::release::hand_back;
use crate::commands::{Context, open_store};
use crate::config::{self, Pipeline};
use crate::exit::Result;
use crate::lock::audit_sink;
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
    let events = audit_sink(&*store, cfg.audit);
    let ctx = Context::new(&cfg, &*store, &*events);
    let handback = hand_back(&ctx, &env, &cfg.holder(&pipeline, &token));
    if let Err(e) = summary::post_summary(platform, &env, &handback) {
        log::warn(&format!("could not write the summary: {e}"));
    }
    match handback {
        Handback::Failed(e) => Err(anyhow::anyhow!(e).into()),
        handback => {
            Reporter::new(platform, cfg.output).handback(&env, &handback, Caller::PostStep);
            Ok(0)
        }
    }
}
