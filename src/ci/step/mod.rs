//! `deploy-lock step main|post|heartbeat`: the whole behaviour of the GitHub Action and the
//! Azure DevOps task. The JavaScript shim only finds and runs the binary; inputs, outputs,
//! state, masking and results are handled here, where they are tested. The steps run the same
//! commands and reports as the command line.

pub mod heartbeat;
pub mod inputs;
pub mod main;
pub mod post;

use crate::azure::auth::AuthInputs;
use crate::ci::Platform;
use crate::cli::{GlobalArgs, OutputFormat, StepPhase};
use crate::commands::mask_store_secrets;
use crate::config::{self, AzureInputs, Config, Secret, StoreUrl};
use crate::exit::Result;
use crate::log;
use crate::report;

pub use inputs::StepInputs;

/// The config the inputs describe; options not given as inputs keep their environment values.
fn config_from_inputs(
    inputs: &StepInputs,
    global: &GlobalArgs,
    platform: Platform,
) -> Result<Config> {
    let mut args = global.clone();
    let set = |slot: &mut Option<String>, value: &Option<String>| {
        if let Some(v) = value {
            *slot = Some(v.clone());
        }
    };
    set(&mut args.store, &inputs.store);
    set(&mut args.container, &inputs.container);
    set(&mut args.ttl_minutes, &inputs.lock_timeout_minutes);
    set(&mut args.poll_seconds, &inputs.poll_seconds);
    set(&mut args.job, &inputs.job);
    set(&mut args.auth, &inputs.auth);
    args.debug |= inputs.debug.get(false)?;
    args.output = Some(OutputFormat::Text);
    let azure = AzureInputs {
        connection_string: inputs.connection_string.clone().map(Secret::new),
        account: inputs.storage_account.clone(),
        account_key: inputs.account_key.clone().map(Secret::new),
        sas_token: inputs.sas_token.clone().map(Secret::new),
        auth: AuthInputs {
            method: None,
            client_id: inputs.client_id.clone(),
            tenant_id: inputs.tenant_id.clone(),
            service_connection: inputs.service_connection.clone(),
        },
    };
    let cfg = Config::build(&args, platform, &azure)?;
    mask_store_secrets(&cfg);
    Ok(cfg)
}

/// Runs the action's or task's step and returns the process exit code.
pub fn run(phase: StepPhase, global: &GlobalArgs, platform: Platform) -> i32 {
    let inputs = StepInputs::load();
    for secret in inputs.secrets() {
        config::secrets::mask(platform, secret);
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
