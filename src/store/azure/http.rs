//! The one HTTP layer of the Azure store, for the Blob service and Entra ID's token endpoints
//! alike: one blocking `ureq` agent, its TLS (the usual roots, plus a CA file), proxies
//! (`HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` with `NO_PROXY`, as ureq reads them) and one retry
//! policy.
//!
//! HTTP statuses come back as outcomes (a 409 or 412 is an answer the lock protocol needs, not a
//! failure); only transport problems are errors. Requests that may succeed on a second try (408,
//! 429, 500, 502, 503, 504, resets, timeouts) are retried with exponential backoff and jitter,
//! honouring `Retry-After`, keeping one `x-ms-client-request-id` so the attempts can be traced as
//! one operation on the server side.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::xml::xml_text;
use crate::log;

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
    /// Whether a 410 is worth another attempt: the instance metadata service answers 410 while
    /// it is being updated.
    pub retry_gone: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_gone: false,
        }
    }
}

impl RetryPolicy {
    /// Whether an answer with this status is worth another attempt.
    #[must_use]
    pub fn retries(&self, status: u16) -> bool {
        retryable_status(status) || (self.retry_gone && status == 410)
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

/// A fresh version 4 UUID, for ids of requests and events.
#[must_use]
pub fn request_id() -> String {
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
fn tls_config(ca_file: Option<&Path>) -> Result<TlsConfig, String> {
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

/// One HTTP request as it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The most of the answer's body that is read.
    pub max_body: u64,
}

/// The agent every request of one store goes through. Cloning shares the agent (and its
/// connection pool).
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

/// What one attempt came to.
pub enum Attempt {
    /// An answer or a transport failure, for the policy to judge.
    Done(Result<Response, TransportError>),
    /// Send again at once, without counting an attempt (the caller corrected something, such as
    /// its clock or its access token, and bounds how often it does).
    Again,
}

impl Http {
    /// The agent; `ca_file` adds trusted roots (PEM).
    pub fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would carry signed headers, a bearer token or an assertion elsewhere;
            // none of the services sends one.
            .max_redirects(0)
            // One connection per concurrent read (`AzureStore::get_many`) stays open for reuse.
            .max_idle_connections_per_host(super::store::CONCURRENT_READS)
            .user_agent(concat!("deploy-lock/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls_config(ca_file)?)
            .build();
        Ok(Self {
            agent: config.new_agent(),
        })
    }

    /// One exchange, not retried, within the policy's timeouts.
    pub fn exchange(
        &self,
        outgoing: &Outgoing<'_>,
        policy: &RetryPolicy,
    ) -> Result<Response, TransportError> {
        let mut builder = ureq::http::Request::builder()
            .method(outgoing.method)
            .uri(outgoing.url);
        for (name, value) in outgoing.headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(outgoing.body).map_err(|e| TransportError {
            message: format!("cannot build the request: {e}"),
            unreachable: false,
            retryable: false,
            credential: false,
        })?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.request_timeout))
            .build();
        let transport = |e: &ureq::Error| TransportError {
            message: describe_error(e),
            unreachable: matches!(e, ureq::Error::HostNotFound | ureq::Error::ConnectionFailed)
                || matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
            retryable: retryable_error(e) && !is_certificate_error(e),
            credential: false,
        };
        let mut response = self.agent.run(request).map_err(|e| transport(&e))?;
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
            .limit(outgoing.max_body)
            .read_to_vec()
            .map_err(|e| transport(&e))?;
        Ok(Response {
            status,
            headers,
            body,
            attempts: 1,
        })
    }

    /// A plain request (Entra ID and the other token endpoints), retried as `policy` says; every
    /// attempt carries the operation's `x-ms-client-request-id`. Only the method, scheme, host and
    /// path are logged.
    pub fn send(
        &self,
        outgoing: &Outgoing<'_>,
        policy: &RetryPolicy,
    ) -> Result<Response, TransportError> {
        let url = outgoing.url;
        let label = format!(
            "{} {}",
            outgoing.method,
            url.split('?').next().unwrap_or(url)
        );
        retry(policy, &label, |client_id| {
            let mut headers = outgoing.headers.to_vec();
            headers.push(("x-ms-client-request-id", client_id));
            let attempt = Outgoing {
                headers: &headers,
                ..*outgoing
            };
            Attempt::Done(self.exchange(&attempt, policy))
        })
    }
}

/// Runs `attempt` (given the operation's client request id) until an answer is final or the
/// policy's attempts are spent, waiting between attempts as [`retry_delay`] says. `label` names
/// the request in the debug log; it must hold no secret.
pub fn retry(
    policy: &RetryPolicy,
    label: &str,
    mut attempt: impl FnMut(&str) -> Attempt,
) -> Result<Response, TransportError> {
    let client_id = request_id();
    let mut count = 1;
    loop {
        let result = match attempt(&client_id) {
            Attempt::Again => continue,
            Attempt::Done(result) => result,
        };
        let (again, retry_after) = match &result {
            Ok(resp) => {
                log::debug(&format!(
                    "{label} -> {} (request id {client_id}, attempt {count})",
                    resp.status
                ));
                (
                    policy.retries(resp.status),
                    resp.header("retry-after").map(str::to_owned),
                )
            }
            Err(e) => {
                log::debug(&format!(
                    "{label} -> {} (request id {client_id}, attempt {count})",
                    e.message
                ));
                (e.retryable, None)
            }
        };
        if !again || count >= policy.attempts {
            return result.map(|mut r| {
                r.attempts = count;
                r
            });
        }
        let delay = retry_delay(policy, count, retry_after.as_deref(), random_u32());
        log::debug(&format!("retrying in {} ms", delay.as_millis()));
        thread::sleep(delay);
        count += 1;
    }
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
    fn gone_is_retried_only_where_the_policy_says() {
        let store = RetryPolicy::default();
        assert!(!store.retries(410) && store.retries(503));
        let imds = RetryPolicy {
            retry_gone: true,
            ..RetryPolicy::default()
        };
        assert!(imds.retries(410) && imds.retries(503) && !imds.retries(404));
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

    #[test]
    fn service_errors_come_from_the_header_or_the_body() {
        let xml = "<Error><Code>ContainerNotFound</Code><Message>The &quot;c&quot; &amp; co.\nRequestId:1</Message></Error>";
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
