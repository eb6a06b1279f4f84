//! The storage account's static website: Azure serves the `$web` container's blobs at the
//! account's web endpoint once static websites are turned on, so a page written there needs no
//! server of our own.

use super::client::Request;
use super::store::AzureStore;
use crate::store::{StoreError, StoreResult};

/// The container Azure serves a static website from.
pub const WEB_CONTAINER: &str = "$web";

impl AzureStore {
    /// Writes an HTML page to `$web/{path}` (unconditionally: the newest page wins) and returns
    /// its blob URL. The container must exist: turning static websites on creates it.
    pub fn publish_page(&self, path: &str, html: &[u8]) -> StoreResult<String> {
        let resource = format!("/{WEB_CONTAINER}/{path}");
        let req = Request::new("PUT", resource.clone())
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-blob-content-type", "text/html; charset=utf-8")
            // Browsers and CDNs look again each time: the page is as old as its last publish.
            .header("x-ms-blob-cache-control", "no-cache")
            .body(html);
        let endpoint = self.client.endpoint();
        let origin = endpoint.origin();
        let resp = self
            .client
            .send(&req)
            .map_err(|e| StoreError::Transient(format!("cannot reach {origin}: {}", e.message)))?;
        let detail = format!("{} {}", resp.status, resp.error_code());
        match resp.status {
            201 => Ok(format!("{origin}{resource}")),
            401 | 403 => Err(StoreError::Auth(format!(
                "the credentials may not write to `{WEB_CONTAINER}` of account `{}` ({detail}); \
                 a SAS for the lock container does not reach it",
                endpoint.account
            ))),
            404 => Err(StoreError::NotFound(format!(
                "container `{WEB_CONTAINER}` of account `{}` ({detail}): static websites are off",
                endpoint.account
            ))),
            _ => Err(StoreError::BadRequest(format!(
                "the storage service rejected the page ({detail})"
            ))),
        }
    }
}
