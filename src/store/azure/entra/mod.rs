//! Entra ID access tokens for Azure Storage: fetched on first use, kept until shortly before they
//! expire, refreshed (with a new ID token where one is needed), masked on CI and never printed.
//!
//! One [`AccessTokenSource`] serves every store the process opens for the same identity, so the
//! heartbeat thread of `run` and the main thread share one access token instead of fetching two.
//!
//! Inside: `settings` (the `auth` setting and what each method reads from the environment),
//! `fetch` (the token endpoints, through the store's one HTTP layer), `azure_cli`, then this file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub mod azure_cli;
pub mod fetch;
pub mod settings;

use self::fetch::{Assertion, Fetched, jwt_lifetime};
use self::settings::{AuthMethod, AuthSettings};
use crate::config::secrets::Secret;
use crate::log;
use crate::store::azure::http::Http;

/// Refresh this long before expiry, or at half-life for access tokens shorter than twice this.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where access tokens come from.
#[derive(Debug, Clone)]
pub enum Provider {
    /// An access token given as is (`AZURE_STORAGE_TOKEN`): used until the service refuses it.
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

/// The access token provider for a method, or what is missing for it.
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
        AuthMethod::AccessToken => auth
            .access_token
            .clone()
            .map(Provider::Static)
            .ok_or_else(|| "--auth token needs the bearer token in AZURE_STORAGE_TOKEN".to_owned()),
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
            let Some(system_access_token) = azdo.system_access_token.clone() else {
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
                    system_access_token,
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

/// An access token and when to replace it.
struct Cached {
    access_token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The shared, refreshing source of one identity's access tokens.
pub struct AccessTokenSource {
    provider: Provider,
    /// `auto` picked this method: say so once.
    auto: bool,
    /// The HTTP layer of the store that created the source.
    http: Http,
    cache: Mutex<Option<Cached>>,
    /// For a chain: the member that worked.
    chosen: Mutex<Option<usize>>,
    fetches: AtomicU32,
}

impl fmt::Debug for AccessTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessTokenSource({})", self.provider.describe())
    }
}

/// The process's access token sources, by identity.
type Registry = Vec<(String, Arc<AccessTokenSource>)>;

/// One announcement per process of how `auto` signed in.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

impl AccessTokenSource {
    /// The process's source for this identity (and CA file), created on first use with `http`.
    #[must_use]
    pub fn shared(
        provider: Provider,
        auto: bool,
        ca_file: Option<&Path>,
        http: &Http,
    ) -> Arc<Self> {
        static SOURCES: OnceLock<Mutex<Registry>> = OnceLock::new();
        let key = format!("{}|{:?}", provider.key(), ca_file.map(PathBuf::from));
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
            http: http.clone(),
            cache: Mutex::new(None),
            chosen: Mutex::new(None),
            fetches: AtomicU32::new(0),
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

    /// Whether asking again can give a different access token.
    #[must_use]
    pub fn refreshable(&self) -> bool {
        !matches!(self.provider, Provider::Static(_))
    }

    fn chosen(&self) -> Option<usize> {
        *self.chosen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the cached access token, so the next request fetches a new one (after a 401).
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// A valid access token: the cached one until its refresh time, else a new one. When
    /// refreshing fails while the old one is still valid, it is used and the failure is logged.
    pub fn access_token(&self) -> Result<Secret, String> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(c) = cache.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.access_token.clone());
        }
        match self.fetch() {
            Ok(fresh) => {
                let access_token = fresh.access_token.clone();
                *cache = Some(fresh);
                Ok(access_token)
            }
            Err(e) => match cache.as_ref() {
                Some(c) if now + Duration::from_secs(30) < c.expires_at => {
                    log::warn(&format!(
                        "could not refresh the Azure Storage token yet ({e}); the current one is \
                         still valid, trying again at the next request"
                    ));
                    Ok(c.access_token.clone())
                }
                _ => Err(e),
            },
        }
    }

    fn fetch(&self) -> Result<Cached, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (fetched, index) = match &self.provider {
            Provider::Chain(list) => self.fetch_chain(list)?,
            p => (self.fetch_one(p)?, None),
        };
        let started = Instant::now();
        // An access token is masked before anything else could print it.
        log::platform().mask(fetched.access_token.expose());
        let lifetime = fetched.lifetime.unwrap_or(Duration::from_secs(3600));
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
            access_token: fetched.access_token,
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
            Provider::Static(access_token) => Ok(Fetched {
                access_token: access_token.clone(),
                lifetime: jwt_lifetime(access_token.expose()),
            }),
            Provider::Federated {
                assertion,
                client_id,
                tenant_id,
                authority,
            } => {
                // A new ID token for every exchange: they live minutes, access tokens an hour.
                let id_token = fetch::id_token(&self.http, assertion)?;
                log::platform().mask(id_token.expose());
                fetch::exchange(
                    &self.http, &id_token, assertion, client_id, tenant_id, authority,
                )
            }
            Provider::AppService {
                endpoint,
                header,
                client_id,
            } => fetch::app_service(&self.http, endpoint, header, client_id.as_deref()),
            Provider::Imds {
                endpoint,
                client_id,
                probe,
            } => fetch::imds(&self.http, endpoint, client_id.as_deref(), *probe),
            Provider::AzureCli { tenant_id } => azure_cli::azure_cli(tenant_id.as_deref()),
            Provider::Chain(_) => Err("a chain cannot contain a chain".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
