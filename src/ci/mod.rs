//! CI platforms: which one we run on, who we are there, and how to talk to it (outputs, state
//! between steps, annotations, secret masking) without letting data become a command.

pub mod azdo;
pub mod env;
pub mod escape;
pub mod github;
pub mod runs;
pub mod step;

pub use env::{RunInfo, var};
pub use escape::escape_controls;
use escape::needs_visible_escape;

/// Where the binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    GitHub,
    AzureDevOps,
    Local,
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

    /// The supersede key `--supersede true` stands for: the workflow or pipeline and the branch
    /// (`org/app/deploy@refs/heads/main`); None outside CI or without them.
    #[must_use]
    pub fn supersede_key(self) -> Option<String> {
        let (scope, workflow, branch) = match self {
            Self::GitHub => ("GITHUB_REPOSITORY", "GITHUB_WORKFLOW", "GITHUB_REF"),
            Self::AzureDevOps => (
                "SYSTEM_TEAMPROJECT",
                "BUILD_DEFINITIONNAME",
                "BUILD_SOURCEBRANCH",
            ),
            Self::Local => return None,
        };
        Some(format!(
            "{}/{}@{}",
            var(scope).unwrap_or_default(),
            var(workflow)?,
            var(branch)?
        ))
    }

    /// Whether the build id `run_info` gives is the default outside CI, `user@host`, which every
    /// process of one person on one machine shares (two terminals, two cron jobs, two Jenkins
    /// executors): it names a holder for people, but never proves that two processes are one.
    #[must_use]
    pub fn build_id_is_shared(self) -> bool {
        self == Self::Local && build_id_from_env().is_none()
    }

    /// Makes text from the store or the environment safe to print on one line: control and
    /// invisible characters become visible escapes, and nothing in it can be read as a workflow or
    /// logging command by the platform's runner or agent. Idempotent, so a line built from
    /// escaped parts can be escaped again as a whole.
    #[must_use]
    pub fn escape(self, text: &str) -> String {
        let visible = escape_controls(text);
        match self {
            Self::GitHub => github::neutralize(&visible),
            Self::AzureDevOps => azdo::neutralize(&visible),
            Self::Local => visible,
        }
    }

    /// Prints one line on stdout, escaped as a whole: every line of text output goes through
    /// here (JSON through `escape_json`, our own commands through their builders).
    pub fn print_line(self, line: &str) {
        println!("{}", self.escape(line));
    }

    /// The same on stderr: runners and agents read commands there too.
    pub fn eprint_line(self, line: &str) {
        eprintln!("{}", self.escape(line));
    }

    /// The same for JSON text, keeping it valid JSON with the same values: in CI every `#` (which
    /// JSON has only inside strings) becomes `\u0023`, and characters that some readers take for
    /// line breaks, or that are invisible, become `\u` escapes too. The text is one line that
    /// starts with `{` or `[`, so no `::` can start it.
    #[must_use]
    pub fn escape_json(self, json: &str) -> String {
        if self == Self::Local {
            return json.to_owned();
        }
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c == '#' || needs_visible_escape(c) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// An error line, an annotation on CI. `title` is ours; `msg` may contain data.
    #[must_use]
    pub fn error_line(self, title: &str, msg: &str) -> String {
        match self {
            Self::GitHub => github::annotation("error", title, &self.escape(msg)),
            Self::AzureDevOps => azdo::log_issue("error", msg),
            Self::Local => format!("error: {}", self.escape(msg)),
        }
    }

    #[must_use]
    pub fn warning_line(self, msg: &str) -> String {
        match self {
            Self::GitHub => github::annotation("warning", "deploy-lock", &self.escape(msg)),
            Self::AzureDevOps => azdo::log_issue("warning", msg),
            Self::Local => format!("warning: {}", self.escape(msg)),
        }
    }

    /// A notice: an annotation on GitHub, a warning on Azure DevOps (which has no notices),
    /// `note:` locally. `title` is ours; `msg` may contain data.
    #[must_use]
    pub fn notice_line(self, title: &str, msg: &str) -> String {
        match self {
            Self::GitHub => github::annotation("notice", title, &self.escape(msg)),
            Self::AzureDevOps => azdo::log_issue("warning", msg),
            Self::Local => format!("note: {}", self.escape(msg)),
        }
    }

    /// A table cell of the job summary (Markdown): escaped for the platform, and with the
    /// characters that would make it a link, an image, HTML or another cell shown as themselves.
    #[must_use]
    pub fn markdown_cell(self, text: &str) -> String {
        let mut out = String::new();
        for c in self.escape(text).chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '\\' | '|' | '[' | ']' | '(' | ')' | '`' | '*' | '_' | '!' | '#' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// Tells the platform to hide `secret` in every later log line. Must run before anything
    /// that could print it. The same secret arrives from the environment, the inputs and the
    /// parsed store settings; the platform is told once.
    pub fn mask(self, secret: &str) {
        static MASKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        for part in secret.lines().map(str::trim).filter(|p| p.len() >= 4) {
            if let Ok(mut masked) = MASKED.lock() {
                if masked.iter().any(|m| m == part) {
                    continue;
                }
                masked.push(part.to_owned());
            }
            match self {
                Self::GitHub => println!("::add-mask::{}", github::escape_data(part)),
                Self::AzureDevOps => println!("##vso[task.setsecret]{}", azdo::escape_data(part)),
                Self::Local => {}
            }
        }
    }

    /// Sets step outputs (names in kebab-case; Azure DevOps gets them in camelCase). Values are
    /// escaped like printed text: a later step that prints one must not run a command.
    pub fn set_outputs(self, outputs: &[(&str, String)]) -> anyhow::Result<()> {
        match self {
            Self::GitHub => {
                let escaped: Vec<(&str, String)> =
                    outputs.iter().map(|(n, v)| (*n, self.escape(v))).collect();
                github::append_file("GITHUB_OUTPUT", &escaped)
            }
            Self::AzureDevOps => {
                for (name, value) in outputs {
                    println!(
                        "##vso[task.setvariable variable={};isoutput=true]{}",
                        camel_case(name),
                        azdo::escape_data(&self.escape(value))
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

    /// Adds Markdown to the job summary on GitHub, or as a section titled `title` (our own
    /// words, a valid file name) to the build summary on Azure DevOps.
    pub fn summary(self, markdown: &str, title: &str) -> anyhow::Result<()> {
        match self {
            Self::GitHub => github::append_summary(markdown),
            Self::AzureDevOps => azdo::upload_summary(markdown, title),
            Self::Local => Ok(()),
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
    fn invisible_characters_become_visible() {
        assert_eq!(
            escape_controls("#\u{200b}#[x] \u{feff}::y \u{202e}z"),
            "#\\u{200b}#[x] \\u{feff}::y \\u{202e}z"
        );
    }

    #[test]
    fn github_lines_never_parse_as_commands() {
        let lines = [
            "##[set-output name=x;]1",
            "  ::add-mask::x",
            "\t::warning::x",
            "\u{a0}\u{2003}\u{3000}::error::x",
            "\u{85}::error::x",
            "a\n::b::c",
            "#\u{200b}#[set-output name=x;]1",
        ];
        for line in lines {
            let out = Platform::GitHub.escape(line);
            assert!(!out.trim_start().starts_with("::"), "{out:?}");
            assert!(!out.contains("##["), "{out:?}");
            assert_eq!(Platform::GitHub.escape(&out), out, "idempotent");
        }
        let note = Platform::GitHub.warning_line("x\n##[error]y");
        assert_eq!(note, "::warning title=deploy-lock::x\\n# #[error]y");
    }

    #[test]
    fn json_keeps_its_values_and_loses_its_markers() {
        let value = serde_json::json!({
            "reason": "##[set-output name=x;]1\n  ::add-mask::x ##vSo[x] \u{2028}\u{200b}\u{e0001}",
        });
        for p in [Platform::GitHub, Platform::AzureDevOps] {
            let text = p.escape_json(&value.to_string());
            assert!(!text.contains('#') && !text.contains('\u{2028}'), "{text}");
            assert!(
                !text.contains('\u{200b}') && !text.contains('\u{e0001}'),
                "{text}"
            );
            let back: serde_json::Value = serde_json::from_str(&text).expect("valid json");
            assert_eq!(back, value);
        }
    }

    #[test]
    fn outputs_and_markdown_are_escaped() {
        let cell = Platform::GitHub.markdown_cell("a|b ##[x] <img src=x> [l](u)\n::c");
        assert_eq!(
            cell,
            "a\\|b \\# \\#\\[x\\] &lt;img src=x&gt; \\[l\\]\\(u\\)\\\\n::c"
        );
    }

    #[test]
    fn names() {
        assert_eq!(camel_case("holder-url"), "holderUrl");
        assert_eq!(camel_case("waited-seconds"), "waitedSeconds");
        assert_eq!(state_name("token"), "DEPLOY_LOCK_TOKEN");
    }
}
