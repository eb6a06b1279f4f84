//! How the Azure store signs in: the `auth` setting, what each method needs from the environment,
//! and the order in which `auto` tries them.
//!
//! Everything here is pure: the environment is read once through a lookup function that callers
//! (and tests) pass in, and nothing is sent. Access tokens are fetched later, by [`super`].
//!
//! `auto` tries, in this order (documented in docs/entra-id.md):
//! 1. a secret that is configured: a SAS in the `--store` URL, `AZURE_STORAGE_CONNECTION_STRING`,
//!    `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_KEY` (exactly as before Entra ID support);
//! 2. `AZURE_STORAGE_TOKEN`;
//! 3. GitHub Actions OIDC, when a client id and tenant id are given on GitHub Actions;
//! 4. Azure DevOps workload identity federation, when a service connection is given on Azure
//!    Pipelines;
//! 5. an App Service style managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`);
//! 6. the Azure CLI, when `az` is installed and signed in;
//! 7. the VM/VMSS managed identity, through the instance metadata service.
//!
//! Steps 6 and 7 can only be known by trying, so they are tried at the first request.

use crate::config::secrets::Secret;
use crate::store::azure::location::is_loopback_host;

/// Entra ID's public cloud; sovereign clouds set `AZURE_AUTHORITY_HOST`.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The instance metadata service of Azure VMs. Overridable (`DEPLOY_LOCK_IMDS_ENDPOINT`) so tests
/// never reach the real address.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The resource (v1 endpoints) and scope (v2) of Azure Storage; the same in every cloud.
pub const STORAGE_RESOURCE: &str = "https://storage.azure.com/";
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The audience Entra ID expects in a federated credential's assertion.
pub const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The `auth` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    #[default]
    Auto,
    Key,
    Sas,
    ConnectionString,
    GithubOidc,
    AzureDevopsOidc,
    ManagedIdentity,
    AzureCli,
    /// An access token given as is (`--auth token`, `AZURE_STORAGE_TOKEN`).
    AccessToken,
}

impl AuthMethod {
    const ALL: [Self; 9] = [
        Self::Auto,
        Self::Key,
        Self::Sas,
        Self::ConnectionString,
        Self::GithubOidc,
        Self::AzureDevopsOidc,
        Self::ManagedIdentity,
        Self::AzureCli,
        Self::AccessToken,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Key => "key",
            Self::Sas => "sas",
            Self::ConnectionString => "connection-string",
            Self::GithubOidc => "github-oidc",
            Self::AzureDevopsOidc => "azure-devops-oidc",
            Self::ManagedIdentity => "managed-identity",
            Self::AzureCli => "azure-cli",
            Self::AccessToken => "token",
        }
    }

    /// Parses the option's value; `_` and case are forgiven (`Managed_Identity`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase().replace('_', "-");
        if wanted.is_empty() {
            return Ok(Self::Auto);
        }
        Self::ALL
            .into_iter()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "auth `{}` is not a sign-in method; use one of: {}",
                    crate::ci::escape_controls(text),
                    Self::ALL.map(Self::name).join(", ")
                )
            })
    }
}

/// What the GitHub runner gives a job with `permissions: id-token: write`.
#[derive(Debug, Clone)]
pub struct GithubOidc {
    pub request_url: String,
    pub request_token: Secret,
}

/// An Azure DevOps service connection and what the agent says about it.
#[derive(Debug, Clone, Default)]
pub struct AzdoConnection {
    /// The service connection's id (the task's `connectedService:AzureRM` input).
    pub id: Option<String>,
    pub oidc_request_uri: Option<String>,
    /// `System.AccessToken`, which authorizes the OIDC token request.
    pub system_access_token: Option<Secret>,
    /// `ENDPOINT_AUTH_SCHEME_<ID>`: `WorkloadIdentityFederation` is the one that works.
    pub scheme: Option<String>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
}

/// Where a managed identity's tokens come from.
#[derive(Debug, Clone, Default)]
pub struct ManagedEnv {
    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service, Functions, Container Apps).
    pub identity_endpoint: Option<String>,
    pub identity_header: Option<Secret>,
    /// The VM instance metadata service.
    pub imds_endpoint: String,
}

/// The sign-in settings, read once from options, inputs and the environment.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub method: AuthMethod,
    /// The app registration (federated credentials) or user-assigned managed identity.
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`, without a trailing slash.
    pub authority_host: String,
    /// `AZURE_STORAGE_TOKEN`.
    pub access_token: Option<Secret>,
    pub github: Option<GithubOidc>,
    /// The job runs on GitHub Actions (`GITHUB_ACTIONS=true`).
    pub on_github: bool,
    pub azdo: AzdoConnection,
    /// The job runs on Azure Pipelines (`TF_BUILD=True`).
    pub on_azdo: bool,
    pub managed: ManagedEnv,
}

/// Sign-in values given as options or action/task inputs; they win over the environment's.
#[derive(Debug, Clone, Default)]
pub struct AuthInputs {
    pub method: Option<String>,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub service_connection: Option<String>,
}

impl AuthSettings {
    /// Reads the settings through `var` (trimmed values, empty as absent). An unknown method or
    /// a malformed authority host is an error that says what to write instead.
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        given: &AuthInputs,
    ) -> Result<Self, String> {
        let method = match given
            .method
            .as_deref()
            .or(var("DEPLOY_LOCK_AUTH").as_deref())
        {
            Some(text) => AuthMethod::parse(text)?,
            None => AuthMethod::Auto,
        };
        let authority_host = normalize_authority(
            &var("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned()),
        )?;
        let github = match (
            var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            (Some(request_url), Some(request_token)) => Some(GithubOidc {
                request_url,
                request_token: Secret::new(request_token),
            }),
            _ => None,
        };
        let connection = given
            .service_connection
            .clone()
            .or_else(|| var("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"));
        // The agent names endpoint variables after the id, upper-cased (azure-pipelines-task-lib
        // reads them the same way).
        let endpoint_var = |kind: &str, key: &str| {
            connection.as_deref().and_then(|id| {
                let id = id.to_ascii_uppercase().replace(['.', ' '], "_");
                var(&format!("ENDPOINT_{kind}_{id}{key}"))
            })
        };
        let azdo = AzdoConnection {
            oidc_request_uri: var("SYSTEM_OIDCREQUESTURI"),
            system_access_token: var("SYSTEM_ACCESSTOKEN")
                .or_else(|| var("ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN"))
                .map(Secret::new),
            scheme: endpoint_var("AUTH_SCHEME", ""),
            client_id: endpoint_var("AUTH_PARAMETER", "_SERVICEPRINCIPALID")
                .or_else(|| var("AZURESUBSCRIPTION_CLIENT_ID")),
            tenant_id: endpoint_var("AUTH_PARAMETER", "_TENANTID")
                .or_else(|| var("AZURESUBSCRIPTION_TENANT_ID")),
            id: connection,
        };
        Ok(Self {
            method,
            client_id: given.client_id.clone().or_else(|| var("AZURE_CLIENT_ID")),
            tenant_id: given.tenant_id.clone().or_else(|| var("AZURE_TENANT_ID")),
            authority_host,
            access_token: var("AZURE_STORAGE_TOKEN").map(Secret::new),
            github,
            on_github: var("GITHUB_ACTIONS").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            azdo,
            on_azdo: var("TF_BUILD").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            managed: ManagedEnv {
                identity_endpoint: var("IDENTITY_ENDPOINT"),
                identity_header: var("IDENTITY_HEADER").map(Secret::new),
                imds_endpoint: var("DEPLOY_LOCK_IMDS_ENDPOINT")
                    .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned())
                    .trim_end_matches('/')
                    .to_owned(),
            },
        })
    }

    /// Whether a token method has something to go on without trying (steps 2–5 of `auto`).
    #[must_use]
    pub fn detected(&self) -> Option<AuthMethod> {
        if self.access_token.is_some() {
            Some(AuthMethod::AccessToken)
        } else if (self.on_github || self.github.is_some())
            && self.client_id.is_some()
            && self.tenant_id.is_some()
        {
            Some(AuthMethod::GithubOidc)
        } else if (self.on_azdo || self.azdo.oidc_request_uri.is_some()) && self.azdo.id.is_some() {
            Some(AuthMethod::AzureDevopsOidc)
        } else if self.managed.identity_endpoint.is_some() && self.managed.identity_header.is_some()
        {
            Some(AuthMethod::ManagedIdentity)
        } else {
            None
        }
    }

    /// Every secret the sign-in settings carry, for the CI platform to mask.
    #[must_use]
    pub fn secrets(&self) -> Vec<String> {
        [
            self.access_token.as_ref(),
            self.github.as_ref().map(|g| &g.request_token),
            self.azdo.system_access_token.as_ref(),
            self.managed.identity_header.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_owned())
        .collect()
    }
}

/// `https://login.microsoftonline.us/` or a bare host → `https://login.microsoftonline.us`.
/// Tokens are requested with a federated assertion, so only HTTPS is accepted (or plain HTTP to
/// this machine, for tests and local proxies).
pub fn normalize_authority(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://").unwrap_or(("https", text));
    let rest = rest.trim_end_matches('/');
    let scheme = scheme.to_ascii_lowercase();
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ', '@']) {
        return Err(format!(
            "AZURE_AUTHORITY_HOST `{}` is not a URL; use e.g. https://login.microsoftonline.com \
             (or https://login.microsoftonline.us, https://login.chinacloudapi.cn)",
            crate::ci::escape_controls(text)
        ));
    }
    let allowed = scheme == "https" || (scheme == "http" && is_loopback_host(host));
    if !allowed {
        return Err(format!(
            "AZURE_AUTHORITY_HOST `{}` must use https://",
            crate::ci::escape_controls(text)
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn read(pairs: &[(&str, &str)], given: &AuthInputs) -> AuthSettings {
        AuthSettings::from_env(&env(pairs), given).unwrap()
    }

    #[test]
    fn methods_parse_and_name() {
        for m in AuthMethod::ALL {
            assert_eq!(AuthMethod::parse(m.name()), Ok(m));
        }
        assert_eq!(
            AuthMethod::parse(" Managed_Identity "),
            Ok(AuthMethod::ManagedIdentity)
        );
        assert_eq!(AuthMethod::parse(""), Ok(AuthMethod::Auto));
        let e = AuthMethod::parse("oidc").unwrap_err();
        assert!(e.contains("github-oidc") && e.contains("azure-cli"), "{e}");
    }

    #[test]
    fn inputs_win_over_the_environment() {
        let s = read(
            &[
                ("DEPLOY_LOCK_AUTH", "azure-cli"),
                ("AZURE_CLIENT_ID", "env-client"),
                ("AZURE_TENANT_ID", "env-tenant"),
            ],
            &AuthInputs {
                method: Some("token".into()),
                client_id: Some("input-client".into()),
                ..AuthInputs::default()
            },
        );
        assert_eq!(s.method, AuthMethod::AccessToken);
        assert_eq!(s.client_id.as_deref(), Some("input-client"));
        assert_eq!(s.tenant_id.as_deref(), Some("env-tenant"));
        assert_eq!(s.authority_host, DEFAULT_AUTHORITY_HOST);
        assert_eq!(s.managed.imds_endpoint, DEFAULT_IMDS_ENDPOINT);
    }

    #[test]
    fn auto_detection_order() {
        let none = AuthInputs::default();
        assert_eq!(read(&[], &none).detected(), None);
        let github = [
            ("GITHUB_ACTIONS", "true"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
        ];
        assert_eq!(
            read(&github, &none).detected(),
            Some(AuthMethod::GithubOidc)
        );
        // Without a client id GitHub OIDC has nothing to exchange the token for.
        assert_eq!(read(&github[..1], &none).detected(), None);
        let mut with_token = github.to_vec();
        with_token.push(("AZURE_STORAGE_TOKEN", "a.b.c"));
        assert_eq!(
            read(&with_token, &none).detected(),
            Some(AuthMethod::AccessToken)
        );
        let azdo = read(
            &[("TF_BUILD", "True")],
            &AuthInputs {
                service_connection: Some("abc-123".into()),
                ..AuthInputs::default()
            },
        );
        assert_eq!(azdo.detected(), Some(AuthMethod::AzureDevopsOidc));
        let app_service = read(
            &[("IDENTITY_ENDPOINT", "http://x"), ("IDENTITY_HEADER", "h")],
            &none,
        );
        assert_eq!(app_service.detected(), Some(AuthMethod::ManagedIdentity));
    }

    #[test]
    fn service_connection_variables() {
        let s = read(
            &[
                ("SYSTEM_OIDCREQUESTURI", "https://dev.azure.com/o/p/_apis/x"),
                (
                    "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN",
                    "vss-token",
                ),
                ("ENDPOINT_AUTH_SCHEME_AB-CD", "WorkloadIdentityFederation"),
                ("ENDPOINT_AUTH_PARAMETER_AB-CD_SERVICEPRINCIPALID", "sp"),
                ("ENDPOINT_AUTH_PARAMETER_AB-CD_TENANTID", "tenant"),
            ],
            &AuthInputs {
                service_connection: Some("ab-cd".into()),
                ..AuthInputs::default()
            },
        );
        assert_eq!(s.azdo.client_id.as_deref(), Some("sp"));
        assert_eq!(s.azdo.tenant_id.as_deref(), Some("tenant"));
        assert_eq!(s.azdo.scheme.as_deref(), Some("WorkloadIdentityFederation"));
        assert_eq!(
            s.azdo.system_access_token.as_ref().map(Secret::expose),
            Some("vss-token")
        );
        assert!(s.secrets().contains(&"vss-token".to_owned()));
    }

    #[test]
    fn authority_hosts() {
        assert_eq!(
            normalize_authority("login.microsoftonline.us/").unwrap(),
            "https://login.microsoftonline.us"
        );
        assert_eq!(
            normalize_authority("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(
            normalize_authority("http://login.example.com")
                .unwrap_err()
                .contains("https://")
        );
        assert!(normalize_authority("https://").is_err());
        assert!(normalize_authority("http://[::1]:8080").is_ok());
        assert!(normalize_authority("http://169.254.169.254").is_err());
    }
}
