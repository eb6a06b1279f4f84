//! CI platforms: which one we run on, who we are there, and how to talk to it (outputs, state
//! between steps, annotations, secret masking) without letting data become a command.

pub mod azdo;
pub mod github;

use std::env;

/// Where the binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    GitHub,
    AzureDevOps,
    Local,
}

/// Who is taking the lock, as the platform tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub build_id: String,
    pub job: String,
    pub attempt: String,
    pub run_url: String,
    pub repository: String,
    pub git_ref: String,
    pub commit: String,
    pub actor: String,
    pub host: String,
}

/// A value read from the environment, trimmed, empty treated as absent.
#[must_use]
pub fn var(name: &str) -> Option<String> {
    env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Platform {
    /// GitHub Actions sets `GITHUB_ACTIONS=true`; Azure Pipelines sets `TF_BUILD=True`.
    #[must_use]
    pub fn detect() -> Self {
        if var("GITHUB_ACTIONS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            Self::GitHub
        } else if var("TF_BUILD").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            Self::AzureDevOps
        } else {
            Self::Local
        }
    }

    /// The pipeline type the seed script used for this platform.
    #[must_use]
    pub fn pipeline(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::AzureDevOps => "azdevops",
            Self::Local => "local",
        }
    }

    #[must_use]
    pub fn is_ci(self) -> bool {
        self != Self::Local
    }

    /// The run's identity and links from the platform's variables.
    #[must_use]
    pub fn run_info(self) -> RunInfo {
        // The runner's or agent's name tells apart two runners on one machine.
        let host = match self {
            Self::GitHub => var("RUNNER_NAME"),
            Self::AzureDevOps => var("AGENT_NAME"),
            Self::Local => None,
        }
        .unwrap_or_else(host_name);
        match self {
            Self::GitHub => github::run_info(host),
            Self::AzureDevOps => azdo::run_info(host),
            Self::Local => {
                let user = var("USER")
                    .or_else(|| var("USERNAME"))
                    .unwrap_or_else(|| "someone".into());
                RunInfo {
                    build_id: build_id_from_env().unwrap_or_else(|| format!("{user}@{host}")),
                    actor: user,
                    host,
                    ..RunInfo::default()
                }
            }
        }
    }

    /// Whether the build id `run_info` gives is the default outside CI, `user@host`, which every
    /// process of one person on one machine shares (two terminals, two cron jobs, two Jenkins
    /// executors): it names a holder for people, but never proves that two processes are one.
    #[must_use]
    pub fn build_id_is_shared(self) -> bool {
        self == Self::Local && build_id_from_env().is_none()
    }

    /// Makes text from the store or the environment safe to print on one line: control
    /// characters become visible escapes and nothing can start a workflow or logging command.
    #[must_use]
    pub fn escape(self, text: &str) -> String {
        let visible = escape_controls(text);
        match self {
            Self::GitHub => github::neutralize(&visible),
            Self::AzureDevOps => azdo::neutralize(&visible),
            Self::Local => visible,
        }
    }

    /// The same for JSON text, keeping it valid JSON with the same values.
    #[must_use]
    pub fn escape_json(self, json: &str) -> String {
        match self {
            // `#` only occurs inside JSON strings, where `\u0023` means the same character.
            Self::AzureDevOps => json.replace('#', "\\u0023"),
            Self::GitHub | Self::Local => json.to_owned(),
        }
    }

    /// An error line, an annotation on CI. `title` is ours; `msg` may contain data.
    #[must_use]
    pub fn error_line(self, title: &str, msg: &str) -> String {
        match self {
            Self::GitHub => github::annotation("error", title, msg),
            Self::AzureDevOps => azdo::log_issue("error", msg),
            Self::Local => format!("error: {}", self.escape(msg)),
        }
    }

    #[must_use]
    pub fn warning_line(self, msg: &str) -> String {
        match self {
            Self::GitHub => github::annotation("warning", "deploy-lock", msg),
            Self::AzureDevOps => azdo::log_issue("warning", msg),
            Self::Local => format!("warning: {}", self.escape(msg)),
        }
    }

    /// Tells the platform to hide `secret` in every later log line. Must run before anything
    /// that could print it.
    pub fn mask(self, secret: &str) {
        for part in secret.lines().map(str::trim).filter(|p| p.len() >= 4) {
            match self {
                Self::GitHub => println!("::add-mask::{}", github::escape_data(part)),
                Self::AzureDevOps => println!("##vso[task.setsecret]{}", azdo::escape_data(part)),
                Self::Local => {}
            }
        }
    }

    /// Sets step outputs (names in kebab-case; Azure DevOps gets them in camelCase).
    pub fn set_outputs(self, outputs: &[(&str, String)]) -> anyhow::Result<()> {
        match self {
            Self::GitHub => github::append_file("GITHUB_OUTPUT", outputs),
            Self::AzureDevOps => {
                for (name, value) in outputs {
                    println!(
                        "##vso[task.setvariable variable={};isoutput=true]{}",
                        camel_case(name),
                        azdo::escape_data(value)
                    );
                }
                Ok(())
            }
            Self::Local => Ok(()),
        }
    }

    /// Keeps values for the post step of the same action or task instance.
    pub fn save_state(self, state: &[(&str, String)]) -> anyhow::Result<()> {
        match self {
            Self::GitHub => {
                let named: Vec<(String, String)> = state
                    .iter()
                    .map(|(n, v)| (state_name(n), v.clone()))
                    .collect();
                let pairs: Vec<(&str, String)> =
                    named.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
                github::append_file("GITHUB_STATE", &pairs)
            }
            Self::AzureDevOps => {
                for (name, value) in state {
                    println!(
                        "##vso[task.settaskvariable variable={}]{}",
                        state_name(name),
                        azdo::escape_data(value)
                    );
                }
                Ok(())
            }
            Self::Local => Ok(()),
        }
    }

    /// Reads a value saved by `save_state` in the main step.
    #[must_use]
    pub fn load_state(self, name: &str) -> Option<String> {
        match self {
            Self::GitHub => var(&format!("STATE_{}", state_name(name))),
            Self::AzureDevOps => var(&format!(
                "VSTS_TASKVARIABLE_{}",
                state_name(name).to_ascii_uppercase()
            )),
            Self::Local => None,
        }
    }

    /// Adds Markdown to the job summary (GitHub only).
    pub fn summary(self, markdown: &str) -> anyhow::Result<()> {
        match self {
            Self::GitHub => github::append_summary(markdown),
            Self::AzureDevOps | Self::Local => Ok(()),
        }
    }
}

/// The seed's order: `GITHUB_RUN_ID`, `BUILD_BUILDID`, `BUILD_BUILDNUMBER` (`--build-id` and
/// `DEPLOY_LOCK_BUILD_ID` win over these; the config applies them).
#[must_use]
pub fn build_id_from_env() -> Option<String> {
    ["GITHUB_RUN_ID", "BUILD_BUILDID", "BUILD_BUILDNUMBER"]
        .iter()
        .find_map(|n| var(n))
}

fn host_name() -> String {
    var("COMPUTERNAME")
        .or_else(|| var("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Control characters (line breaks, escape sequences) shown as `\n`, `\u{1b}`, never emitted raw.
#[must_use]
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(' '),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// `holder-url` → `holderUrl`.
#[must_use]
pub fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '-' || c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// State names are plain identifiers on both platforms: `DEPLOY_LOCK_TOKEN`.
fn state_name(name: &str) -> String {
    format!(
        "DEPLOY_LOCK_{}",
        name.replace('-', "_").to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(escape_controls("a\nb\r\x1b[31m"), "a\\nb\\r\\u{1b}[31m");
    }

    #[test]
    fn nothing_from_data_starts_a_command() {
        let evil = "x\n::add-mask::y\n##vso[task.setvariable variable=a]b ##VSO[x] ##[error]z";
        for p in [Platform::GitHub, Platform::AzureDevOps, Platform::Local] {
            let out = p.escape(evil);
            assert!(!out.contains('\n'), "{p:?}: {out}");
            assert!(!out.to_ascii_lowercase().contains("##vso[") || p != Platform::AzureDevOps);
        }
        let gh = Platform::GitHub.escape("::error::boom");
        assert!(!gh.starts_with("::"), "{gh}");
        let az = Platform::AzureDevOps.escape(evil).to_ascii_lowercase();
        assert!(!az.contains("##vso[") && !az.contains("##["), "{az}");
    }

    #[test]
    fn json_stays_json() {
        let json = r###"{"reason":"##vso[task.complete result=Failed]"}"###;
        let escaped = Platform::AzureDevOps.escape_json(json);
        assert!(!escaped.contains("##vso["));
        let v: serde_json::Value = serde_json::from_str(&escaped).expect("valid json");
        assert_eq!(v["reason"], "##vso[task.complete result=Failed]");
    }

    #[test]
    fn names() {
        assert_eq!(camel_case("holder-url"), "holderUrl");
        assert_eq!(camel_case("waited-seconds"), "waitedSeconds");
        assert_eq!(state_name("token"), "DEPLOY_LOCK_TOKEN");
    }
}
