//! `deploy-lock step main|post|heartbeat`: the whole behaviour of the GitHub Action and the
//! Azure DevOps task. The JavaScript shim only finds and runs the binary; inputs, outputs,
//! state, masking and results are handled here, where they are tested. The steps run the same
//! commands and reports as the command line.

pub mod cancel;
pub mod heartbeat;
pub mod inputs;
pub mod main;
pub mod post;

use crate::ci::Platform;
use crate::cli::{GlobalArgs, StepPhase};
use crate::config::{self, StoreUrl};
use crate::log;
use crate::report;

use inputs::StepInputs;

/// Runs the action's or task's step and returns the process exit code.
pub fn run(phase: StepPhase, global: &GlobalArgs, platform: Platform) -> i32 {
    let inputs = StepInputs::load();
    for secret in inputs.secrets() {
        config::secrets::mask(platform, secret);
    }
    for part in inputs.url_secrets() {
        platform.mask(&part);
    }
    if let Some(store) = &inputs.store {
        for part in StoreUrl::secret_parts(store) {
            platform.mask(&part);
        }
    }
    if inputs.debug.get(false).unwrap_or(false) {
        log::init(platform, true);
    }
    let result = match phase {
        StepPhase::Main => main::main_step(&inputs, global, platform),
        StepPhase::Post => post::post_step(&inputs, global, platform),
        StepPhase::Heartbeat => {
            return heartbeat::heartbeat_step(&inputs, global, platform)
                .unwrap_or_else(|failure| report::print_error(platform, &failure));
        }
    };
    report::summary::finish(platform, phase == StepPhase::Post, result)
}
