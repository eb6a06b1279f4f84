//! Where a run can be asked whether it is still going: the run's reference on its CI system (as a
//! lock record and a queue ticket carry it), the waiter's own access to its platform's API, the
//! request that asks, and what the answer means.
//!
//! A record is written by anyone who can write to the store, so its API URL is never trusted: a
//! token is sent only to the API of the waiter's own platform (`GITHUB_API_URL` of the waiter's
//! run, `SYSTEM_COLLECTIONURI` of the waiter's pipeline), and a record that names another API is
//! not asked about at all (docs/design.md, "Reaping").

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;

/// Fields longer than this make no reference (the record's bound for fields from the environment).
const MAX_CHARS: usize = 512;
/// The public GitHub's API, for a waiter outside Actions with a GitHub token.
pub const GITHUB_API: &str = "https://api.github.com";

/// A run on its CI system, as much as is needed to ask about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CiRun {
    /// `github` or `azdevops`.
    pub system: String,
    /// GitHub: the API URL (`GITHUB_API_URL`); Azure DevOps: the collection URI.
    pub api_url: String,
    /// GitHub: `owner/name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// Azure DevOps: the project's id (or name).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// GitHub: the run id; Azure DevOps: the build id.
    pub run_id: String,
    /// GitHub: the run attempt.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub attempt: String,
}

impl CiRun {
    /// A GitHub Actions run: `GITHUB_API_URL` (the public API when unset), `GITHUB_REPOSITORY`,
    /// `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT`, read through `var`.
    #[must_use]
    pub fn github(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Self {
            system: "github".into(),
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| GITHUB_API.into()),
            repository: var("GITHUB_REPOSITORY")?,
            run_id: var("GITHUB_RUN_ID")?,
            attempt: var("GITHUB_RUN_ATTEMPT")?,
            ..Self::default()
        }
        .bounded()
    }

    /// An Azure DevOps build: the collection URI, `SYSTEM_TEAMPROJECTID` (or the project's
    /// name) and `BUILD_BUILDID`.
    #[must_use]
    pub fn azdo(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Self {
            system: "azdevops".into(),
            api_url: collection_uri(&var)?,
            project: var("SYSTEM_TEAMPROJECTID").or_else(|| var("SYSTEM_TEAMPROJECT"))?,
            run_id: var("BUILD_BUILDID")?,
            ..Self::default()
        }
        .bounded()
    }

    /// None when a field is longer than a record keeps: a cut reference would ask about
    /// another run.
    fn bounded(self) -> Option<Self> {
        let fields = [
            &self.api_url,
            &self.repository,
            &self.project,
            &self.run_id,
            &self.attempt,
        ];
        fields
            .iter()
            .all(|f| f.chars().count() <= MAX_CHARS)
            .then_some(self)
    }
}

fn collection_uri(var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    var("SYSTEM_COLLECTIONURI").or_else(|| var("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"))
}

/// Reads an optional `CiRun` leniently: a value of another shape (a newer writer's) is no
/// reference, never a reason to take the whole record for unreadable.
///
/// # Errors
/// Only when the JSON itself is broken.
pub fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CiRun>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// One platform's API as the waiter may use it: its own API URL and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub url: String,
    pub token: Secret,
}

/// What the waiter may ask, per platform. Without a token for a platform, its runs are never
/// asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiAccess {
    pub github: Option<Api>,
    pub azdo: Option<Api>,
}

impl CiAccess {
    /// From the environment, read through `var`: `GITHUB_TOKEN` or `GH_TOKEN` (else `github_token`,
    /// the action's `github-token`) with `GITHUB_API_URL` (the public API when unset);
    /// `SYSTEM_ACCESSTOKEN` (or the task's `SystemVssConnection` token) with `SYSTEM_COLLECTIONURI`.
    #[must_use]
    pub fn new(var: impl Fn(&str) -> Option<String>, github_token: Option<String>) -> Self {
        let github = var("GITHUB_TOKEN")
            .or_else(|| var("GH_TOKEN"))
            .or(github_token)
            .map(|token| Api {
                url: var("GITHUB_API_URL").unwrap_or_else(|| GITHUB_API.into()),
                token: Secret::new(token),
            });
        let azdo_token = var("SYSTEM_ACCESSTOKEN")
            .or_else(|| var("ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN"));
        let azdo = match (azdo_token, collection_uri(&var)) {
            (Some(token), Some(url)) => Some(Api {
                url,
                token: Secret::new(token),
            }),
            _ => None,
        };
        Self { github, azdo }
    }

    #[must_use]
    pub fn any(&self) -> bool {
        self.github.is_some() || self.azdo.is_some()
    }

    /// The request that asks about `run`: the URL and the token to send with it. None when the
    /// waiter has no token for the run's platform, when the record's API is not the waiter's own,
    /// or when a field is not what that platform writes: nothing is sent then.
    #[must_use]
    pub fn request(&self, run: &CiRun) -> Option<(String, &Secret)> {
        let tail = format!("attempts/{}", run.attempt);
        let attempt_ok = run.system != "github" || number(&run.attempt);
        self.endpoint(run, &tail).filter(|_| attempt_ok)
    }

    /// The request that asks `run`'s CI to cancel it (a superseded step cancels its own run):
    /// GitHub's `POST …/actions/runs/{id}/cancel`, Azure DevOps' `PATCH` of the build to
    /// `cancelling`. None on the same terms as [`CiAccess::request`].
    #[must_use]
    pub fn cancel_request(&self, run: &CiRun) -> Option<(Cancel, &Secret)> {
        let (url, token) = self.endpoint(run, "cancel")?;
        let cancel = match run.system.as_str() {
            "github" => Cancel {
                method: "POST",
                url,
                body: "",
            },
            _ => Cancel {
                method: "PATCH",
                url,
                body: r#"{"status":"cancelling"}"#,
            },
        };
        Some((cancel, token))
    }

    /// The URL of `run` on its own platform's API, with the token for it: GitHub's
    /// `…/actions/runs/{id}/{github_tail}`, Azure DevOps' build. None without a token for the
    /// platform, for a malformed reference, or for an API that is not this run's own.
    fn endpoint(&self, run: &CiRun, github_tail: &str) -> Option<(String, &Secret)> {
        let (api, url) = match run.system.as_str() {
            "github" => {
                let api = self.github.as_ref()?;
                let ok = repository(&run.repository) && number(&run.run_id);
                let url = format!(
                    "{}/repos/{}/actions/runs/{}/{github_tail}",
                    trimmed(&api.url),
                    run.repository,
                    run.run_id
                );
                (api, ok.then_some(url)?)
            }
            "azdevops" => {
                let api = self.azdo.as_ref()?;
                let ok = !run.project.is_empty() && number(&run.run_id);
                let url = format!(
                    "{}/{}/_apis/build/builds/{}?api-version=7.1",
                    trimmed(&api.url),
                    encode(&run.project),
                    run.run_id
                );
                (api, ok.then_some(url)?)
            }
            _ => return None,
        };
        same_api(&api.url, &run.api_url).then_some((url, &api.token))
    }
}

/// A request that cancels a run: its method, URL and JSON body (empty for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub method: &'static str,
    pub url: String,
    pub body: &'static str,
}

fn trimmed(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

/// The same API: equal but for case and trailing slashes.
#[must_use]
pub fn same_api(ours: &str, theirs: &str) -> bool {
    let ours = trimmed(ours);
    !ours.is_empty() && ours.eq_ignore_ascii_case(trimmed(theirs))
}

fn number(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `owner/name` as GitHub allows them; nothing that could climb out of the path.
fn repository(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.len() <= 100
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Percent-encodes everything but unreserved characters (a project name may hold spaces).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What the run's CI said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Queued, in progress, cancelling, or anything else that is not over: never reaped.
    Going(String),
    /// Completed, with its conclusion (`success`, `failure`, `cancelled`, `canceled`, ...).
    Ended(String),
}

/// Reads an API's answer to [`CiAccess::request`]. GitHub answers `status` (`completed` when
/// over) and `conclusion`; Azure DevOps `status` and `result`.
///
/// # Errors
/// Anything but a 200 with the JSON of a run: such an answer changes nothing.
pub fn parse_answer(system: &str, status: u16, body: &[u8]) -> Result<RunState, String> {
    if status != 200 {
        return Err(format!("the API answered {status}"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the API's answer is not JSON".to_owned())?;
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    let run_status = field("status").ok_or("the API's answer names no status")?;
    let conclusion = if system == "github" {
        field("conclusion")
    } else {
        field("result")
    };
    if run_status.eq_ignore_ascii_case("completed") {
        Ok(RunState::Ended(conclusion.unwrap_or("unknown").to_owned()))
    } else {
        Ok(RunState::Going(run_status.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> CiAccess {
        CiAccess {
            github: Some(Api {
                url: "https://ghe.example/api/v3/".into(),
                token: Secret::new("gh-secret"),
            }),
            azdo: Some(Api {
                url: "https://dev.azure.com/org/".into(),
                token: Secret::new("ado-secret"),
            }),
        }
    }

    fn github(api: &str, repo: &str) -> CiRun {
        CiRun {
            system: "github".into(),
            api_url: api.into(),
            repository: repo.into(),
            run_id: "123".into(),
            attempt: "2".into(),
            ..CiRun::default()
        }
    }

    #[test]
    fn requests_go_only_to_the_waiters_own_api() {
        let a = access();
        let (url, token) = a
            .request(&github("https://GHE.example/api/v3", "o/r"))
            .expect("asked");
        assert_eq!(
            url,
            "https://ghe.example/api/v3/repos/o/r/actions/runs/123/attempts/2"
        );
        assert_eq!(token.expose(), "gh-secret");
        for hostile in [
            "https://attacker.example/api/v3",
            "https://ghe.example.attacker.example/api/v3",
            "https://ghe.example/api/v3/../../x",
            "",
        ] {
            assert!(a.request(&github(hostile, "o/r")).is_none(), "{hostile}");
        }
        for repo in ["o", "o/r/x", "../r", "o/..", "o/r?x=1", "o/r#", "o/ r"] {
            assert!(
                a.request(&github("https://ghe.example/api/v3", repo))
                    .is_none(),
                "{repo}"
            );
        }
        let no_github = CiAccess {
            github: None,
            ..access()
        };
        assert!(
            no_github
                .request(&github("https://ghe.example/api/v3", "o/r"))
                .is_none()
        );
    }

    #[test]
    fn azure_devops_projects_are_encoded() {
        let run = CiRun {
            system: "azdevops".into(),
            api_url: "https://dev.azure.com/org".into(),
            project: "My Project/..".into(),
            run_id: "77".into(),
            ..CiRun::default()
        };
        let a = access();
        let (url, token) = a.request(&run).expect("asked");
        assert_eq!(
            url,
            "https://dev.azure.com/org/My%20Project%2F../_apis/build/builds/77?api-version=7.1"
        );
        assert_eq!(format!("{token} {token:?}"), "(redacted) (redacted)");
        let elsewhere = CiRun {
            api_url: "https://dev.azure.com/other/".into(),
            ..run
        };
        assert!(access().request(&elsewhere).is_none());
    }

    #[test]
    fn a_run_is_cancelled_on_its_own_api_only() {
        let a = access();
        let (cancel, token) = a
            .cancel_request(&github("https://ghe.example/api/v3", "o/r"))
            .expect("cancelled");
        assert_eq!(
            (cancel.method, cancel.url.as_str(), cancel.body),
            (
                "POST",
                "https://ghe.example/api/v3/repos/o/r/actions/runs/123/cancel",
                ""
            )
        );
        assert_eq!(token.expose(), "gh-secret");
        assert!(
            a.cancel_request(&github("https://attacker.example/api/v3", "o/r"))
                .is_none()
        );
        assert!(
            a.cancel_request(&github("https://ghe.example/api/v3", "o/../x"))
                .is_none()
        );
        let build = CiRun {
            system: "azdevops".into(),
            api_url: "https://dev.azure.com/org".into(),
            project: "My Project".into(),
            run_id: "77".into(),
            ..CiRun::default()
        };
        let (cancel, token) = a.cancel_request(&build).expect("cancelled");
        assert_eq!(
            (cancel.method, cancel.url.as_str(), cancel.body),
            (
                "PATCH",
                "https://dev.azure.com/org/My%20Project/_apis/build/builds/77?api-version=7.1",
                r#"{"status":"cancelling"}"#
            )
        );
        assert_eq!(token.expose(), "ado-secret");
        let no_token = CiAccess::default();
        assert!(no_token.cancel_request(&build).is_none());
        let odd = CiRun {
            run_id: "7x".into(),
            ..build
        };
        assert!(a.cancel_request(&odd).is_none());
    }

    #[test]
    fn only_a_completed_run_has_ended() {
        let ended = parse_answer(
            "github",
            200,
            br#"{"status":"completed","conclusion":"cancelled"}"#,
        );
        assert_eq!(ended, Ok(RunState::Ended("cancelled".into())));
        for status in ["queued", "in_progress", "waiting", "pending", "requested"] {
            let body = format!(r#"{{"status":"{status}","conclusion":null}}"#);
            assert_eq!(
                parse_answer("github", 200, body.as_bytes()),
                Ok(RunState::Going(status.into()))
            );
        }
        assert_eq!(
            parse_answer(
                "azdevops",
                200,
                br#"{"status":"completed","result":"failed"}"#
            ),
            Ok(RunState::Ended("failed".into()))
        );
        assert_eq!(
            parse_answer("azdevops", 200, br#"{"status":"inProgress"}"#),
            Ok(RunState::Going("inProgress".into()))
        );
        assert!(parse_answer("github", 404, b"{}").is_err());
        assert!(parse_answer("azdevops", 203, b"<html>sign in</html>").is_err());
        assert!(parse_answer("github", 200, b"<html>").is_err());
        assert!(parse_answer("github", 200, br#"{"conclusion":"success"}"#).is_err());
    }

    #[test]
    fn an_odd_reference_is_no_reference() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(default, deserialize_with = "lenient")]
            ci_run: Option<CiRun>,
        }
        let read = |json: &str| serde_json::from_str::<Holder>(json).map(|h| h.ci_run);
        assert_eq!(read("{}").ok(), Some(None));
        assert_eq!(read(r#"{"ci_run":5}"#).ok(), Some(None));
        assert_eq!(read(r#"{"ci_run":{"run_id":7}}"#).ok(), Some(None));
        let run = read(r#"{"ci_run":{"system":"github","run_id":"7","x":1}}"#).expect("read");
        assert_eq!(run.map(|r| r.run_id), Some("7".into()));
    }
}
