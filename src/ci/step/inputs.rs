//! The step's inputs, read once. The runner or agent passes each as an environment variable:
//! GitHub keeps the hyphens of `storage-account` (`INPUT_STORAGE-ACCOUNT`); Azure DevOps
//! upper-cases the camelCase name (`INPUT_STORAGEACCOUNT`).

use crate::ci::runs::CiAccess;
use crate::ci::{self, Platform};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::config::{AzureInputs, Config, Secret};
use crate::exit::{Failure, Result};

/// One input by its action name.
fn input(name: &str) -> Option<String> {
    let github = format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase());
    let azdo = format!("INPUT_{}", ci::camel_case(name).to_ascii_uppercase());
    ci::var(&github).or_else(|| ci::var(&azdo))
}

/// A multi-line input: one item a line, or several on a line separated by commas.
fn split_list(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A true/false input, checked where it is used (a bad value is a usage error then).
#[derive(Debug, Clone)]
pub struct Flag {
    name: &'static str,
    value: Option<String>,
}

impl Flag {
    fn load(name: &'static str) -> Self {
        Self {
            name,
            value: input(name),
        }
    }

    pub fn get(&self, default: bool) -> Result<bool> {
        match self.value.as_deref().map(str::to_ascii_lowercase) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "yes" | "1" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "off") => Ok(false),
            Some(v) => Err(Failure::usage(format!(
                "input `{}` must be true or false, not `{}`",
                self.name,
                ci::escape_controls(&v)
            ))),
        }
    }
}

/// Every input of the action and the task.
#[derive(Debug, Clone)]
pub struct StepInputs {
    pub environment: Option<String>,
    pub pipeline: Option<String>,
    pub mode: Option<String>,
    pub wait_minutes: Option<String>,
    pub reason: Option<String>,
    pub heartbeat: Flag,
    /// `override-freeze` (`overrideFreeze`): acquire during a freeze, with `reason`.
    pub override_freeze: Flag,
    pub release: Flag,
    /// Publish the dashboard to the storage account's static website after the release.
    pub dashboard: Flag,
    /// `mode: check` fails the step when the lock is held.
    pub fail_if_held: Flag,
    pub debug: Flag,
    pub store: Option<String>,
    pub container: Option<String>,
    pub lock_timeout_minutes: Option<String>,
    pub poll_seconds: Option<String>,
    /// How many holders share the environment (`--capacity`).
    pub capacity: Option<String>,
    /// Where the step's acquire stands in line (`--priority`): `high` or `normal`.
    pub priority: Option<String>,
    /// The supersede key (`--supersede`): `true` for the workflow or pipeline and branch.
    pub supersede: Option<String>,
    pub job: Option<String>,
    pub auth: Option<String>,
    pub connection_string: Option<String>,
    pub storage_account: Option<String>,
    pub account_key: Option<String>,
    pub sas_token: Option<String>,
    pub github_token: Option<String>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    /// The task's `connectedService:AzureRM` input: the service connection's id.
    pub service_connection: Option<String>,
    /// Webhooks, one a line (or comma-separated), from a secret.
    pub notify: Option<String>,
    pub notify_on: Option<String>,
    /// An Application Insights connection string.
    pub app_insights: Option<String>,
}

impl StepInputs {
    #[must_use]
    pub fn load() -> Self {
        Self {
            environment: input("environment"),
            pipeline: input("pipeline"),
            mode: input("mode"),
            wait_minutes: input("wait-minutes"),
            reason: input("reason"),
            heartbeat: Flag::load("heartbeat"),
            override_freeze: Flag::load("override-freeze"),
            release: Flag::load("release"),
            dashboard: Flag::load("dashboard"),
            fail_if_held: Flag::load("fail-if-held"),
            debug: Flag::load("debug"),
            store: input("store"),
            container: input("container"),
            lock_timeout_minutes: input("lock-timeout-minutes"),
            poll_seconds: input("poll-seconds"),
            capacity: input("capacity"),
            priority: input("priority").map(|v| v.to_ascii_lowercase()),
            supersede: input("supersede").map(|v| match v.to_ascii_lowercase().as_str() {
                flag @ ("true" | "false") => flag.to_owned(),
                _ => v,
            }),
            job: input("job"),
            auth: input("auth"),
            connection_string: input("connection-string"),
            storage_account: input("storage-account"),
            account_key: input("account-key"),
            sas_token: input("sas-token"),
            github_token: input("github-token"),
            client_id: input("client-id"),
            tenant_id: input("tenant-id"),
            service_connection: input("service-connection"),
            notify: input("notify"),
            notify_on: input("notify-on"),
            app_insights: input("app-insights"),
        }
    }

    /// The secret inputs, to mask before anything else is printed.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        [
            &self.account_key,
            &self.sas_token,
            &self.connection_string,
            &self.github_token,
            &self.notify,
            &self.app_insights,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
    }

    /// The webhook URLs and the connection string of the inputs, in every form that could be
    /// printed alone, to mask before anything else is printed.
    #[must_use]
    pub fn url_secrets(&self) -> Vec<String> {
        [&self.notify, &self.app_insights]
            .into_iter()
            .flatten()
            .flat_map(|v| crate::config::secrets::url_parts(v))
            .collect()
    }

    /// The config the inputs describe; options not given as inputs keep their environment values.
    pub fn config(&self, global: &GlobalArgs, platform: Platform) -> Result<Config> {
        let inputs = self;
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
        set(&mut args.capacity, &inputs.capacity);
        set(&mut args.priority, &inputs.priority);
        set(&mut args.supersede, &inputs.supersede);
        set(&mut args.job, &inputs.job);
        set(&mut args.auth, &inputs.auth);
        if let Some(lines) = &inputs.notify {
            args.notify = split_list(lines);
        }
        if let Some(names) = &inputs.notify_on {
            args.notify_on = split_list(names);
        }
        set(&mut args.app_insights, &inputs.app_insights);
        args.debug |= inputs.debug.get(false)?;
        args.output = Some(OutputFormat::Text);
        let azure = AzureInputs {
            connection_string: inputs.connection_string.clone().map(Secret::new),
            account: inputs.storage_account.clone(),
            account_key: inputs.account_key.clone().map(Secret::new),
            sas_token: inputs.sas_token.clone().map(Secret::new),
            ..AzureInputs::default()
        }
        .signing_in_as(
            inputs.client_id.clone(),
            inputs.tenant_id.clone(),
            inputs.service_connection.clone(),
        );
        let mut cfg = Config::build(&args, platform, &azure)?;
        cfg.mask_store_secrets();
        cfg.ci_api = CiAccess::new(ci::var, inputs.github_token.clone());
        Ok(cfg)
    }
}
