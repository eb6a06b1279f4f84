//! Typed settings: the command line, the environment and the CI platform, validated once into
//! final values (the ttl, for one, is decided here and nowhere else). Everything here is user
//! input, so every error is a usage error (exit 2) that says what to do.

pub mod duration;
pub mod names;
mod order;
pub mod secrets;

use std::path::PathBuf;
use std::time::Duration;

use crate::ci::runs::CiAccess;
use crate::ci::{self, Platform, RunInfo};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::exit::{Failure, Result};
use crate::lock::record::{MAX_FIELD_CHARS, MAX_REASON_CHARS};
use crate::lock::{Identity, Priority};

use self::duration::minutes;
pub use self::duration::{parse_duration, parse_minutes};
pub use self::names::{
    Container, DEFAULT_CONTAINER, Environment, Pipeline, validate_environment, validate_pipeline,
};
pub use self::secrets::Secret;
use crate::store::azure::{AuthInputs, AuthSettings, AzureSettings};

pub const DEFAULT_TTL_MINUTES: f64 = 30.0;
pub use crate::lock::SEED_TIMEOUT_MINUTES;
/// With a heartbeat renewing the lock every third of the ttl, a short ttl costs nothing while
/// the holder lives and frees the lock soon after it dies.
pub const HEARTBEAT_TTL_MINUTES: f64 = 5.0;
pub const DEFAULT_WAIT_MINUTES: f64 = 120.0;
pub const DEFAULT_POLL_SECONDS: f64 = 30.0;

/// Where the locks live.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    File(PathBuf),
    Azure(Box<AzureSettings>),
}

/// The validated settings every command takes.
#[derive(Debug, Clone)]
pub struct Config {
    pub platform: Platform,
    pub store: StoreChoice,
    pub container: Container,
    pub ttl: Duration,
    /// How long a lock without a ttl of its own (the seed script's, an unreadable one) is held:
    /// `LOCK_TIMEOUT_MINUTES`, the seed's own setting, whatever `--ttl-minutes` says.
    pub foreign_ttl: Duration,
    pub poll: Duration,
    /// How many holders share each environment (`--capacity`); 1 is a plain lock.
    pub capacity: u32,
    /// Where our waits stand in line (`--priority`).
    pub priority: Priority,
    /// `--supersede`: the key a newer waiter of another run makes ours leave with.
    pub supersede: Option<String>,
    pub output: OutputFormat,
    pub debug: bool,
    pub run: RunInfo,
    /// Pipeline type when the command names none.
    pub default_pipeline: Pipeline,
    pub token: Option<String>,
    /// The build id is the default outside CI, shared by every process of this user on this host.
    pub shared_build_id: bool,
    /// Whether the build id was given (--build-id / DEPLOY_LOCK_BUILD_ID), not detected.
    pub build_id_given: bool,
    /// Whether `ttl` was given (else the default applies, which a heartbeat shortens).
    pub ttl_given: bool,
    pub fence: bool,
    pub audit: bool,
    /// Webhooks and Application Insights, beside the audit log.
    pub sinks: crate::sinks::Settings,
    /// The tokens and API URLs of this run's own CI, for asking whether holders' runs ended.
    pub ci_api: CiAccess,
}

impl Config {
    /// Builds the config from the global options (which clap already merged with their env vars).
    pub fn from_args(args: &GlobalArgs, platform: Platform) -> Result<Self> {
        Self::build(args, platform, &AzureInputs::default())
    }

    /// The same, with Azure credentials given directly (action and task inputs), which win over
    /// the environment's.
    pub fn build(args: &GlobalArgs, platform: Platform, inputs: &AzureInputs) -> Result<Self> {
        let container = match &args.container {
            Some(c) => Container::new(c)?,
            None => Container::default_name(),
        };
        let ttl = match &args.ttl_minutes {
            Some(v) => parse_minutes(v, "--ttl-minutes / LOCK_TIMEOUT_MINUTES")?,
            None => minutes(DEFAULT_TTL_MINUTES),
        };
        if ttl < Duration::from_secs(1) {
            return Err(Failure::usage(
                "the lock ttl must be at least one second (--ttl-minutes / LOCK_TIMEOUT_MINUTES)",
            ));
        }
        let foreign_ttl = match ci::var("LOCK_TIMEOUT_MINUTES") {
            Some(v) => parse_minutes(&v, "LOCK_TIMEOUT_MINUTES")?,
            None => minutes(SEED_TIMEOUT_MINUTES),
        };
        if foreign_ttl < Duration::from_secs(1) {
            return Err(Failure::usage(
                "LOCK_TIMEOUT_MINUTES must be at least one second",
            ));
        }
        let poll = match &args.poll_seconds {
            Some(v) => parse_duration(v, 1.0, "--poll-seconds / DEPLOY_LOCK_POLL_SECONDS")?,
            None => Duration::from_secs_f64(DEFAULT_POLL_SECONDS),
        };
        if poll < Duration::from_millis(10) {
            return Err(Failure::usage(
                "the poll interval must be at least 0.01 seconds (--poll-seconds)",
            ));
        }
        let capacity = parse_capacity(args.capacity.as_deref())?;
        let priority = order::parse_priority(args.priority.as_deref())?;
        let supersede = order::parse_supersede(args.supersede.as_deref(), platform)?;
        if capacity > 1 && (priority == Priority::High || supersede.is_some()) {
            return Err(Failure::usage(
                "--priority high and --supersede order the queue of an environment with one \
                 holder; a shared environment (--capacity above 1) has no queue. Drop one of them",
            ));
        }
        let mut run = platform.run_info();
        if let Some(id) = &args.build_id {
            run.build_id = validate_word(id, "build id (--build-id / DEPLOY_LOCK_BUILD_ID)", 200)?;
        }
        if let Some(job) = &args.job {
            run.job = validate_word(job, "job (--job / DEPLOY_LOCK_JOB)", 200)?;
        }
        bound_run_info(&mut run);
        let token = match &args.token {
            Some(t) => Some(validate_token(t)?),
            None => None,
        };
        let store = choose_store(args, &container, platform, inputs)?;
        let sinks = crate::sinks::Settings::parse(
            &args.notify,
            &args.notify_on,
            args.app_insights.as_deref(),
            args.ca_file.as_deref().map(PathBuf::from),
        )?;
        Ok(Self {
            platform,
            store,
            container,
            ttl,
            foreign_ttl,
            poll,
            capacity,
            priority,
            supersede,
            output: args.output.unwrap_or_default(),
            debug: args.debug,
            run,
            default_pipeline: Pipeline::of(platform),
            token,
            shared_build_id: platform.build_id_is_shared() && args.build_id.is_none(),
            build_id_given: args.build_id.is_some(),
            ttl_given: args.ttl_minutes.is_some(),
            fence: !args.no_fence,
            audit: !args.no_audit,
            sinks,
            ci_api: CiAccess::new(ci::var, None),
        })
    }

    /// Our identity for ownership decisions, for a given pipeline type.
    #[must_use]
    pub fn identity(&self, pipeline: &Pipeline) -> Identity {
        Identity {
            pipeline: pipeline.to_string(),
            build_id: self.run.build_id.clone(),
            job: self.run.job.clone(),
            attempt: self.run.attempt.clone(),
            host: self.run.host.clone(),
            token: self.token.clone(),
            shared_build_id: self.shared_build_id,
        }
    }

    /// The config of a lock that a heartbeat keeps alive (`run`, the action's and task's step):
    /// without a ttl given, `HEARTBEAT_TTL_MINUTES`.
    #[must_use]
    pub fn with_heartbeat(&self) -> Self {
        let mut cfg = self.clone();
        if !cfg.ttl_given {
            cfg.ttl = minutes(HEARTBEAT_TTL_MINUTES);
        }
        cfg
    }

    /// The identity of the acquisition `token` names, for a given pipeline type.
    #[must_use]
    pub fn holder(&self, pipeline: &Pipeline, token: &str) -> Identity {
        Identity {
            token: Some(token.to_owned()),
            ..self.identity(pipeline)
        }
    }

    /// Masks every form of the store's secrets (decoded SAS signatures, key parts) on CI; the raw
    /// environment values were masked before parsing.
    pub fn mask_store_secrets(&self) {
        if let StoreChoice::Azure(settings) = &self.store {
            for secret in crate::store::azure::secrets(settings) {
                self.platform.mask(&secret);
            }
        }
    }
}

/// Every secret the environment or options carry, to mask on CI before anything is printed.
#[must_use]
pub fn secrets_in_env(args: &GlobalArgs) -> Vec<String> {
    let mut out = Vec::new();
    for name in [
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_TOKEN",
        // What Entra ID sign-in uses to get tokens; the platforms mask some, not all, of them.
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "SYSTEM_ACCESSTOKEN",
        "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN",
        "IDENTITY_HEADER",
        // What asks GitHub whether a holder's run ended.
        "GITHUB_TOKEN",
        "GH_TOKEN",
    ] {
        if let Some(v) = ci::var(name) {
            out.extend(secrets::parts(&v));
        }
    }
    if let Some(store) = &args.store {
        out.extend(StoreUrl::secret_parts(store));
    }
    for value in args.notify.iter().chain(&args.app_insights) {
        out.extend(secrets::url_parts(value));
    }
    out
}

/// Azure credentials given as action or task inputs.
#[derive(Debug, Clone, Default)]
pub struct AzureInputs {
    pub connection_string: Option<Secret>,
    pub account: Option<String>,
    pub account_key: Option<Secret>,
    pub sas_token: Option<Secret>,
    /// `client-id`, `tenant-id` and the Azure DevOps service connection (`serviceConnection`).
    pub auth: AuthInputs,
}

impl AzureInputs {
    /// With the Entra ID sign-in inputs: `client-id`, `tenant-id`, and the Azure DevOps service
    /// connection.
    #[must_use]
    pub fn signing_in_as(
        self,
        client_id: Option<String>,
        tenant_id: Option<String>,
        service_connection: Option<String>,
    ) -> Self {
        Self {
            auth: AuthInputs {
                method: None,
                client_id,
                tenant_id,
                service_connection,
            },
            ..self
        }
    }
}

fn choose_store(
    args: &GlobalArgs,
    container: &Container,
    platform: Platform,
    inputs: &AzureInputs,
) -> Result<StoreChoice> {
    let azure = AzureSettings {
        store_url: None,
        container: container.to_string(),
        connection_string: inputs
            .connection_string
            .clone()
            .or_else(|| ci::var("AZURE_STORAGE_CONNECTION_STRING").map(Secret::new)),
        account: inputs
            .account
            .clone()
            .or_else(|| ci::var("AZURE_STORAGE_ACCOUNT")),
        account_key: inputs
            .account_key
            .clone()
            .or_else(|| ci::var("AZURE_STORAGE_KEY").map(Secret::new)),
        sas_token: inputs
            .sas_token
            .clone()
            .or_else(|| ci::var("AZURE_STORAGE_SAS_TOKEN").map(Secret::new)),
        ca_file: args.ca_file.as_deref().map(PathBuf::from),
        endpoint_suffix: ci::var("AZURE_STORAGE_ENDPOINT_SUFFIX"),
        auth: AuthSettings::from_env(
            &ci::var,
            &AuthInputs {
                method: args.auth.clone(),
                ..inputs.auth.clone()
            },
        )
        .map_err(Failure::usage)?,
    };
    if let Some(url) = args.store.as_deref() {
        match StoreUrl::parse(url, platform)? {
            Some(StoreUrl::File(dir)) => return Ok(StoreChoice::File(dir)),
            Some(StoreUrl::Azure(url)) => {
                return Ok(StoreChoice::Azure(Box::new(AzureSettings {
                    store_url: Some(url),
                    ..azure
                })));
            }
            None => {}
        }
    }
    if azure.is_configured() {
        return Ok(StoreChoice::Azure(Box::new(azure)));
    }
    if platform.is_ci() {
        return Err(Failure::usage(format!(
            "no lock store is configured, and a local lock on a CI agent would lock nothing: \
             set AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or an \
             Entra ID sign-in: docs/entra-id.md), AZURE_STORAGE_CONNECTION_STRING, or --store \
             (DEPLOY_LOCK_STORE); \
             on {} use the storage inputs of the deploy-lock step",
            match platform {
                Platform::GitHub => "GitHub Actions",
                _ => "Azure DevOps",
            }
        )));
    }
    Ok(StoreChoice::File(default_local_dir()))
}

/// `--store`, parsed once: a local directory or an Azure container URL (which may carry a SAS
/// in its query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    File(PathBuf),
    Azure(String),
}

impl StoreUrl {
    /// None for an empty value (no store given).
    pub fn parse(text: &str, platform: Platform) -> Result<Option<Self>> {
        let url = text.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if let Some(path) = url.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Failure::usage(
                    "--store file: needs a directory, e.g. --store file:/var/lib/deploy-lock",
                ));
            }
            return Ok(Some(Self::File(PathBuf::from(path))));
        }
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Ok(Some(Self::Azure(url.to_owned())));
        }
        Err(Failure::usage(format!(
            "--store `{}` is not a store URL: use file:PATH for a local directory or \
             https://ACCOUNT.blob.core.windows.net/CONTAINER for Azure Blob Storage",
            platform.escape(&Self::redacted(url))
        )))
    }

    /// The query of a URL as given (a SAS, for Azure), which is secret.
    fn query(text: &str) -> Option<&str> {
        text.split_once('?').map(|(_, query)| query)
    }

    /// The secret parts of a `--store` value as given, to mask before it is parsed.
    #[must_use]
    pub fn secret_parts(text: &str) -> Vec<String> {
        Self::query(text).map(secrets::parts).unwrap_or_default()
    }

    /// A URL without its query, which may hold a SAS.
    #[must_use]
    pub fn redacted(text: &str) -> String {
        match text.split_once('?') {
            Some((base, _)) => format!("{base}?(redacted)"),
            None => text.to_owned(),
        }
    }
}

/// The per-user state directory for the local store.
#[must_use]
pub fn default_local_dir() -> PathBuf {
    let home = || {
        ci::var("HOME")
            .or_else(|| ci::var("USERPROFILE"))
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        ci::var("LOCALAPPDATA")
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join("AppData").join("Local")))
    } else if cfg!(target_os = "macos") {
        home().map(|h| h.join("Library").join("Application Support"))
    } else {
        ci::var("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home().map(|h| h.join(".local").join("state")))
    };
    base.unwrap_or_else(std::env::temp_dir).join("deploy-lock")
}

fn validate_word(value: &str, what: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "{what} must be 1–{max} characters without line breaks or control characters"
        )));
    }
    Ok(v.to_owned())
}

/// A reason as recorded in the lock (and its metadata) and the audit log: any text, line breaks
/// included, up to `MAX_REASON_CHARS` characters, so the record stays far below what a store
/// accepts and what we read back.
pub fn validate_reason(reason: &str) -> Result<String> {
    let count = reason.chars().count();
    if count > MAX_REASON_CHARS {
        return Err(Failure::usage(format!(
            "the reason is {count} characters long; at most {MAX_REASON_CHARS} are recorded: \
             shorten it (link to details instead of pasting them)"
        )));
    }
    Ok(reason.to_owned())
}

/// Cuts the run's details from the environment (repository, ref, actor, run URL, job, ...) to
/// `MAX_FIELD_CHARS` characters each, with a warning: CI sets them, so a long one is not the
/// user's mistake, and it must not make the lock record unwritable or unreadable. A field is cut
/// the same way every time, so identities built from it stay stable.
fn bound_run_info(run: &mut RunInfo) {
    let RunInfo {
        build_id,
        job,
        job_name,
        attempt,
        run_url,
        repository,
        git_ref,
        commit,
        actor,
        host,
        // Bounded where it is made: a cut reference would name another run.
        ci_run: _,
    } = run;
    for (name, value) in [
        ("build id", build_id),
        ("job", job),
        ("job name", job_name),
        ("attempt", attempt),
        ("run URL", run_url),
        ("repository", repository),
        ("ref", git_ref),
        ("commit", commit),
        ("actor", actor),
        ("host", host),
    ] {
        let count = value.chars().count();
        if count > MAX_FIELD_CHARS {
            *value = value.chars().take(MAX_FIELD_CHARS).collect();
            crate::log::warn(&format!(
                "the run's {name} from the environment is {count} characters long; the lock \
                 records its first {MAX_FIELD_CHARS}"
            ));
        }
    }
}

fn validate_token(value: &str) -> Result<String> {
    let v = value.trim();
    if v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err(Failure::usage(
            "--token / DEPLOY_LOCK_TOKEN must be the 32-character hex token printed by `acquire`",
        ))
    }
}

/// `--capacity` / `DEPLOY_LOCK_CAPACITY`: a whole number from 1 to 20.
fn parse_capacity(text: Option<&str>) -> Result<u32> {
    let Some(text) = text else { return Ok(1) };
    let max = crate::lock::slots::MAX_CAPACITY;
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Failure::usage(format!(
            "--capacity / DEPLOY_LOCK_CAPACITY must be a whole number from 1 to {max}, not \"{}\"",
            crate::ci::escape::escape_controls(text)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s: &str| parse_minutes(s, "t").map_err(|e| e.to_string());
        assert_eq!(d("30"), Ok(Duration::from_secs(1800)));
        assert_eq!(d("0.05"), Ok(Duration::from_secs(3)));
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("5d"), Ok(Duration::from_secs(5 * 86400)));
        for bad in ["", "abc", "-1", "NaN", "inf", "1e400", "8d", "10081", "1 2"] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_names() {
        for good in ["sandbox", "prod-westeurope", "a", "x_1.2", &"a".repeat(63)] {
            assert!(validate_environment(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            &"a".repeat(64),
            "a/b",
            "..",
            "a..b",
            ".hidden",
            "tab\there",
            "new\nline",
            "space here",
            "ümlaut",
            "a?b",
        ] {
            assert!(validate_environment(bad).is_err(), "{bad:?}");
        }
    }

    mod properties {
        //! Property tests over durations and environment names: random and mutated text never
        //! panics, what is accepted is within bounds, and what is refused is said safely.

        use super::*;
        use crate::config::duration::MAX_DURATION;
        use crate::exit::ExitCode;
        use crate::testgen::{Rng, cases};

        /// Whether a message can be printed as one line that no CI platform reads as a command.
        #[track_caller]
        fn assert_printable(message: &str, input: &str) {
            assert!(
                !message
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')),
                "{input:?} gave an unescaped message: {message:?}"
            );
        }

        #[test]
        fn durations_never_panic_and_stay_within_a_week() {
            const DICT: &[&str] = &[
                "e",
                "E",
                "-",
                "+",
                ".",
                "inf",
                "NaN",
                "s",
                "m",
                "h",
                "d",
                "1e308",
                "1e-320",
                "0x",
                "_",
                " ",
                "٣",
                "\u{2028}",
                "\n",
                "-0",
                "999999999999999999999",
            ];
            let seeds = ["30", "0.05", "90s", "2h", "1e3", "10080", "1.5m", "0", "7d"];
            let mut rng = Rng::new(0xd0_5eed_0001);
            for _ in 0..cases(8000) {
                let text = if rng.chance(25) {
                    let len = rng.length(30);
                    rng.string(len)
                } else {
                    let seed = rng.pick(&seeds);
                    rng.mutate_str(seed, DICT)
                };
                for unit in [60.0, 1.0] {
                    match parse_duration(&text, unit, "LOCK_TIMEOUT_MINUTES") {
                        Ok(d) => assert!(d <= MAX_DURATION, "{text:?} gave {d:?}"),
                        Err(e) => {
                            assert_eq!(e.code, ExitCode::Usage, "{text:?}");
                            assert_printable(&e.to_string(), &text);
                        }
                    }
                }
            }
        }

        #[test]
        fn durations_that_are_numbers_with_a_unit_are_read_as_such() {
            let mut rng = Rng::new(0xd0_5eed_0002);
            for _ in 0..cases(4000) {
                let millis = rng.below(7 * 24 * 3600 * 1000 + 1);
                let (suffix, scale) =
                    *rng.pick(&[("s", 1.0), ("m", 60.0), ("h", 3600.0), ("", 60.0)]);
                let value = millis as f64 / 1000.0 / scale;
                let text = format!(" {value}{suffix} ");
                let parsed =
                    parse_duration(&text, 60.0, "t").unwrap_or_else(|e| panic!("{text:?}: {e}"));
                let expected = value * scale;
                assert!(
                    (parsed.as_secs_f64() - expected).abs() < 1e-6 * expected.max(1.0),
                    "{text:?} gave {parsed:?}"
                );
            }
        }

        #[test]
        fn environment_names_never_panic_and_accepted_ones_are_safe_keys() {
            const DICT: &[&str] = &[
                ".", "..", "/", "\\", "-", "_", " ", "\0", "\n", "%2F", "::", "##vso[", "é", "İ",
                "\u{202e}", "\u{feff}",
            ];
            let seeds = ["sandbox", "prod-westeurope", "staging_2", "a.b", "x"];
            let mut rng = Rng::new(0xd0_5eed_0003);
            for _ in 0..cases(8000) {
                let name = match rng.below(4) {
                    0 => {
                        let len = rng.length(80);
                        rng.string(len)
                    }
                    1 => {
                        let len = rng.length(70);
                        rng.string_of("abcXYZ019-_.", len)
                    }
                    _ => {
                        let seed = rng.pick(&seeds);
                        rng.mutate_str(seed, DICT)
                    }
                };
                match validate_environment(&name) {
                    Ok(accepted) => {
                        assert_eq!(accepted, name);
                        assert!((1..=63).contains(&name.len()), "{name:?}");
                        assert!(
                            name.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                            "{name:?}"
                        );
                        // The blob and file names built from it are safe on every store.
                        assert!(!name.starts_with('.') && !name.ends_with('.'), "{name:?}");
                        assert!(!name.contains(".."), "{name:?}");
                    }
                    Err(e) => {
                        assert_eq!(e.code, ExitCode::Usage, "{name:?}");
                        assert_printable(&e.to_string(), &name);
                    }
                }
            }
        }
    }
}
