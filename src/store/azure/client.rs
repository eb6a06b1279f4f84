//! The HTTP side of the Azure store: one blocking `ureq` agent, signed requests, bounded retries.
//!
//! HTTP statuses come back as outcomes (a 409 or 412 is an answer the lock protocol needs, not a
//! failure); only transport problems are errors. Requests that may succeed on a second try (408,
//! 429, 500, 502, 503, 504, resets, timeouts) are retried with exponential backoff and jitter,
//! honouring `Retry-After`, keeping one `x-ms-client-request-id` so the attempts can be traced as
//! one operation on the server side.
//!
//! Shared Key and bearer requests carry the signing time in `x-ms-date`, which Azure refuses when
//! it is more than 15 minutes from its own clock. A machine whose clock is off learns the
//! service's time from the refusal's `Date` header and signs with that from then on.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::entra::TokenSource;
use super::location::{Credential, Endpoint};
use super::signer::{self, Signable};
use crate::log;

/// Pinned service version: accepted by Azure and by Azurite 3.37 without `--skipApiVersionCheck`.
pub const API_VERSION: &str = "2025-01-05";

/// Largest response body read (an audit log of 50,000 appended lines fits).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// How far `x-ms-date` may be from the service's clock before Azure refuses the request.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// Whether this process has already said that its clock is off: every client of the process
/// learns the offset, but people need to read it once.
static SKEW_WARNED: AtomicBool = AtomicBool::new(false);

/// How long and how often to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest wait between attempts, also the most a `Retry-After` is honoured.
    pub max_delay: Duration,
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, receive) of one attempt.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether an HTTP status is worth another attempt.
#[must_use]
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport error is worth another attempt. Configuration mistakes (a bad URL, a TLS
/// certificate that does not verify) fail the same way every time.
#[must_use]
pub fn retryable_error(error: &ureq::Error) -> bool {
    !matches!(
        error,
        ureq::Error::BadUri(_)
            | ureq::Error::Http(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::Tls(_)
            | ureq::Error::Pem(_)
            | ureq::Error::Rustls(_)
            | ureq::Error::BodyExceedsLimit(_)
            | ureq::Error::TooManyRedirects
            | ureq::Error::RedirectFailed
    )
}

/// The wait before attempt `attempt + 1` (`attempt` ≥ 1): exponential backoff with "equal jitter"
/// (half fixed, half random from `random`), raised to the server's `Retry-After` seconds, both
/// capped at `max_delay`.
#[must_use]
pub fn retry_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<&str>,
    random: u32,
) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(policy.max_delay);
    let half = exp / 2;
    let jitter = half.mul_f64(f64::from(random) / f64::from(u32::MAX));
    let backoff = half + jitter;
    let asked = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    backoff.max(asked).min(policy.max_delay)
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // Without OS randomness the jitter is merely zero; the backoff still bounds the retries.
    let _ = getrandom::getrandom(&mut buf);
    u32::from_le_bytes(buf)
}

fn request_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::getrandom(&mut b);
    // Version 4 UUID layout, the form Azure's tooling prints.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    });
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

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

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Attempts it took (for messages).
    pub attempts: u32,
}

impl Response {
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The service's error code, from `x-ms-error-code` or the XML body.
    #[must_use]
    pub fn error_code(&self) -> String {
        self.header("x-ms-error-code")
            .map(str::to_owned)
            .or_else(|| xml_text(&String::from_utf8_lossy(&self.body), "Code"))
            .unwrap_or_default()
    }

    /// The first line of the service's error message (the rest is request id and time).
    #[must_use]
    pub fn error_message(&self) -> String {
        xml_text(&String::from_utf8_lossy(&self.body), "Message")
            .and_then(|m| m.lines().next().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// The decoded text of the first `<tag>…</tag>` in `xml`.
#[must_use]
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml_unescape(&xml[start..end]))
}

/// Replaces the five XML entities and numeric character references.
#[must_use]
pub fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        if let Some(c) = decoded {
            out.push(c);
            rest = &rest[end + 1..];
        } else {
            out.push('&');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The service's clock, from a response's `Date` header.
#[must_use]
pub fn service_time(resp: &Response) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(resp.header("date")?.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Whether the service refused a request for its signing time: a 403 `AuthenticationFailed` that
/// says so ("Request date header too old", Azure's words), or one whose `Date` is further from
/// `signed_at` than Azure allows (Azure documents only the "too old" check, so a date far ahead
/// is recognised by the clocks alone).
#[must_use]
pub fn clock_refused(resp: &Response, signed_at: DateTime<Utc>) -> bool {
    if resp.status != 403 || resp.error_code() != "AuthenticationFailed" {
        return false;
    }
    let text = String::from_utf8_lossy(&resp.body).to_ascii_lowercase();
    let says_so = text.contains("request date header") || text.contains("clock skew");
    let apart = service_time(resp).is_some_and(|now| (now - signed_at).abs() > MAX_CLOCK_SKEW);
    says_so || apart
}

/// What to tell people once the service's clock is known to differ from ours by `offset`
/// (service minus local), or `None` when the difference is too small to matter.
#[must_use]
pub fn skew_warning(offset: TimeDelta) -> Option<String> {
    let seconds = offset.num_seconds().unsigned_abs();
    if seconds < 60 {
        return None;
    }
    // `Date` has whole seconds, so an offset of five hours reads as 4:59:59.x: round.
    let minutes = (seconds + 30) / 60;
    let (unit, direction) = (
        if minutes == 1 { "minute" } else { "minutes" },
        // A positive offset means the service is later than us: our clock is behind.
        if offset > TimeDelta::zero() {
            "behind"
        } else {
            "ahead of"
        },
    );
    Some(format!(
        "this machine's clock is off by {minutes} {unit} ({direction} the storage service's); \
         using the storage service's time"
    ))
}

/// Why no response came back, after every attempt.
#[derive(Debug)]
pub struct TransportError {
    /// What failed, for people; never contains a secret.
    pub message: String,
    /// The last failure was a name lookup or a refused connection.
    pub unreachable: bool,
    /// The request may have been retried (so may have reached the server).
    pub retryable: bool,
    /// No credential could be obtained (an Entra ID token); `message` says why and what to do.
    pub credential: bool,
}

/// A signed-request client for one account.
pub struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    credential: Credential,
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

/// Reads every certificate of a PEM file, for trusting beside the usual roots.
fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem =
        fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "the CA file {} is not valid PEM: {e}",
                    path.display()
                ));
            }
        }
    }
    Ok(certs)
}

/// The operating system's CA bundle, where one is at a well-known place. `RootCerts` takes
/// certificates, not the trust anchors ureq's built-in roots are compiled into, so an extra CA is
/// trusted beside the system's roots.
fn system_roots() -> Vec<Certificate<'static>> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        candidates.push(file.into());
    }
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ] {
        candidates.push(path.into());
    }
    candidates
        .iter()
        .find_map(|p| read_pem_certs(p).ok().filter(|c| !c.is_empty()))
        .unwrap_or_default()
}

/// The TLS settings for the store and the token endpoints: the usual roots, plus `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<TlsConfig, String> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca_file {
        let mut roots = read_pem_certs(path)?;
        if roots.is_empty() {
            return Err(format!(
                "the CA file {} holds no certificate (expected PEM `BEGIN CERTIFICATE`)",
                path.display()
            ));
        }
        roots.extend(system_roots());
        tls = tls.root_certs(RootCerts::new_with_certs(&roots));
    }
    Ok(tls.build())
}

impl Client {
    /// A client; `ca_file` adds trusted roots (PEM). Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/
    /// `ALL_PROXY` with `NO_PROXY`, as ureq reads them.
    pub fn new(
        endpoint: Endpoint,
        credential: Credential,
        ca_file: Option<&Path>,
        policy: RetryPolicy,
    ) -> Result<Self, String> {
        let tls = tls_config(ca_file)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would carry the signed headers somewhere else; the service never sends one.
            .max_redirects(0)
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.request_timeout))
            .user_agent(concat!("deploy-lock/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Ok(Self {
            agent: config.new_agent(),
            endpoint,
            credential,
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
    pub fn bearer(&self) -> Option<&TokenSource> {
        match &self.credential {
            Credential::Bearer(source) => Some(source),
            _ => None,
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
        let client_id = request_id();
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

        let mut attempt = 1;
        let mut renewed_token = false;
        let mut corrected_clock = false;
        loop {
            let signed_at = self.signing_time();
            let result = self.attempt(request, &url, &path, &client_id, signed_at);
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
                continue;
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
                continue;
            }
            let (retry, retry_after) = match &result {
                Ok(resp) => {
                    log::debug(&format!(
                        "{} {shown} -> {} (request id {client_id}, attempt {attempt})",
                        request.method, resp.status
                    ));
                    (
                        retryable_status(resp.status),
                        resp.header("retry-after").map(str::to_owned),
                    )
                }
                Err(e) => {
                    log::debug(&format!(
                        "{} {shown} -> {} (request id {client_id}, attempt {attempt})",
                        request.method, e.message
                    ));
                    (e.retryable, None)
                }
            };
            if !retry || attempt >= self.policy.attempts {
                return result.map(|mut r| {
                    r.attempts = attempt;
                    r
                });
            }
            let delay = retry_delay(&self.policy, attempt, retry_after.as_deref(), random_u32());
            log::debug(&format!("retrying in {} ms", delay.as_millis()));
            thread::sleep(delay);
            attempt += 1;
        }
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
        if let Credential::Bearer(source) = &self.credential {
            let token = source.token().map_err(|message| TransportError {
                message,
                unreachable: false,
                retryable: false,
                credential: true,
            })?;
            headers.push((
                "authorization".to_owned(),
                format!("Bearer {}", token.expose()),
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

        let mut builder = ureq::http::Request::builder()
            .method(request.method)
            .uri(url);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder.body(request.body).map_err(|e| TransportError {
            message: format!("cannot build the request: {e}"),
            unreachable: false,
            retryable: false,
            credential: false,
        })?;

        let transport = |e: &ureq::Error| TransportError {
            message: describe_error(e),
            unreachable: matches!(e, ureq::Error::HostNotFound | ureq::Error::ConnectionFailed)
                || matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
            retryable: retryable_error(e) && !is_certificate_error(e),
            credential: false,
        };
        let mut response = self.agent.run(http_request).map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport(&e))?;
        Ok(Response {
            status,
            headers,
            body,
            attempts: 1,
        })
    }
}

/// Whether the service refused a bearer token for its lifetime (401 from Azure, 403
/// `AuthenticationFailed` from Azurite), which a new token may cure.
fn token_refused(resp: &Response) -> bool {
    if !matches!(resp.status, 401 | 403) {
        return false;
    }
    let body = String::from_utf8_lossy(&resp.body).to_ascii_lowercase();
    matches!(
        resp.error_code().as_str(),
        "InvalidAuthenticationInfo" | "AuthenticationFailed"
    ) && (body.contains("expired") || body.contains("lifetime"))
}

/// rustls reports a certificate that does not verify as an I/O error during the handshake; it
/// fails the same way on every attempt.
fn is_certificate_error(error: &ureq::Error) -> bool {
    matches!(error, ureq::Error::Io(_)) && error.to_string().contains("certificate")
}

/// A transport error for people. ureq's messages never include the request URL's query.
fn describe_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::HostNotFound => "the host name was not found (DNS)".to_owned(),
        ureq::Error::ConnectionFailed => "the connection failed".to_owned(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        e if matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || is_certificate_error(e) =>
        {
            format!(
                "TLS failed ({error}); for a proxy or emulator with its own certificate, pass --ca-file"
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 201, 202, 304, 400, 401, 403, 404, 409, 412, 501] {
            assert!(!retryable_status(status), "{status}");
        }
        assert!(retryable_error(&ureq::Error::HostNotFound));
        assert!(retryable_error(&ureq::Error::ConnectionFailed));
        assert!(retryable_error(&ureq::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!retryable_error(&ureq::Error::BadUri("x".into())));
        assert!(!retryable_error(&ureq::Error::Tls("bad certificate")));
    }

    #[test]
    fn backoff_grows_is_jittered_and_bounded() {
        let p = RetryPolicy::default();
        let low = retry_delay(&p, 1, None, 0);
        let high = retry_delay(&p, 1, None, u32::MAX);
        assert_eq!(low, p.base / 2);
        assert_eq!(high, p.base);
        assert!(retry_delay(&p, 3, None, 0) > retry_delay(&p, 2, None, u32::MAX) / 2);
        for attempt in 1..40 {
            assert!(retry_delay(&p, attempt, None, u32::MAX) <= p.max_delay);
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_bound() {
        let p = RetryPolicy::default();
        assert_eq!(retry_delay(&p, 1, Some("3"), 0), Duration::from_secs(3));
        assert_eq!(retry_delay(&p, 1, Some("3600"), 0), p.max_delay);
        assert_eq!(retry_delay(&p, 1, Some("soon"), 0), p.base / 2);
    }

    #[test]
    fn request_ids_are_uuids() {
        let a = request_id();
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_ne!(a, request_id());
    }

    /// Azure's answer to a request signed at a time it will not accept, as the service sends it.
    fn refused(date: &str, detail: Option<&str>) -> Response {
        let detail = detail
            .map(|d| format!("<AuthenticationErrorDetail>{d}</AuthenticationErrorDetail>"))
            .unwrap_or_default();
        Response {
            status: 403,
            headers: vec![
                ("x-ms-error-code".into(), "AuthenticationFailed".into()),
                ("date".into(), date.into()),
            ],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>\
                 <Message>Server failed to authenticate the request. Make sure the value of \
                 Authorization header is formed correctly including the signature.\n\
                 RequestId:a7c15331-501e-0094-6847-7d350f000000\n\
                 Time:2026-10-07T19:46:36.6469406Z</Message>{detail}</Error>"
            )
            .into_bytes(),
            attempts: 1,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn clock_refusals_are_told_apart_from_other_auth_failures() {
        let service = "Wed, 07 Oct 2026 19:46:36 GMT";
        let ours_behind = at("2026-10-07T14:46:36Z");
        let in_step = at("2026-10-07T19:46:30Z");
        // Azure's words, whatever the clocks say.
        let too_old = refused(
            service,
            Some("Request date header too old: 'Wed, 07 Oct 2026 14:46:36 GMT'"),
        );
        assert!(clock_refused(&too_old, ours_behind));
        assert!(clock_refused(&too_old, in_step));
        // No words, but the clocks are hours apart (a date far ahead).
        let silent = refused(service, None);
        assert!(clock_refused(&silent, at("2026-10-08T00:46:36Z")));
        assert!(clock_refused(&silent, ours_behind));
        // A wrong key from a machine in step is a wrong key.
        let wrong_key = refused(
            service,
            Some(
                "The MAC signature found in the HTTP request 'x' is not the same as any computed signature.",
            ),
        );
        assert!(!clock_refused(&wrong_key, in_step));
        assert!(!clock_refused(&silent, in_step));
        // Only 403 AuthenticationFailed counts.
        let mut other = too_old.clone();
        other.status = 401;
        assert!(!clock_refused(&other, ours_behind));
        let mut other = too_old;
        other.headers[0].1 = "AuthorizationPermissionMismatch".into();
        assert!(!clock_refused(&other, ours_behind));
        // Just inside Azure's 15 minutes is not a skew refusal without the words.
        assert!(!clock_refused(&silent, at("2026-10-07T19:31:37Z")));
        assert!(clock_refused(&silent, at("2026-10-07T19:31:35Z")));
    }

    #[test]
    fn the_service_time_comes_from_the_date_header() {
        let resp = refused("Wed, 07 Oct 2026 19:46:36 GMT", None);
        assert_eq!(service_time(&resp), Some(at("2026-10-07T19:46:36Z")));
        let mut bad = resp;
        bad.headers[1].1 = "yesterday".into();
        assert_eq!(service_time(&bad), None);
        bad.headers.pop();
        assert_eq!(service_time(&bad), None);
    }

    #[test]
    fn the_warning_says_how_far_and_which_way() {
        let ahead = skew_warning(TimeDelta::hours(-5)).expect("warn");
        assert_eq!(
            ahead,
            "this machine's clock is off by 300 minutes (ahead of the storage service's); \
             using the storage service's time"
        );
        let behind = skew_warning(TimeDelta::seconds(61)).expect("warn");
        assert!(behind.contains("off by 1 minute (behind"), "{behind}");
        let almost = skew_warning(TimeDelta::milliseconds(-(5 * 3600 - 1) * 1000 - 200));
        assert!(almost.expect("warn").contains("off by 300 minutes"));
        // Under a minute is the time a request takes, not a clock worth a warning.
        assert_eq!(skew_warning(TimeDelta::seconds(59)), None);
        assert_eq!(skew_warning(TimeDelta::seconds(-59)), None);
    }

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

    #[test]
    fn xml_helpers() {
        let xml = "<Error><Code>ContainerNotFound</Code><Message>The &quot;c&quot; &amp; co.\nRequestId:1</Message></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("ContainerNotFound"));
        assert_eq!(
            xml_unescape("a&lt;b&gt;&#65;&#x42;&bogus;&"),
            "a<b>AB&bogus;&"
        );
        let resp = Response {
            status: 404,
            headers: Vec::new(),
            body: xml.as_bytes().to_vec(),
            attempts: 1,
        };
        assert_eq!(resp.error_code(), "ContainerNotFound");
        assert_eq!(resp.error_message(), "The \"c\" & co.");
    }
}
