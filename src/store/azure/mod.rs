//! Azure Blob Storage: the settings, and the one way in the rest of the crate uses: [`open`] a
//! store, and the [`secrets`] to mask first.
//!
//! Inside, lowest first (a module imports only modules above it in this list): `xml` and `signer`
//! (pure), `location` (where the container is), `http` (the one agent, TLS and retry policy),
//! `entra` (Entra ID access tokens), `advice` (refusals explained), `credential` (who signs in),
//! `client` (signed requests), `store` (the `Store` implementation), then this file.

pub mod advice;
pub mod client;
pub mod credential;
pub mod entra;
pub mod http;
pub mod location;
pub mod signer;
pub mod store;
#[cfg(test)]
mod tests;
pub mod website;
pub mod xml;

use std::path::PathBuf;

use crate::config::secrets::Secret;
use crate::exit::Failure;
use credential::{Credential, Given};
use location::{Endpoint, Wanted};

pub use entra::settings::{AuthInputs, AuthMethod, AuthSettings};
pub use store::AzureStore;

/// Everything the Azure store may be configured with, from options, action/task inputs or the
/// Azure CLI-style environment variables. Secrets stay `Secret` so they can never be printed.
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// `--store` when it is an `http(s)://` container URL (may carry a SAS query).
    pub store_url: Option<String>,
    pub container: String,
    /// `AZURE_STORAGE_CONNECTION_STRING`.
    pub connection_string: Option<Secret>,
    /// `AZURE_STORAGE_ACCOUNT`.
    pub account: Option<String>,
    /// `AZURE_STORAGE_KEY`.
    pub account_key: Option<Secret>,
    /// `AZURE_STORAGE_SAS_TOKEN`.
    pub sas_token: Option<Secret>,
    /// `--ca-file` / `DEPLOY_LOCK_CA_FILE`: extra trusted root certificate(s), PEM.
    pub ca_file: Option<PathBuf>,
    /// `AZURE_STORAGE_ENDPOINT_SUFFIX`: the blob host below the account for sovereign clouds
    /// (`core.chinacloudapi.cn`); `core.windows.net` when absent.
    pub endpoint_suffix: Option<String>,
    /// How to sign in (`--auth`), and what the token methods need.
    pub auth: AuthSettings,
}

impl AzureSettings {
    /// Whether anything points at Azure at all.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.store_url.is_some()
            || self.connection_string.is_some()
            || self.account.is_some()
            || self.account_key.is_some()
            || self.sas_token.is_some()
    }
}

/// Everything needed to talk to the container.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub container: String,
    pub credential: Credential,
}

/// Resolves the settings into a target. Nothing is sent; an error says what to change.
pub fn resolve(settings: &AzureSettings) -> Result<Target, String> {
    let connection = settings
        .connection_string
        .as_ref()
        .map(|s| location::parse_connection_string(s.expose()))
        .transpose()?;
    let place = location::locate(&Wanted {
        store_url: settings.store_url.as_deref(),
        container: &settings.container,
        connection: connection.as_ref(),
        account: settings.account.as_deref(),
        endpoint_suffix: settings.endpoint_suffix.as_deref(),
        loose_secret: settings.sas_token.is_some() || settings.account_key.is_some(),
    })?;
    let credential = credential::choose(
        &Given {
            store_url: settings.store_url.is_some(),
            url_sas: place.url_sas,
            account_key: settings.account_key.as_ref(),
            sas_token: settings.sas_token.as_ref(),
            connection: connection.as_ref(),
            auth: &settings.auth,
        },
        &place.endpoint,
    )?;
    credential::require_https(&place.endpoint, &credential)?;
    Ok(Target {
        endpoint: place.endpoint,
        container: place.container,
        credential,
    })
}

/// Opens the Azure store the settings describe. Nothing is sent: a bad URL, connection string,
/// key or CA file is a usage error that says what to change.
pub fn open(settings: &AzureSettings) -> Result<AzureStore, Failure> {
    let target = resolve(settings).map_err(Failure::usage)?;
    let client = client::Client::new(
        target.endpoint,
        target.credential,
        settings.ca_file.as_deref(),
        http::RetryPolicy::default(),
    )
    .map_err(Failure::usage)?;
    Ok(AzureStore::new(client, target.container))
}

/// Every secret value in the settings (whole and in the parts that may be printed alone), for the
/// CI platform to mask before anything else is printed.
#[must_use]
pub fn secrets(settings: &AzureSettings) -> Vec<String> {
    let mut out = credential::secret_values(
        settings.account_key.as_ref(),
        settings.sas_token.as_ref(),
        settings.connection_string.as_ref(),
        settings.store_url.as_deref(),
    );
    out.extend(settings.auth.secrets());
    out
}
