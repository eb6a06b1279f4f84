//! Signed requests to the Blob service of one account: the URL, the headers every request
//! carries, the Shared Key signature, SAS or access token, and the two corrections made at once
//! rather than counted as retries (a clock the service refused, an access token it called
//! expired). Sending and retrying is [`super::http`]'s.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use super::advice::{Signed, clock_refused, service_time, skew_warning, token_refused};
use super::credential::Credential;
use super::entra::AccessTokenSource;
use super::http::{Attempt, Http, Outgoing, Response, RetryPolicy, TransportError, retry};
use super::location::Endpoint;
use super::signer::{self, Signable};
use crate::log;

/// Pinned service version: accepted by Azure and by Azurite 3.37 without `--skipApiVersionCheck`.
pub const API_VERSION: &str = "2025-01-05";

/// Largest response body read (an audit log of 50,000 appended lines fits).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Whether this process has already said that its clock is off: every client of the process
/// learns the offset, but people need to read it once.
static SKEW_WARNED: AtomicBool = AtomicBool::new(false);

/// One request, before signing.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'static str,
    /// The path below the account, unencoded: `/container` or `/container/blob`.
    pub resource: String,
    /// Query parameters, names lower-case, values unencoded.
    pub query: Vec<(String, String)>,
    /// Headers besides the ones every request carries.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    #[must_use]
    pub fn new(method: &'static str, resource: String) -> Self {
        Self {
            method,
            resource,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
        }
    }

    #[must_use]
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// A signed-request client for one account.
pub struct Client {
    http: Http,
    endpoint: Endpoint,
    credential: Credential,
    /// The access tokens of an Entra ID credential.
    tokens: Option<Arc<AccessTokenSource>>,
    policy: RetryPolicy,
    /// The service's clock minus ours, in milliseconds, once a refusal taught us; added to the
    /// signing time of every later request.
    clock_offset_ms: AtomicI64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client; `ca_file` adds trusted roots (PEM).
    pub fn new(
        endpoint: Endpoint,
        credential: Credential,
        ca_file: Option<&Path>,
        policy: RetryPolicy,
    ) -> Result<Self, String> {
        let http = Http::new(ca_file)?;
        // The access tokens are fetched through the same agent, TLS and retry policy.
        let tokens = match &credential {
            Credential::Entra { provider, auto } => Some(AccessTokenSource::shared(
                provider.clone(),
                *auto,
                ca_file,
                &http,
            )),
            Credential::SharedKey(_) | Credential::Sas(_) => None,
        };
        Ok(Self {
            http,
            endpoint,
            credential,
            tokens,
            policy,
            clock_offset_ms: AtomicI64::new(0),
        })
    }

    /// The time to sign with: ours, moved by what the service taught us.
    fn signing_time(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Adopts the service's clock after it refused our signing time; warns once per process.
    fn learn_clock(&self, service_now: DateTime<Utc>) {
        let offset = service_now - Utc::now();
        self.clock_offset_ms
            .store(offset.num_milliseconds(), Ordering::Relaxed);
        log::debug(&format!(
            "the storage service refused our request time; its clock is {} ms from ours",
            offset.num_milliseconds()
        ));
        if let Some(message) = skew_warning(offset)
            && !SKEW_WARNED.swap(true, Ordering::Relaxed)
        {
            log::warn(&message);
        }
    }

    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    #[must_use]
    pub fn uses_sas(&self) -> bool {
        matches!(self.credential, Credential::Sas(_))
    }

    /// The Entra ID token source, when requests carry a bearer token.
    #[must_use]
    pub fn bearer(&self) -> Option<&AccessTokenSource> {
        self.tokens.as_deref()
    }

    /// How requests are signed, for explaining a refusal.
    #[must_use]
    pub fn signed<'a>(&'a self, container: &'a str) -> Signed<'a> {
        Signed {
            account: &self.endpoint.account,
            container,
            sas: self.uses_sas(),
            sas_expiry: self.sas_expiry(),
            bearer: self.bearer(),
        }
    }

    /// When the SAS token in use expires (its `se`), if it says.
    #[must_use]
    pub fn sas_expiry(&self) -> Option<chrono::DateTime<Utc>> {
        let Credential::Sas(sas) = &self.credential else {
            return None;
        };
        let se = sas
            .expose()
            .split('&')
            .find_map(|p| p.strip_prefix("se="))
            .map(signer::decode_query)?;
        chrono::DateTime::parse_from_rfc3339(&se)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(&se, "%Y-%m-%d")
                    .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            })
            .ok()
    }

    /// Sends a request, retrying what is worth retrying. Any HTTP status is `Ok`.
    pub fn send(&self, request: &Request<'_>) -> Result<Response, TransportError> {
        let path = format!(
            "{}{}",
            self.endpoint.base_path,
            signer::encode_path(&request.resource)
        );
        let own_query: Vec<String> = request
            .query
            .iter()
            .map(|(n, v)| format!("{n}={}", signer::encode_query(v)))
            .collect();
        let own_query = own_query.join("&");
        let shown = if own_query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{own_query}")
        };
        let mut query = own_query.clone();
        if let Credential::Sas(sas) = &self.credential {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(sas.expose());
        }
        let url = if query.is_empty() {
            format!(
                "{}://{}{path}",
                self.endpoint.scheme, self.endpoint.authority
            )
        } else {
            format!(
                "{}://{}{path}?{query}",
                self.endpoint.scheme, self.endpoint.authority
            )
        };

        let label = format!("{} {shown}", request.method);
        let mut renewed_token = false;
        let mut corrected_clock = false;
        retry(&self.policy, &label, |client_id| {
            let signed_at = self.signing_time();
            let result = self.attempt(request, &url, &path, client_id, signed_at);
            // A request refused for its signing time is signed again, once, with the service's
            // time. A SAS carries no signing time of its own (the service checks its `st`/`se`),
            // so its refusals are left as they are.
            if let Ok(resp) = &result
                && !corrected_clock
                && !self.uses_sas()
                && clock_refused(resp, signed_at)
                && let Some(service_now) = service_time(resp)
            {
                self.learn_clock(service_now);
                corrected_clock = true;
                return Attempt::Again;
            }
            // A token the service calls expired (a machine that slept, a clock jump) is replaced
            // once, at once, before the answer counts.
            if let (Ok(resp), Some(source)) = (&result, self.bearer())
                && !renewed_token
                && source.refreshable()
                && token_refused(resp)
            {
                log::debug("the storage service refused the token; fetching a new one");
                source.invalidate();
                renewed_token = true;
                return Attempt::Again;
            }
            Attempt::Done(result)
        })
    }

    fn attempt(
        &self,
        request: &Request<'_>,
        url: &str,
        path: &str,
        client_id: &str,
        signed_at: DateTime<Utc>,
    ) -> Result<Response, TransportError> {
        let mut headers = request.headers.clone();
        headers.push(("x-ms-version".to_owned(), API_VERSION.to_owned()));
        // Signed per attempt: the service rejects a date more than 15 minutes old.
        headers.push((
            "x-ms-date".to_owned(),
            signed_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ));
        headers.push(("x-ms-client-request-id".to_owned(), client_id.to_owned()));
        if let Some(source) = &self.tokens {
            let access_token = source.access_token().map_err(|message| TransportError {
                message,
                unreachable: false,
                retryable: false,
                credential: true,
            })?;
            headers.push((
                "authorization".to_owned(),
                format!("Bearer {}", access_token.expose()),
            ));
        }
        if let Credential::SharedKey(key) = &self.credential {
            // ureq sends Content-Length itself from the body; the signature must cover it.
            let mut signed = headers.clone();
            signed.push(("content-length".to_owned(), request.body.len().to_string()));
            let auth = signer::authorization(
                &self.endpoint.account,
                key,
                &Signable {
                    method: request.method,
                    path,
                    query: &request.query,
                    headers: &signed,
                },
            );
            headers.push(("authorization".to_owned(), auth));
        }

        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.http.exchange(
            &Outgoing {
                method: request.method,
                url,
                headers: &headers,
                body: request.body,
                max_body: MAX_BODY,
            },
            &self.policy,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_time_follows_the_learned_offset() {
        let endpoint = Endpoint {
            scheme: "http".into(),
            authority: "127.0.0.1:9".into(),
            base_path: "/devstoreaccount1".into(),
            account: "devstoreaccount1".into(),
        };
        let client = Client::new(
            endpoint,
            Credential::SharedKey(vec![1; 64]),
            None,
            RetryPolicy::default(),
        )
        .expect("client");
        let drift = (client.signing_time() - Utc::now()).abs();
        assert!(drift < TimeDelta::seconds(1), "{drift}");
        client.learn_clock(Utc::now() + TimeDelta::hours(5));
        let ahead = client.signing_time() - Utc::now();
        assert!(
            (ahead - TimeDelta::hours(5)).abs() < TimeDelta::seconds(1),
            "{ahead}"
        );
    }
}
