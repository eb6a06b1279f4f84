//! Azure Blob Storage: settings, request signing, the REST client and the store.

pub mod advice;
pub mod client;
pub mod entra;
pub mod http;
pub mod location;
pub mod signer;
pub mod store;
pub mod xml;

use std::path::PathBuf;

use crate::error::Failure;
use crate::secret::Secret;
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

/// Opens the Azure store the settings describe. Nothing is sent: a bad URL, connection string,
/// key or CA file is a usage error that says what to change.
pub fn open(settings: &AzureSettings) -> Result<AzureStore, Failure> {
    let target = location::resolve(settings).map_err(Failure::usage)?;
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
    let mut out = location::secrets(settings);
    out.extend(settings.auth.secrets());
    out
}
