//! GitHub Actions: workflow commands, `$GITHUB_OUTPUT`/`$GITHUB_STATE` files, the job summary.

use std::fs::OpenOptions;
use std::io::Write as _;

use anyhow::Context as _;

use super::env::{RunInfo, var};
use super::runs::CiRun;

pub(super) fn run_info(host: String) -> RunInfo {
    let build_id = var("DEPLOY_LOCK_BUILD_ID")
        .or_else(|| var("GITHUB_RUN_ID"))
        .unwrap_or_default();
    let run_url = match (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
        (Some(server), Some(repo)) if !build_id.is_empty() => {
            let mut url = format!(
                "{}/{repo}/actions/runs/{build_id}",
                server.trim_end_matches('/')
            );
            if let Some(attempt) = var("GITHUB_RUN_ATTEMPT") {
                url.push_str(&format!("/attempts/{attempt}"));
            }
            url
        }
        _ => String::new(),
    };
    RunInfo {
        build_id,
        job: var("GITHUB_JOB").unwrap_or_default(),
        job_name: String::new(),
        attempt: var("GITHUB_RUN_ATTEMPT").unwrap_or_default(),
        run_url,
        repository: var("GITHUB_REPOSITORY").unwrap_or_default(),
        git_ref: var("GITHUB_REF").unwrap_or_default(),
        commit: var("GITHUB_SHA").unwrap_or_default(),
        actor: var("GITHUB_ACTOR").unwrap_or_default(),
        host,
        ci_run: CiRun::github(var),
    }
}

/// The runner (`ActionCommand.cs`) reads a line as a command when, after trimming leading
/// whitespace, it starts with `::`, or when it contains the legacy `##[` anywhere. A space inside
/// each marker defuses it and stays readable: `# #[set-output …`, `  : :add-mask::…`. Line breaks
/// and invisible characters are already escaped by the caller.
pub(super) fn neutralize(line: &str) -> String {
    let line = line.replace("##[", "# #[");
    let indent = line.len() - line.trim_start().len();
    match line[indent..].strip_prefix("::") {
        Some(rest) => format!("{}: :{rest}", &line[..indent]),
        None => line,
    }
}

/// Escaping for a command's message.
pub(super) fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping for a command's property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::error title=…::msg`; `msg` is already escaped for GitHub.
pub(super) fn annotation(kind: &str, title: &str, msg: &str) -> String {
    format!(
        "::{kind} title={}::{}",
        escape_property(title),
        escape_data(msg)
    )
}

/// Appends `name<<DELIM` blocks, with a delimiter that cannot occur in the value.
pub(super) fn append_file(var_name: &str, pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let Some(path) = var(var_name) else {
        return Ok(());
    };
    let mut text = String::new();
    for (name, value) in pairs {
        let mut delim = String::from("deploy_lock_eof");
        while value.contains(&delim) {
            delim.push('_');
        }
        text.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {var_name} ({path})"))
}

pub(super) fn append_summary(markdown: &str) -> anyhow::Result<()> {
    let Some(path) = var("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(markdown.as_bytes()))
        .with_context(|| format!("cannot write the job summary ({path})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralize_cases() {
        assert_eq!(neutralize("::error::x"), ": :error::x");
        assert_eq!(neutralize("  ::add-mask::x"), "  : :add-mask::x");
        assert_eq!(neutralize("\u{a0}\u{3000}::x::y"), "\u{a0}\u{3000}: :x::y");
        assert_eq!(
            neutralize("a ##[set-output name=x;]1"),
            "a # #[set-output name=x;]1"
        );
        assert_eq!(neutralize("###[x]"), "## #[x]");
        assert_eq!(
            neutralize("std::fs and ## headings"),
            "std::fs and ## headings"
        );
        for s in ["::a", " ::a", "##[x", "###[", "a ##[ ##[", "\u{2003}::b"] {
            let once = neutralize(s);
            assert_eq!(neutralize(&once), once, "idempotent: {s}");
            assert!(
                !once.trim_start().starts_with("::") && !once.contains("##["),
                "{once}"
            );
        }
    }
}
