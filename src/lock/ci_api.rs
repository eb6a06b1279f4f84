//! The CI systems' APIs, asked whether a holder's run has ended: GitHub's workflow run attempt
//! and Azure DevOps' build. Requests go through the store's one HTTP layer (agent, TLS, proxies,
//! no redirects), with a short retry policy: an unanswered question only means the ttl applies.

use std::path::Path;
use std::time::Duration;

use super::reaper::RunOracle;
use crate::ci::runs::{CiAccess, CiRun, RunState, parse_answer};
use crate::log;
use crate::store::azure::http::{Http, Outgoing, RetryPolicy};

/// The most of an answer that is read: a run's JSON is a few kilobytes.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

const POLICY: RetryPolicy = RetryPolicy {
    attempts: 2,
    base: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
    connect_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(10),
    retry_gone: false,
};

/// Asks the waiter's own CI APIs, with the waiter's tokens.
pub struct CiApi {
    http: Http,
    access: CiAccess,
}

impl CiApi {
    /// `ca_file` adds trusted roots, as for the store (GitHub Enterprise Server behind a private CA).
    ///
    /// # Errors
    /// When the CA file cannot be read.
    pub fn new(access: CiAccess, ca_file: Option<&Path>) -> Result<Self, String> {
        Ok(Self {
            http: Http::new(ca_file)?,
            access,
        })
    }
}

impl CiApi {
    /// Asks `run`'s own CI to cancel it (a superseded step cancels its own run); why not, when
    /// it could not.
    ///
    /// # Errors
    /// No token or API for the run, a malformed reference, an unanswered request or a refusal.
    pub fn cancel(&self, run: &CiRun) -> Result<(), String> {
        let (cancel, token) = self
            .access
            .cancel_request(run)
            .ok_or("no token for this run's CI API, or its reference is malformed")?;
        let authorization = format!("Bearer {}", token.expose());
        let headers = [
            ("Authorization", authorization.as_str()),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        let outgoing = Outgoing {
            method: cancel.method,
            url: &cancel.url,
            headers: &headers,
            body: cancel.body.as_bytes(),
            max_body: MAX_ANSWER_BYTES,
        };
        let answer = self.http.send(&outgoing, &POLICY).map_err(|e| e.message)?;
        // Azure DevOps answers an unknown or expired token with 203 and a sign-in page.
        match answer.status {
            200 | 201 | 202 | 204 => Ok(()),
            status => Err(format!("the CI API answered HTTP {status}")),
        }
    }
}

impl RunOracle for CiApi {
    fn ask(&self, run: &CiRun) -> Option<Result<RunState, String>> {
        let Some((url, token)) = self.access.request(run) else {
            log::debug(
                "the holder's run is not asked about: no token for its CI, its API is not this \
                 run's own, or its reference is malformed",
            );
            return None;
        };
        let authorization = format!("Bearer {}", token.expose());
        let headers = [
            ("Authorization", authorization.as_str()),
            ("Accept", "application/json"),
            ("X-GitHub-Api-Version", "2022-11-28"),
        ];
        let outgoing = Outgoing {
            method: "GET",
            url: &url,
            headers: &headers,
            body: &[],
            max_body: MAX_ANSWER_BYTES,
        };
        Some(match self.http.send(&outgoing, &POLICY) {
            Ok(answer) => parse_answer(&run.system, answer.status, &answer.body),
            Err(e) => Err(e.message),
        })
    }
}
