//! Who signs in: an account key, a SAS, the credentials of a connection string, or an Entra ID
//! sign-in, chosen as the `auth` setting says; and the refusal to send any of them over plain
//! http to another machine.
//!
//! Messages never repeat a secret value: they name the part that is wrong and what to do.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::entra::settings::{AuthMethod, AuthSettings};
use super::entra::{Provider, provider};
use super::location::{ConnectionString, DEV_ACCOUNT_KEY, Endpoint};
use super::signer::decode_query;
use crate::config::secrets::Secret;

/// How requests are authorized.
#[derive(Clone)]
pub enum Credential {
    /// Shared Key: the decoded account key.
    SharedKey(Vec<u8>),
    /// A SAS token: the query string without the leading `?`, sent verbatim.
    Sas(Secret),
    /// Entra ID access tokens from `provider`; `auto` when `auth auto` chose it.
    Entra { provider: Provider, auto: bool },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SharedKey(_) => f.write_str("SharedKey(redacted)"),
            Self::Sas(_) => f.write_str("Sas(redacted)"),
            Self::Entra { provider, .. } => write!(f, "Entra({})", provider.describe()),
        }
    }
}

/// The secrets and sign-in the settings give (the connection string parsed).
#[derive(Debug, Clone, Copy)]
pub struct Given<'a> {
    /// A `--store` URL is configured; `url_sas` is its query.
    pub store_url: bool,
    pub url_sas: Option<&'a str>,
    /// `AZURE_STORAGE_KEY` and `AZURE_STORAGE_SAS_TOKEN`.
    pub account_key: Option<&'a Secret>,
    pub sas_token: Option<&'a Secret>,
    pub connection: Option<&'a ConnectionString>,
    pub auth: &'a AuthSettings,
}

fn decode_key(key: &Secret, source: &str) -> Result<Credential, String> {
    match BASE64.decode(key.expose().trim()) {
        Ok(bytes) if !bytes.is_empty() => Ok(Credential::SharedKey(bytes)),
        _ => Err(format!(
            "the account key in {source} is not valid base64; copy it again from \
             `az storage account keys list --account-name ACCOUNT`"
        )),
    }
}

fn sas_credential(sas: &Secret, source: &str) -> Result<Credential, String> {
    let query = sas.expose().trim().trim_start_matches('?');
    let signed = query.split('&').any(|p| {
        p.split_once('=')
            .is_some_and(|(n, v)| n == "sig" && !v.is_empty())
    });
    if signed {
        Ok(Credential::Sas(Secret::new(query)))
    } else {
        Err(format!(
            "the SAS token in {source} has no `sig=` signature; generate one with \
             `az storage container generate-sas` (see the README)"
        ))
    }
}

fn connection_credential(cs: &ConnectionString) -> Result<Credential, String> {
    const SOURCE: &str = "the storage connection string";
    if let Some(sas) = &cs.sas {
        return sas_credential(sas, SOURCE);
    }
    if let Some(key) = &cs.account_key {
        if cs.account_name.is_none() && cs.blob_endpoint.is_none() && !cs.development {
            return Err(
                "the storage connection string has an AccountKey but no AccountName".to_owned(),
            );
        }
        return decode_key(key, SOURCE);
    }
    if cs.development {
        return decode_key(&Secret::new(DEV_ACCOUNT_KEY), SOURCE);
    }
    Err(
        "the storage connection string has neither AccountKey nor SharedAccessSignature; copy \
         it again from `az storage account show-connection-string`"
            .to_owned(),
    )
}

/// The configured secret credential, in the order the store has always used: for a `--store`
/// URL its own SAS, then AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY, the connection string; for
/// a connection string its own; for an account the key, then the SAS token. `None` when no
/// secret is configured.
fn secret_credential(given: &Given<'_>) -> Option<Result<Credential, String>> {
    let connection = given.connection;
    if given.store_url {
        if let Some(query) = given.url_sas {
            return Some(sas_credential(&Secret::new(query), "the --store URL"));
        }
        if let Some(sas) = given.sas_token {
            return Some(sas_credential(sas, "AZURE_STORAGE_SAS_TOKEN"));
        }
        if let Some(key) = given.account_key {
            return Some(decode_key(key, "AZURE_STORAGE_KEY"));
        }
        return connection
            .filter(|cs| has_secret(cs))
            .map(connection_credential);
    }
    if let Some(cs) = connection {
        return has_secret(cs).then(|| connection_credential(cs));
    }
    if let Some(key) = given.account_key {
        return Some(decode_key(key, "AZURE_STORAGE_KEY"));
    }
    given
        .sas_token
        .map(|sas| sas_credential(sas, "AZURE_STORAGE_SAS_TOKEN"))
}

fn has_secret(cs: &ConnectionString) -> bool {
    cs.sas.is_some() || cs.account_key.is_some() || cs.development
}

/// What to say when neither a secret nor a sign-in is there.
fn no_credentials(given: &Given<'_>) -> String {
    if given.store_url {
        "the --store URL has no credentials: append a SAS token to it (`…/CONTAINER?sv=…&sig=…`) \
         or set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or sign in with Entra ID \
         (--auth, see docs/entra-id.md)"
            .to_owned()
    } else if given.connection.is_some() {
        "the storage connection string has neither AccountKey nor SharedAccessSignature; copy \
         it again from `az storage account show-connection-string`, or sign in with Entra ID \
         (--auth, see docs/entra-id.md)"
            .to_owned()
    } else {
        "AZURE_STORAGE_ACCOUNT is set but neither AZURE_STORAGE_KEY nor AZURE_STORAGE_SAS_TOKEN \
         is: set one of them, or use AZURE_STORAGE_CONNECTION_STRING, or sign in with Entra ID \
         (--auth, see docs/entra-id.md)"
            .to_owned()
    }
}

/// The credential the `auth` setting asks for, or what is missing for it.
pub fn choose(given: &Given<'_>, endpoint: &Endpoint) -> Result<Credential, String> {
    let auth = given.auth;
    let connection = given.connection;
    let bearer = |provider: Provider, auto: bool| Credential::Entra { provider, auto };
    match auth.method {
        AuthMethod::Auto => {
            if let Some(found) = secret_credential(given) {
                crate::log::debug("auth auto: using the configured key, SAS or connection string");
                return found;
            }
            if let Some(method) = auth.detected() {
                return Ok(bearer(provider(method, auth)?, true));
            }
            if endpoint.scheme == "https" {
                // Only trying tells whether `az` is signed in or the machine has an identity.
                return Ok(bearer(
                    Provider::Chain(vec![
                        Provider::AzureCli {
                            tenant_id: auth.tenant_id.clone(),
                        },
                        Provider::Imds {
                            endpoint: auth.managed.imds_endpoint.clone(),
                            client_id: auth.client_id.clone(),
                            probe: true,
                        },
                    ]),
                    true,
                ));
            }
            Err(no_credentials(given))
        }
        AuthMethod::Key => {
            let key = given
                .account_key
                .map(|k| decode_key(k, "AZURE_STORAGE_KEY"))
                .or_else(|| {
                    connection
                        .filter(|cs| cs.account_key.is_some() || cs.development)
                        .map(connection_credential)
                });
            key.unwrap_or_else(|| {
                Err(
                    "--auth key needs the account key: set AZURE_STORAGE_KEY (or the \
                     account-key input), or a connection string with AccountKey"
                        .to_owned(),
                )
            })
        }
        AuthMethod::Sas => {
            let sas = given
                .url_sas
                .map(|q| sas_credential(&Secret::new(q), "the --store URL"))
                .or_else(|| {
                    given
                        .sas_token
                        .map(|s| sas_credential(s, "AZURE_STORAGE_SAS_TOKEN"))
                })
                .or_else(|| {
                    connection
                        .filter(|cs| cs.sas.is_some())
                        .map(connection_credential)
                });
            sas.unwrap_or_else(|| {
                Err(
                    "--auth sas needs a SAS token: set AZURE_STORAGE_SAS_TOKEN (or the \
                     sas-token input), or append it to the --store URL"
                        .to_owned(),
                )
            })
        }
        AuthMethod::ConnectionString => match connection {
            Some(cs) => connection_credential(cs),
            None => Err(
                "--auth connection-string needs AZURE_STORAGE_CONNECTION_STRING (or \
                         the connection-string input)"
                    .to_owned(),
            ),
        },
        method => Ok(bearer(provider(method, auth)?, false)),
    }
}

/// Every credential (an access token, a SAS, a Shared Key signature that can be replayed) lets
/// whoever reads it act on the container until it expires: plain http only to this machine,
/// where an emulator listens.
pub fn require_https(endpoint: &Endpoint, credential: &Credential) -> Result<(), String> {
    if endpoint.scheme == "https" || endpoint.is_loopback() {
        return Ok(());
    }
    let what = match credential {
        Credential::Entra { .. } => "Entra ID tokens are",
        Credential::Sas(_) => "a SAS token is",
        Credential::SharedKey(_) => "requests signed with the account key are",
    };
    Err(format!(
        "{what} only sent over HTTPS, and {} is plain http, which anyone on the way can read: \
         use https:// (plain http is allowed only to this machine, for an emulator such as \
         Azurite)",
        endpoint.origin()
    ))
}

/// A SAS token as given, and its signature alone (encoded and decoded).
fn add_sas(out: &mut Vec<String>, sas: &str) {
    let sas = sas.trim().trim_start_matches('?');
    out.push(sas.to_owned());
    for part in sas.split('&') {
        if let Some(("sig", value)) = part.split_once('=') {
            out.push(value.to_owned());
            out.push(decode_query(value));
        }
    }
}

/// Every secret value of a key, SAS, connection string and `--store` URL, in every form it may be
/// printed in, so a CI platform can mask them before anything else is written.
#[must_use]
pub fn secret_values(
    account_key: Option<&Secret>,
    sas_token: Option<&Secret>,
    connection_string: Option<&Secret>,
    store_url: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(key) = account_key {
        out.push(key.expose().trim().to_owned());
    }
    if let Some(sas) = sas_token {
        add_sas(&mut out, sas.expose());
    }
    if let Some(cs) = connection_string {
        out.push(cs.expose().trim().to_owned());
        for part in cs.expose().split(';') {
            if let Some((name, value)) = part.split_once('=') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "accountkey" => out.push(value.trim().to_owned()),
                    "sharedaccesssignature" => add_sas(&mut out, value),
                    _ => {}
                }
            }
        }
    }
    if let Some(url) = store_url
        && let Some((_, query)) = url.split_once('?')
    {
        add_sas(&mut out, query.split('#').next().unwrap_or(query));
    }
    // Short values would mask ordinary words in the log; real secrets are long.
    out.retain(|s| s.len() >= 8);
    out.sort();
    out.dedup();
    out
}
