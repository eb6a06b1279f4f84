//! Azure Blob Storage: settings, request signing and the REST client behind `store::azure`.

use std::path::PathBuf;

use crate::secret::Secret;

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
}

impl AzureSettings {
    /// Whether anything points at Azure at all.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.store_url.is_some()
            || self.connection_string.is_some()
            || self.account.is_some()
            || self.sas_token.is_some()
    }
}
