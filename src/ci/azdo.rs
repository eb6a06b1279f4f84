//! Azure DevOps: `##vso[...]` logging commands and the build's identity.

use super::env::{RunInfo, var};
use super::runs::CiRun;

pub(super) fn run_info(host: String) -> RunInfo {
    let build_id = var("DEPLOY_LOCK_BUILD_ID")
        .or_else(|| var("BUILD_BUILDID"))
        .or_else(|| var("BUILD_BUILDNUMBER"))
        .unwrap_or_default();
    let run_url = match (
        var("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"),
        var("SYSTEM_TEAMPROJECT"),
        var("BUILD_BUILDID"),
    ) {
        (Some(collection), Some(project), Some(id)) => format!(
            "{}/{}/_build/results?buildId={id}",
            collection.trim_end_matches('/'),
            project.replace(' ', "%20")
        ),
        _ => String::new(),
    };
    RunInfo {
        build_id,
        job: var("SYSTEM_JOBID").unwrap_or_default(),
        job_name: var("SYSTEM_JOBDISPLAYNAME")
            .or_else(|| var("SYSTEM_JOBNAME"))
            .unwrap_or_default(),
        attempt: var("SYSTEM_JOBATTEMPT").unwrap_or_default(),
        run_url,
        repository: var("BUILD_REPOSITORY_NAME").unwrap_or_default(),
        git_ref: var("BUILD_SOURCEBRANCH").unwrap_or_default(),
        commit: var("BUILD_SOURCEVERSION").unwrap_or_default(),
        actor: var("BUILD_REQUESTEDFOR").unwrap_or_default(),
        host,
        ci_run: CiRun::azdo(var),
    }
}

/// The agent treats `##vso[` anywhere in a line (any case) as a command and `##[` as
/// formatting; a space after the `##` defuses both and stays readable. Line breaks and invisible
/// characters are already escaped by the caller.
pub(super) fn neutralize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let after = rest.strip_prefix("##").unwrap_or("");
        let opens = after.starts_with('[') || opens_vso(after);
        if opens {
            out.push_str("# #");
            rest = after;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `vso[` in any case, as .NET's ordinal case-insensitive comparison sees it: it upper-cases each
/// character, so `ſ` (long s) matches `S` too.
fn opens_vso(text: &str) -> bool {
    let mut chars = text.chars();
    "VSO[".chars().all(|want| {
        chars
            .next()
            .is_some_and(|c| c == want || c.to_uppercase().eq(std::iter::once(want)))
    })
}

/// A message from the store or the environment as a command's data: on one line, neutralised,
/// escaped.
fn message(msg: &str) -> String {
    escape_data(&neutralize(&super::escape::escape_controls(msg)))
}

/// Escaping for a logging command's value (and message).
pub(super) fn escape_data(s: &str) -> String {
    s.replace('%', "%AZP25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub(super) fn log_issue(kind: &str, msg: &str) -> String {
    format!("##vso[task.logissue type={kind}]{}", message(msg))
}

/// Attaches a Markdown file to the build's summary page (its Extensions tab): one section per
/// file, titled by the file's name.
pub(super) fn upload_summary(markdown: &str, title: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = var("AGENT_TEMPDIRECTORY").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let path = dir.join(format!("{title} ({}).md", std::process::id()));
    std::fs::write(&path, markdown)
        .with_context(|| format!("cannot write the build summary ({})", path.display()))?;
    println!(
        "##vso[task.uploadsummary]{}",
        escape_data(&path.display().to_string())
    );
    Ok(())
}

/// Ends the task with a result; used by the task's own steps, not by scripts.
#[must_use]
pub fn complete(result: &str, msg: &str) -> String {
    format!("##vso[task.complete result={result};]{}", message(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralize_cases() {
        assert_eq!(neutralize("a ##vso[x] b"), "a # #vso[x] b");
        assert_eq!(neutralize("##VSO[x"), "# #VSO[x");
        assert_eq!(neutralize("##[error]x"), "# #[error]x");
        assert_eq!(neutralize("issue ##12"), "issue ##12");
        assert_eq!(neutralize("###vso["), "## #vso[");
        assert_eq!(neutralize("ü##vso["), "ü# #vso[");
        assert_eq!(neutralize("##v\u{17f}o[x"), "# #v\u{17f}o[x");
        assert_eq!(neutralize("##vs"), "##vs");
    }
}
