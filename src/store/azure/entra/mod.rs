//! Entra ID access tokens for Azure Storage: fetched on first use, kept until shortly before they
//! expire, refreshed (with a new ID token where one is needed), masked on CI and never printed.
//!
//! One [`TokenSource`] serves every store the process opens for the same identity, so the heartbeat
//! thread of `run` and the main thread share one token instead of fetching two.

use std::fmt;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub mod settings;

use self::settings::{
    AuthMethod, AuthSettings, EXCHANGE_AUDIENCE, STORAGE_RESOURCE, STORAGE_SCOPE,
};
use super::http::{RetryPolicy, retry_delay, retryable_status};
use super::signer::encode_query;
use crate::log;
use crate::secret::Secret;

/// Refresh this long before expiry, or at half-life for tokens shorter than twice this.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest token-endpoint answer read.
const MAX_BODY: u64 = 1024 * 1024;
/// The Azure CLI can hang (a broken proxy, a keyring prompt); it gets this long.
const AZ_TIMEOUT: Duration = Duration::from_secs(90);
/// How long `auto` waits for the instance metadata service before deciding there is none.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A federated identity token (the assertion) and where it comes from.
#[derive(Debug, Clone)]
pub enum Assertion {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    GitHub {
        request_url: String,
        request_token: Secret,
    },
    /// `SYSTEM_OIDCREQUESTURI` with `System.AccessToken`, for one service connection.
    AzureDevOps {
        request_uri: String,
        access_token: Secret,
        connection_id: String,
    },
}

/// Where access tokens come from.
#[derive(Debug, Clone)]
pub enum Provider {
    /// A token given as is (`AZURE_STORAGE_TOKEN`): used until the service refuses it.
    Static(Secret),
    /// An ID token exchanged at Entra ID for the app registration `client_id`.
    Federated {
        assertion: Assertion,
        client_id: String,
        tenant_id: String,
        authority: String,
    },
    /// App Service style `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`.
    AppService {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
    /// The VM/VMSS instance metadata service.
    Imds {
        endpoint: String,
        client_id: Option<String>,
        /// Tried by `auto`: a short timeout and no retries, since most machines have none.
        probe: bool,
    },
    /// `az account get-access-token`.
    AzureCli { tenant_id: Option<String> },
    /// `auto`'s last resorts, tried in order at the first request; the first that works stays.
    Chain(Vec<Provider>),
}

impl Provider {
    /// What signs in, for messages ("GitHub OIDC for app 1234…").
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Static(_) => "the token in AZURE_STORAGE_TOKEN".to_owned(),
            Self::Federated {
                assertion: Assertion::GitHub { .. },
                client_id,
                ..
            } => format!("GitHub OIDC for app (client id) {client_id}"),
            Self::Federated {
                assertion: Assertion::AzureDevOps { connection_id, .. },
                client_id,
                ..
            } => format!(
                "Azure DevOps service connection {connection_id} (app / client id {client_id})"
            ),
            Self::AppService { client_id, .. } => match client_id {
                Some(id) => format!("the managed identity {id} (IDENTITY_ENDPOINT)"),
                None => "the managed identity (IDENTITY_ENDPOINT)".to_owned(),
            },
            Self::Imds { client_id, .. } => match client_id {
                Some(id) => format!("the VM's managed identity {id}"),
                None => "the VM's managed identity".to_owned(),
            },
            Self::AzureCli { .. } => "the Azure CLI's signed-in account".to_owned(),
            Self::Chain(list) => list
                .iter()
                .map(Self::describe)
                .collect::<Vec<_>>()
                .join(", or "),
        }
    }

    /// The principal a role assignment must name, where known.
    #[must_use]
    pub fn assignee(&self) -> Option<&str> {
        match self {
            Self::Federated { client_id, .. } => Some(client_id),
            Self::AppService { client_id, .. } | Self::Imds { client_id, .. } => {
                client_id.as_deref()
            }
            _ => None,
        }
    }

    /// Identifies the identity (never by a secret), so one process shares one token per identity.
    fn key(&self) -> String {
        match self {
            Self::Static(s) => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(s.expose().as_bytes());
                format!("static:{}", URL_SAFE_NO_PAD.encode(digest))
            }
            Self::Federated {
                assertion,
                client_id,
                tenant_id,
                authority,
            } => {
                let from = match assertion {
                    Assertion::GitHub { request_url, .. } => request_url.clone(),
                    Assertion::AzureDevOps {
                        request_uri,
                        connection_id,
                        ..
                    } => format!("{request_uri}#{connection_id}"),
                };
                format!("federated:{from}|{client_id}|{tenant_id}|{authority}")
            }
            Self::AppService {
                endpoint,
                client_id,
                ..
            } => format!("appservice:{endpoint}|{client_id:?}"),
            Self::Imds {
                endpoint,
                client_id,
                probe,
            } => format!("imds:{endpoint}|{client_id:?}|{probe}"),
            Self::AzureCli { tenant_id } => format!("az:{tenant_id:?}"),
            Self::Chain(list) => list.iter().map(Self::key).collect::<Vec<_>>().join(";"),
        }
    }
}

/// The token provider for a method, or what is missing for it.
pub fn provider(method: AuthMethod, auth: &AuthSettings) -> Result<Provider, String> {
    let need_ids = |what: &str| -> Result<(String, String), String> {
        match (&auth.client_id, &auth.tenant_id) {
            (Some(c), Some(t)) => Ok((c.clone(), t.clone())),
            _ => Err(format!(
                "{what} needs the app registration's client id and tenant id: set the client-id \
                 and tenant-id inputs (or AZURE_CLIENT_ID and AZURE_TENANT_ID)"
            )),
        }
    };
    match method {
        AuthMethod::Token => {
            auth.token.clone().map(Provider::Static).ok_or_else(|| {
                "--auth token needs the bearer token in AZURE_STORAGE_TOKEN".to_owned()
            })
        }
        AuthMethod::GithubOidc => {
            let (client_id, tenant_id) = need_ids("GitHub OIDC")?;
            let Some(github) = &auth.github else {
                return Err(
                    "GitHub OIDC needs the job's ID token, and this job cannot request \
                            one (ACTIONS_ID_TOKEN_REQUEST_URL is not set): give the workflow \
                            or job `permissions: id-token: write` (and `contents: read`). \
                            Pull requests from forks never get one."
                        .to_owned(),
                );
            };
            Ok(Provider::Federated {
                assertion: Assertion::GitHub {
                    request_url: github.request_url.clone(),
                    request_token: github.request_token.clone(),
                },
                client_id,
                tenant_id,
                authority: auth.authority_host.clone(),
            })
        }
        AuthMethod::AzureDevopsOidc => {
            let azdo = &auth.azdo;
            let Some(id) = azdo.id.clone() else {
                return Err(
                    "Azure DevOps OIDC needs the service connection: set the task's \
                            serviceConnection input (an Azure Resource Manager connection \
                            using workload identity federation), or \
                            AZURESUBSCRIPTION_SERVICE_CONNECTION_ID outside the task"
                        .to_owned(),
                );
            };
            if let Some(scheme) = &azdo.scheme
                && !scheme.eq_ignore_ascii_case("WorkloadIdentityFederation")
            {
                return Err(format!(
                    "service connection {id} uses the `{scheme}` scheme; deploy-lock signs in \
                     with workload identity federation: convert the connection (Project \
                     settings → Service connections → the connection → Convert)"
                ));
            }
            let Some(request_uri) = azdo.oidc_request_uri.clone() else {
                return Err(
                    "Azure DevOps OIDC needs SYSTEM_OIDCREQUESTURI, which the agent \
                            sets for pipeline jobs (agent 3.227 or later)"
                        .to_owned(),
                );
            };
            let Some(access_token) = azdo.access_token.clone() else {
                return Err(
                    "Azure DevOps OIDC needs System.AccessToken: map it into the step \
                            (`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)"
                        .to_owned(),
                );
            };
            let client_id = azdo.client_id.clone().or_else(|| auth.client_id.clone());
            let tenant_id = azdo.tenant_id.clone().or_else(|| auth.tenant_id.clone());
            let (Some(client_id), Some(tenant_id)) = (client_id, tenant_id) else {
                return Err(format!(
                    "the agent did not pass service connection {id}'s client and tenant id \
                     (ENDPOINT_AUTH_PARAMETER_{}_SERVICEPRINCIPALID / _TENANTID): use the \
                     connection through the task's serviceConnection input, or set client-id \
                     and tenant-id",
                    id.to_ascii_uppercase()
                ));
            };
            Ok(Provider::Federated {
                assertion: Assertion::AzureDevOps {
                    request_uri,
                    access_token,
                    connection_id: id,
                },
                client_id,
                tenant_id,
                authority: auth.authority_host.clone(),
            })
        }
        AuthMethod::ManagedIdentity => Ok(
            match (
                &auth.managed.identity_endpoint,
                &auth.managed.identity_header,
            ) {
                (Some(endpoint), Some(header)) => Provider::AppService {
                    endpoint: endpoint.clone(),
                    header: header.clone(),
                    client_id: auth.client_id.clone(),
                },
                _ => Provider::Imds {
                    endpoint: auth.managed.imds_endpoint.clone(),
                    client_id: auth.client_id.clone(),
                    probe: false,
                },
            },
        ),
        AuthMethod::AzureCli => Ok(Provider::AzureCli {
            tenant_id: auth.tenant_id.clone(),
        }),
        other => Err(format!("`{}` is not a token method", other.name())),
    }
}

/// A token and when to replace it.
struct Cached {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The shared, refreshing source of one identity's tokens.
pub struct TokenSource {
    provider: Provider,
    /// `auto` picked this method: say so once.
    auto: bool,
    ca_file: Option<PathBuf>,
    agent: OnceLock<Result<ureq::Agent, String>>,
    cache: Mutex<Option<Cached>>,
    /// For a chain: the member that worked.
    chosen: Mutex<Option<usize>>,
    fetches: std::sync::atomic::AtomicU32,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSource({})", self.provider.describe())
    }
}

/// The process's token sources, by identity.
type Registry = Vec<(String, Arc<TokenSource>)>;

/// One announcement per process of how `auto` signed in.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

impl TokenSource {
    /// The process's source for this identity, created on first use.
    #[must_use]
    pub fn shared(provider: Provider, auto: bool, ca_file: Option<PathBuf>) -> Arc<Self> {
        static SOURCES: OnceLock<Mutex<Registry>> = OnceLock::new();
        let key = format!("{}|{ca_file:?}", provider.key());
        let mut sources = SOURCES
            .get_or_init(|| Mutex::new(Vec::new()))
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, source)) = sources.iter().find(|(k, _)| *k == key) {
            return Arc::clone(source);
        }
        let source = Arc::new(Self {
            provider,
            auto,
            ca_file,
            agent: OnceLock::new(),
            cache: Mutex::new(None),
            chosen: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU32::new(0),
        });
        sources.push((key, Arc::clone(&source)));
        source
    }

    #[must_use]
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The provider in use: a chain's member once one worked.
    #[must_use]
    pub fn describe(&self) -> String {
        match (&self.provider, self.chosen()) {
            (Provider::Chain(list), Some(i)) => list[i].describe(),
            (p, _) => p.describe(),
        }
    }

    /// The principal to name in a role assignment, where known.
    #[must_use]
    pub fn assignee(&self) -> Option<String> {
        match (&self.provider, self.chosen()) {
            (Provider::Chain(list), Some(i)) => list[i].assignee().map(str::to_owned),
            (p, _) => p.assignee().map(str::to_owned),
        }
    }

    /// Whether asking again can give a different token.
    #[must_use]
    pub fn refreshable(&self) -> bool {
        !matches!(self.provider, Provider::Static(_))
    }

    fn chosen(&self) -> Option<usize> {
        *self.chosen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the cached token, so the next request fetches a new one (after a 401).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A valid token: the cached one until its refresh time, else a new one. When refreshing
    /// fails while the old token is still valid, the old one is used and the failure is logged.
    pub fn token(&self) -> Result<Secret, String> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(c) = cache.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.value.clone());
        }
        match self.fetch() {
            Ok(fresh) => {
                let value = fresh.value.clone();
                *cache = Some(fresh);
                Ok(value)
            }
            Err(e) => match cache.as_ref() {
                Some(c) if now + Duration::from_secs(30) < c.expires_at => {
                    log::warn(&format!(
                        "could not refresh the Azure Storage token yet ({e}); the current one is \
                         still valid, trying again at the next request"
                    ));
                    Ok(c.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    fn agent(&self) -> Result<&ureq::Agent, String> {
        self.agent
            .get_or_init(|| build_agent(self.ca_file.as_deref()))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn fetch(&self) -> Result<Cached, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (token, index) = match &self.provider {
            Provider::Chain(list) => self.fetch_chain(list)?,
            p => (self.fetch_one(p)?, None),
        };
        let started = Instant::now();
        // A token is masked before anything else could print it.
        log::platform().mask(token.value.expose());
        let lifetime = token.lifetime.unwrap_or(Duration::from_secs(3600));
        let refresh_after = lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2));
        let used = match index {
            Some(i) => match &self.provider {
                Provider::Chain(list) => list[i].describe(),
                p => p.describe(),
            },
            None => self.provider.describe(),
        };
        if self.auto && !ANNOUNCED.swap(true, Ordering::Relaxed) {
            log::note(&format!(
                "deploy-lock: signed in to Azure Storage with {used} (auth auto; choose with --auth)"
            ));
        }
        log::debug(&format!(
            "Azure Storage token from {used}: valid for {} s, refreshed after {} s",
            lifetime.as_secs(),
            refresh_after.as_secs()
        ));
        Ok(Cached {
            value: token.value,
            refresh_at: started + refresh_after,
            expires_at: started + lifetime,
        })
    }

    fn fetch_chain(&self, list: &[Provider]) -> Result<(Fetched, Option<usize>), String> {
        if let Some(i) = self.chosen() {
            return Ok((self.fetch_one(&list[i])?, Some(i)));
        }
        let mut failures = Vec::new();
        for (i, p) in list.iter().enumerate() {
            match self.fetch_one(p) {
                Ok(t) => {
                    *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) = Some(i);
                    return Ok((t, Some(i)));
                }
                Err(e) => {
                    log::debug(&format!("auth auto: {} did not work: {e}", p.describe()));
                    failures.push(e);
                }
            }
        }
        Err(format!(
            "no Azure Storage credentials were found. Tried: a key, SAS or connection string \
             (none set), AZURE_STORAGE_TOKEN (not set), GitHub OIDC (needs client-id and \
             tenant-id on GitHub Actions), an Azure DevOps service connection (needs the task's \
             serviceConnection input), then: {}. Set AZURE_STORAGE_KEY, \
             AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING, or sign in with Entra \
             ID (see docs/entra-id.md), and pick the method with --auth",
            failures.join("; ")
        ))
    }

    fn fetch_one(&self, provider: &Provider) -> Result<Fetched, String> {
        match provider {
            Provider::Static(token) => Ok(Fetched {
                value: token.clone(),
                lifetime: jwt_lifetime(token.expose()),
            }),
            Provider::Federated {
                assertion,
                client_id,
                tenant_id,
                authority,
            } => {
                // A new ID token for every exchange: they live minutes, access tokens an hour.
                let id_token = self.assertion(assertion)?;
                log::platform().mask(id_token.expose());
                self.exchange(&id_token, assertion, client_id, tenant_id, authority)
            }
            Provider::AppService {
                endpoint,
                header,
                client_id,
            } => {
                let mut url = format!(
                    "{endpoint}{}api-version=2019-08-01&resource={}",
                    if endpoint.contains('?') { '&' } else { '?' },
                    encode_query(STORAGE_RESOURCE)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", encode_query(id)));
                }
                let resp = self.http(
                    "GET",
                    &url,
                    &[("X-IDENTITY-HEADER", header.expose())],
                    None,
                    &RetryPolicy::default(),
                )?;
                managed_answer(&resp, "the managed identity endpoint (IDENTITY_ENDPOINT)")
            }
            Provider::Imds {
                endpoint,
                client_id,
                probe,
            } => {
                let mut url = format!(
                    "{endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                    encode_query(STORAGE_RESOURCE)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", encode_query(id)));
                }
                let policy = if *probe {
                    RetryPolicy {
                        attempts: 1,
                        connect_timeout: IMDS_PROBE_TIMEOUT,
                        request_timeout: IMDS_PROBE_TIMEOUT * 3,
                        ..RetryPolicy::default()
                    }
                } else {
                    RetryPolicy::default()
                };
                let resp = self
                    .http("GET", &url, &[("Metadata", "true")], None, &policy)
                    .map_err(|e| {
                        format!(
                            "the VM's instance metadata service did not answer ({e}); managed \
                             identity works only on an Azure VM or scale set (for App Service, \
                             IDENTITY_ENDPOINT is set)"
                        )
                    })?;
                managed_answer(&resp, "the instance metadata service")
            }
            Provider::AzureCli { tenant_id } => azure_cli(tenant_id.as_deref()),
            Provider::Chain(_) => Err("a chain cannot contain a chain".to_owned()),
        }
    }

    /// The federated ID token from the CI platform.
    fn assertion(&self, assertion: &Assertion) -> Result<Secret, String> {
        match assertion {
            Assertion::GitHub {
                request_url,
                request_token,
            } => {
                let url = format!(
                    "{request_url}{}audience={}",
                    if request_url.contains('?') { '&' } else { '?' },
                    encode_query(EXCHANGE_AUDIENCE)
                );
                let bearer = format!("Bearer {}", request_token.expose());
                let resp = self.http(
                    "GET",
                    &url,
                    &[
                        ("Authorization", &bearer),
                        ("Accept", "application/json; api-version=2.0"),
                    ],
                    None,
                    &RetryPolicy::default(),
                )?;
                if resp.status != 200 {
                    return Err(format!(
                        "GitHub refused the ID token request ({}); the job's \
                         ACTIONS_ID_TOKEN_REQUEST_TOKEN is not valid: run deploy-lock in the same \
                         job, with `permissions: id-token: write`",
                        resp.status_line()
                    ));
                }
                json_string(&resp, "value")
                    .map(Secret::new)
                    .ok_or_else(|| "GitHub's ID token answer has no `value`".to_owned())
            }
            Assertion::AzureDevOps {
                request_uri,
                access_token,
                connection_id,
            } => {
                let url = format!(
                    "{request_uri}{}api-version=7.1&serviceConnectionId={}",
                    if request_uri.contains('?') { '&' } else { '?' },
                    encode_query(connection_id)
                );
                let bearer = format!("Bearer {}", access_token.expose());
                let resp = self.http(
                    "POST",
                    &url,
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                        // Without it a bad token is redirected to a sign-in page.
                        ("X-TFS-FedAuthRedirect", "Suppress"),
                    ],
                    Some(b"{}"),
                    &RetryPolicy::default(),
                )?;
                match resp.status {
                    200 => json_string(&resp, "oidcToken")
                        .map(Secret::new)
                        .ok_or_else(|| {
                            "Azure DevOps answered the OIDC token request without `oidcToken`"
                                .to_owned()
                        }),
                    401 | 403 => Err(format!(
                        "Azure DevOps refused the OIDC token request ({}); System.AccessToken is \
                         not valid for this pipeline, or the pipeline may not use service \
                         connection {connection_id}: authorize the pipeline to use it",
                        resp.status_line()
                    )),
                    _ => Err(format!(
                        "Azure DevOps could not issue an OIDC token for service connection \
                         {connection_id} ({}: {}); check that the connection exists and uses \
                         workload identity federation",
                        resp.status_line(),
                        resp.message()
                    )),
                }
            }
        }
    }

    /// The client-credentials exchange of an ID token for a storage token.
    fn exchange(
        &self,
        id_token: &Secret,
        assertion: &Assertion,
        client_id: &str,
        tenant_id: &str,
        authority: &str,
    ) -> Result<Fetched, String> {
        let url = format!("{authority}/{}/oauth2/v2.0/token", encode_query(tenant_id));
        let form = [
            ("client_id", client_id),
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", id_token.expose()),
            ("scope", STORAGE_SCOPE),
        ]
        .iter()
        .map(|(n, v)| format!("{n}={}", encode_query(v)))
        .collect::<Vec<_>>()
        .join("&");
        let resp = self.http(
            "POST",
            &url,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(form.as_bytes()),
            &RetryPolicy::default(),
        )?;
        if resp.status == 200
            && let Some(token) = json_string(&resp, "access_token")
        {
            return Ok(Fetched {
                lifetime: json_seconds(&resp, "expires_in").or_else(|| jwt_lifetime(&token)),
                value: Secret::new(token),
            });
        }
        Err(exchange_error(
            &resp, id_token, assertion, client_id, tenant_id,
        ))
    }

    /// One HTTP exchange with a token endpoint, retried on transport errors, 429 and 5xx.
    fn http(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        policy: &RetryPolicy,
    ) -> Result<HttpAnswer, String> {
        let agent = self.agent()?;
        // Only scheme, host and path are logged: the query may name a client id, never a secret,
        // but keeping logs short matters more here.
        let shown = url.split('?').next().unwrap_or(url);
        let mut attempt = 1;
        loop {
            let result = send_once(agent, method, url, headers, body, policy);
            let retry = match &result {
                Ok(a) => {
                    log::debug(&format!(
                        "{method} {shown} -> {} (attempt {attempt})",
                        a.status
                    ));
                    retryable_status(a.status) || a.status == 410
                }
                Err(e) => {
                    log::debug(&format!("{method} {shown} -> {e} (attempt {attempt})"));
                    true
                }
            };
            if !retry || attempt >= policy.attempts {
                return result;
            }
            thread::sleep(retry_delay(policy, attempt, None, 0));
            attempt += 1;
        }
    }
}

fn build_agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect could carry a bearer token or an assertion elsewhere.
        .max_redirects(0)
        .user_agent(concat!("deploy-lock/", env!("CARGO_PKG_VERSION")))
        .tls_config(super::http::tls_config(ca_file)?)
        .build();
    Ok(config.new_agent())
}

fn send_once(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    policy: &RetryPolicy,
) -> Result<HttpAnswer, String> {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.unwrap_or_default())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let request = agent
        .configure_request(request)
        .timeout_connect(Some(policy.connect_timeout))
        .timeout_global(Some(policy.request_timeout))
        .build();
    let mut response = agent.run(request).map_err(|e| match e {
        ureq::Error::HostNotFound => "the host name was not found (DNS)".to_owned(),
        ureq::Error::Timeout(_) => "no answer in time".to_owned(),
        other => other.to_string(),
    })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(HttpAnswer { status, body })
}

/// A token endpoint's answer.
struct HttpAnswer {
    status: u16,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn status_line(&self) -> String {
        format!("HTTP {}", self.status)
    }

    /// The endpoint's own words, first line, from the usual error fields. Token endpoints put no
    /// secret in their errors.
    fn message(&self) -> String {
        let json = self.json().unwrap_or(Value::Null);
        let text = ["error_description", "message", "Message", "error"]
            .iter()
            .find_map(|k| match &json[*k] {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default();
        crate::ci::escape_controls(text.lines().next().unwrap_or_default().trim())
    }
}

/// A token as fetched.
struct Fetched {
    value: Secret,
    lifetime: Option<Duration>,
}

fn json_string(resp: &HttpAnswer, key: &str) -> Option<String> {
    resp.json()?
        .get(key)?
        .as_str()
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// A number of seconds sent as a number or a string (managed identity endpoints send strings).
fn json_seconds(resp: &HttpAnswer, key: &str) -> Option<Duration> {
    let json = resp.json()?;
    let value = json.get(key)?;
    let secs = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(Duration::from_secs(secs))
}

/// Seconds from now until a unix time.
fn until_unix(secs: u64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Duration::from_secs(secs).checked_sub(now)
}

fn managed_answer(resp: &HttpAnswer, what: &str) -> Result<Fetched, String> {
    if resp.status == 200
        && let Some(token) = json_string(resp, "access_token")
    {
        let lifetime = json_seconds(resp, "expires_in")
            .or_else(|| json_seconds(resp, "expires_on").and_then(|d| until_unix(d.as_secs())))
            .or_else(|| jwt_lifetime(&token));
        return Ok(Fetched {
            value: Secret::new(token),
            lifetime,
        });
    }
    let message = resp.message();
    let hint = if message.to_ascii_lowercase().contains("identity not found") || resp.status == 400
    {
        "; assign a managed identity to this machine (a user-assigned one needs its client id: \
         client-id input or AZURE_CLIENT_ID) and give it the Storage Blob Data Contributor role"
    } else {
        ""
    };
    Err(format!(
        "{what} gave no token ({}: {message}){hint}",
        resp.status_line()
    ))
}

/// Explains a failed exchange, naming the fix. AADSTS codes: 700213/70021 no federated
/// credential matches the subject, 700211 the issuer, 700212 the audience, 700016 unknown app,
/// 90002/900023 unknown tenant, 700024 the ID token expired.
fn exchange_error(
    resp: &HttpAnswer,
    id_token: &Secret,
    assertion: &Assertion,
    client_id: &str,
    tenant_id: &str,
) -> String {
    let json = resp.json().unwrap_or(Value::Null);
    let mut codes: Vec<u64> = json["error_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let description = resp.message();
    if codes.is_empty() {
        codes.extend(
            description
                .split("AADSTS")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|c| c.trim().parse::<u64>().ok()),
        );
    }
    let claims = jwt_claims(id_token.expose()).unwrap_or(Value::Null);
    let claim = |k: &str| claims[k].as_str().unwrap_or("(unknown)").to_owned();
    let setup = match assertion {
        Assertion::GitHub { .. } => {
            "App registrations → the app → Certificates & secrets → Federated credentials \
             (see docs/entra-id.md)"
        }
        Assertion::AzureDevOps { .. } => {
            "the service connection's app → Federated credentials (Azure DevOps shows the \
             expected subject on the service connection's page)"
        }
    };
    let head = format!("Entra ID refused the sign-in of app {client_id} in tenant {tenant_id}");
    let has = |c: u64| codes.contains(&c);
    if has(700_213) || has(70_021) || has(70_025) {
        format!(
            "{head}: no federated credential matches the token's subject `{}` (issuer `{}`, \
             audience `{}`). Add a federated credential with exactly this subject in Entra ID: \
             {setup}. ({description})",
            claim("sub"),
            claim("iss"),
            claims["aud"]
                .as_str()
                .map_or_else(|| claims["aud"].to_string(), str::to_owned)
        )
    } else if has(700_211) {
        format!(
            "{head}: no federated credential has the token's issuer `{}`; set the federated \
             credential's issuer to exactly this. ({description})",
            claim("iss")
        )
    } else if has(700_212) {
        format!(
            "{head}: the federated credential's audience must be `{EXCHANGE_AUDIENCE}`. \
             ({description})"
        )
    } else if has(700_016) {
        format!(
            "{head}: no app with client id {client_id} exists in tenant {tenant_id}; check the \
             client-id and tenant-id inputs (AZURE_CLIENT_ID, AZURE_TENANT_ID). ({description})"
        )
    } else if has(90_002) || has(900_023) || has(90_013) {
        format!(
            "{head}: tenant {tenant_id} was not found; check the tenant-id input (AZURE_TENANT_ID) \
             and AZURE_AUTHORITY_HOST for sovereign clouds. ({description})"
        )
    } else if has(700_024) {
        format!(
            "{head}: the ID token had expired or was not yet valid; this machine's clock may be \
             off. ({description})"
        )
    } else {
        format!("{head} ({}: {description})", resp.status_line())
    }
}

/// The claims of a JWT, unverified: only to explain errors and read lifetimes.
#[must_use]
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Time left until a JWT's `exp`, by this machine's clock.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    until_unix(jwt_claims(token)?["exp"].as_u64()?)
}

/// `az account get-access-token`, bounded in time.
fn azure_cli(tenant_id: Option<&str>) -> Result<Fetched, String> {
    let program = if cfg!(windows) { "az.cmd" } else { "az" };
    let mut command = Command::new(program);
    command.args([
        "account",
        "get-access-token",
        "--resource",
        STORAGE_RESOURCE,
        "--output",
        "json",
    ]);
    if let Some(t) = tenant_id {
        command.args(["--tenant", t]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the Azure CLI (`az`) is not installed or not on PATH".to_owned()
        } else {
            format!("cannot run the Azure CLI (`az`): {e}")
        }
    })?;
    // Both pipes are drained on threads so a chatty `az` can never block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(MAX_BODY).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + AZ_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the Azure CLI did not answer within {} s (`az account get-access-token`)",
                    AZ_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for the Azure CLI: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        let lower = stderr.to_ascii_lowercase();
        let hint = if lower.contains("az login") || lower.contains("aadsts70043") {
            "the Azure CLI is not signed in: run `az login` (in GitHub Actions: the azure/login \
             action; in Azure DevOps: the AzureCLI@2 task)"
        } else {
            "`az account get-access-token --resource https://storage.azure.com/` failed"
        };
        return Err(format!("{hint} ({})", crate::ci::escape_controls(first)));
    }
    let json: Value = serde_json::from_slice(&stdout).map_err(|_| {
        "the Azure CLI's answer is not JSON (`az account get-access-token`)".to_owned()
    })?;
    let token = json["accessToken"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("the Azure CLI's answer has no accessToken")?
        .to_owned();
    let lifetime = json["expires_on"]
        .as_u64()
        .or_else(|| json["expires_on"].as_str().and_then(|s| s.parse().ok()))
        .and_then(until_unix)
        .or_else(|| {
            // Older CLIs give only `expiresOn`, in local time without a zone.
            let text = json["expiresOn"].as_str()?;
            let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
            let local = naive.and_local_timezone(chrono::Local).earliest()?;
            until_unix(u64::try_from(local.timestamp()).ok()?)
        })
        .or_else(|| jwt_lifetime(&token));
    Ok(Fetched {
        value: Secret::new(token),
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn answer(status: u16, body: &Value) -> HttpAnswer {
        HttpAnswer {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn claims_and_lifetimes() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let token = jwt(&serde_json::json!({"sub": "repo:o/r:ref:refs/heads/main", "exp": exp}));
        assert_eq!(
            jwt_claims(&token).unwrap()["sub"],
            "repo:o/r:ref:refs/heads/main"
        );
        let left = jwt_lifetime(&token).unwrap();
        assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
        assert!(jwt_claims("not a jwt").is_none());
        assert!(jwt_lifetime(&jwt(&serde_json::json!({"exp": 5}))).is_none());
    }

    #[test]
    fn subject_mismatch_quotes_the_subject() {
        let id = Secret::new(jwt(&serde_json::json!({
            "sub": "repo:org/app:environment:prod",
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "api://AzureADTokenExchange"
        })));
        let resp = answer(
            400,
            &serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS700213: No matching federated identity record found for presented assertion subject 'repo:org/app:environment:prod'.\r\nTrace ID: x",
                "error_codes": [700_213]
            }),
        );
        let gh = Assertion::GitHub {
            request_url: "u".into(),
            request_token: Secret::new("t"),
        };
        let msg = exchange_error(&resp, &id, &gh, "client", "tenant");
        assert!(
            msg.contains("`repo:org/app:environment:prod`")
                && msg.contains("Federated credentials"),
            "{msg}"
        );
        assert!(!msg.contains("Trace ID"), "{msg}");
        let resp = answer(
            400,
            &serde_json::json!({"error_description": "AADSTS700016: Application not found"}),
        );
        assert!(exchange_error(&resp, &id, &gh, "c", "t").contains("no app with client id c"));
    }

    #[test]
    fn managed_identity_answers() {
        let ok = answer(
            200,
            &serde_json::json!({"access_token": "tok", "expires_in": "3599", "expires_on": "1"}),
        );
        let t = managed_answer(&ok, "imds").unwrap();
        assert_eq!(t.lifetime, Some(Duration::from_secs(3599)));
        let missing = answer(
            400,
            &serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
        let e = managed_answer(&missing, "imds").err().unwrap();
        assert!(e.contains("assign a managed identity"), "{e}");
    }

    #[test]
    fn descriptions_never_hold_secrets() {
        let p = Provider::Federated {
            assertion: Assertion::GitHub {
                request_url: "https://gh/x".into(),
                request_token: Secret::new("REQUEST-TOKEN-SECRET"),
            },
            client_id: "cid".into(),
            tenant_id: "tid".into(),
            authority: "https://login".into(),
        };
        for text in [p.describe(), p.key(), format!("{p:?}")] {
            assert!(!text.contains("REQUEST-TOKEN-SECRET"), "{text}");
        }
        let s = Provider::Static(Secret::new("STATIC-TOKEN-SECRET"));
        assert!(!s.key().contains("STATIC-TOKEN-SECRET"));
    }
}
