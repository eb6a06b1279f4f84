//! Where the container is and how to authenticate to it: connection strings, container URLs and
//! the Azure CLI-style account variables, resolved into one [`Target`].
//!
//! Messages never repeat a secret value: they name the part that is wrong and what to do.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::AzureSettings;
use super::entra::settings::{AuthMethod, AuthSettings};
use super::entra::{Assertion, Provider, TokenSource};
use crate::secret::Secret;

/// The container used when none is configured (the seed script's).
pub const DEFAULT_CONTAINER: &str = "deployment-locks";

/// Azurite's well-known development account (published in Microsoft's documentation).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

/// How requests are authorized.
#[derive(Clone)]
pub enum Credential {
    /// Shared Key: the decoded account key.
    SharedKey(Vec<u8>),
    /// A SAS token: the query string without the leading `?`, sent verbatim.
    Sas(Secret),
    /// An Entra ID bearer token, fetched and refreshed by the source.
    Bearer(Arc<TokenSource>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SharedKey(_) => f.write_str("SharedKey(redacted)"),
            Self::Sas(_) => f.write_str("Sas(redacted)"),
            Self::Bearer(source) => write!(f, "Bearer({})", source.describe()),
        }
    }
}

/// The blob service of one account: `scheme://authority` plus a base path (the account name for
/// path-style endpoints such as Azurite's, empty for `ACCOUNT.blob.core.windows.net`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub authority: String,
    pub base_path: String,
    pub account: String,
}

impl Endpoint {
    /// `scheme://authority/base`, for messages; never carries a query.
    #[must_use]
    pub fn origin(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }

    /// Whether the host is this machine (an emulator), which allows plain http without a warning.
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let host = host_of(&self.authority);
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Everything needed to talk to the container.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub container: String,
    pub credential: Credential,
}

/// The parts of a connection string that matter for blobs.
#[derive(Debug, Clone, Default)]
pub struct ConnectionString {
    pub development: bool,
    pub protocol: Option<String>,
    pub account_name: Option<String>,
    pub account_key: Option<Secret>,
    pub blob_endpoint: Option<String>,
    pub endpoint_suffix: Option<String>,
    pub sas: Option<Secret>,
}

/// Parses `Name=value;Name=value;…` (names case-insensitive, values may contain `=`).
pub fn parse_connection_string(text: &str) -> Result<ConnectionString, String> {
    let mut cs = ConnectionString::default();
    let mut seen_any = false;
    for part in text.trim().split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(
                "the storage connection string has a part without `=`; expected \
                 `Name=value;Name=value;…` as shown by `az storage account show-connection-string`"
                    .to_owned(),
            );
        };
        let name = name.trim();
        let value = value.trim();
        seen_any = true;
        match name.to_ascii_lowercase().as_str() {
            "usedevelopmentstorage" => {
                cs.development = value.eq_ignore_ascii_case("true");
                if !cs.development && !value.eq_ignore_ascii_case("false") {
                    return Err(
                        "UseDevelopmentStorage in the storage connection string must be \
                                `true` or `false`"
                            .to_owned(),
                    );
                }
            }
            "defaultendpointsprotocol" => {
                let protocol = value.to_ascii_lowercase();
                if protocol != "http" && protocol != "https" {
                    return Err(format!(
                        "DefaultEndpointsProtocol in the storage connection string is {}; \
                         use `https` (or `http` for an emulator)",
                        shown(value)
                    ));
                }
                cs.protocol = Some(protocol);
            }
            "accountname" => cs.account_name = Some(value.to_owned()),
            "accountkey" => cs.account_key = Some(Secret::new(value)),
            "blobendpoint" => cs.blob_endpoint = Some(value.trim_end_matches('/').to_owned()),
            "endpointsuffix" => cs.endpoint_suffix = Some(value.to_owned()),
            "sharedaccesssignature" => {
                cs.sas = Some(Secret::new(value.trim_start_matches('?')));
            }
            // Queue, table and file endpoints and other settings do not concern blobs.
            _ => {}
        }
    }
    if !seen_any {
        return Err("the storage connection string is empty".to_owned());
    }
    Ok(cs)
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_path_style_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok()
}

/// A parsed `http(s)://authority/path?query`.
struct Url<'a> {
    scheme: String,
    authority: &'a str,
    segments: Vec<&'a str>,
    query: Option<&'a str>,
}

fn parse_url<'a>(url: &'a str, what: &str) -> Result<Url<'a>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{what} must start with `https://` (or `http://` for an emulator)"
        ));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{what} must start with `https://` (or `http://` for an emulator)"
        ));
    }
    if rest.contains('#') {
        return Err(format!("{what} must not contain a `#` fragment"));
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q).filter(|q| !q.is_empty())),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if authority.is_empty() || host_of(authority).is_empty() {
        return Err(format!("{what} has no host name"));
    }
    if authority.contains('@') {
        return Err(format!("{what} must not contain a user name or password"));
    }
    if !valid_authority(authority) {
        return Err(format!(
            "{what} has a host name or port that is not valid (letters, digits, `-` and `.`, \
             an IP address, then `:PORT`)"
        ));
    }
    let segments = path.split('/').filter(|s| !s.is_empty()).collect();
    Ok(Url {
        scheme,
        authority,
        segments,
        query,
    })
}

/// Whether `authority` is `host[:port]` with a DNS name or an IP address. Anything else (spaces,
/// controls, `&`, `%`, a SAS pasted in the wrong place) would reach the HTTP library as a
/// malformed URL, or name a host nobody meant.
fn valid_authority(authority: &str) -> bool {
    let (host_ok, rest) = if let Some(inner) = authority.strip_prefix('[') {
        match inner.split_once(']') {
            Some((ip, rest)) => (ip.parse::<Ipv6Addr>().is_ok(), rest),
            None => return false,
        }
    } else {
        let end = authority.find(':').unwrap_or(authority.len());
        (is_dns_name(&authority[..end]), &authority[end..])
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|port| {
            port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
    host_ok && port_ok
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits, `-` and `_`, none empty.
fn is_dns_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The blob host's suffix below the account: `core.windows.net` unless a sovereign cloud's is
/// given. It becomes part of the host name, so it must be one.
fn endpoint_suffix(value: Option<&str>, what: &str) -> Result<String, String> {
    let suffix = value
        .map(|s| s.trim().trim_matches('.'))
        .filter(|s| !s.is_empty())
        .unwrap_or("core.windows.net");
    if is_dns_name(suffix) {
        Ok(suffix.to_ascii_lowercase())
    } else {
        Err(format!(
            "{what} is {}, not a DNS suffix such as `core.windows.net` or `core.chinacloudapi.cn`",
            shown(suffix)
        ))
    }
}

/// The account's blob endpoint from a URL that may be path-style (`http://127.0.0.1:10000/ACCOUNT`)
/// or account-style (`https://ACCOUNT.blob.core.windows.net`), and the path segments after it.
fn endpoint_of<'a>(url: &Url<'a>, what: &str) -> Result<(Endpoint, Vec<&'a str>), String> {
    let host = host_of(url.authority);
    if is_path_style_host(host) {
        let Some((account, rest)) = url.segments.split_first() else {
            return Err(format!(
                "{what} uses an IP address or localhost, so its path must start with the account \
                 name, e.g. `http://127.0.0.1:10000/devstoreaccount1/deployment-locks`"
            ));
        };
        check_account(account)?;
        Ok((
            Endpoint {
                scheme: url.scheme.clone(),
                authority: url.authority.to_ascii_lowercase(),
                base_path: format!("/{account}"),
                account: (*account).to_owned(),
            },
            rest.to_vec(),
        ))
    } else {
        let account = host.split('.').next().unwrap_or(host).to_ascii_lowercase();
        check_account(&account)?;
        Ok((
            Endpoint {
                scheme: url.scheme.clone(),
                authority: url.authority.to_ascii_lowercase(),
                base_path: String::new(),
                account,
            },
            url.segments.clone(),
        ))
    }
}

fn check_account(account: &str) -> Result<(), String> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{} is not a storage account name (3-24 lower-case letters and digits)",
            shown(account)
        ))
    }
}

/// A value from the configuration, quoted for a message when it looks like a name. Anything
/// else may be a secret that a missing `;` or a pasting slip put in the wrong place (a key is 88
/// characters of base64, a SAS signature 44), so only its length is told.
fn shown(value: &str) -> String {
    let plain = value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        format!("`{value}`")
    } else {
        format!("the value given ({} characters)", value.chars().count())
    }
}

/// Container names: 3-63 characters of lower-case letters, digits and single hyphens, starting
/// and ending with a letter or digit.
pub fn check_container(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid container name: use 3-63 lower-case letters, digits and \
             single hyphens, starting and ending with a letter or digit"
        ))
    }
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
    let token = sas.expose().trim().trim_start_matches('?');
    let signed = token.split('&').any(|p| {
        p.split_once('=')
            .is_some_and(|(n, v)| n == "sig" && !v.is_empty())
    });
    if signed {
        Ok(Credential::Sas(Secret::new(token)))
    } else {
        Err(format!(
            "the SAS token in {source} has no `sig=` signature; generate one with \
             `az storage container generate-sas` (see the README)"
        ))
    }
}

/// The endpoint a connection string points at.
fn connection_endpoint(cs: &ConnectionString) -> Result<Endpoint, String> {
    if let Some(blob) = &cs.blob_endpoint {
        let url = parse_url(blob, "BlobEndpoint in the storage connection string")?;
        let what = "BlobEndpoint in the storage connection string";
        let (mut endpoint, rest) = endpoint_of(&url, what)?;
        if !rest.is_empty() || url.query.is_some() {
            return Err(format!(
                "{what} must be the account's blob endpoint, without a container"
            ));
        }
        // A custom domain says nothing about the account: AccountName does, and Shared Key
        // signs with it, so a wrong one must fail here rather than as a 403 later.
        if let Some(name) = &cs.account_name {
            check_account(name)?;
            endpoint.account.clone_from(name);
        }
        return Ok(endpoint);
    }
    if cs.development {
        return connection_endpoint(&ConnectionString {
            blob_endpoint: Some(DEV_BLOB_ENDPOINT.to_owned()),
            ..ConnectionString::default()
        });
    }
    let Some(account) = &cs.account_name else {
        return Err(
            "the storage connection string has neither AccountName nor BlobEndpoint".to_owned(),
        );
    };
    check_account(account)?;
    let suffix = endpoint_suffix(
        cs.endpoint_suffix.as_deref(),
        "EndpointSuffix in the storage connection string",
    )?;
    Ok(Endpoint {
        scheme: cs.protocol.clone().unwrap_or_else(|| "https".to_owned()),
        authority: format!("{account}.blob.{suffix}").to_ascii_lowercase(),
        base_path: String::new(),
        account: account.clone(),
    })
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

/// Resolves the settings into a target. Nothing is sent; an error says what to change.
pub fn resolve(settings: &AzureSettings) -> Result<Target, String> {
    let connection = settings
        .connection_string
        .as_ref()
        .map(|s| parse_connection_string(s.expose()))
        .transpose()?;
    let (endpoint, container, url_sas) = locate(settings, connection.as_ref())?;
    check_container(&container)?;
    let credential = credential(settings, connection.as_ref(), url_sas, &endpoint)?;
    // Every credential (a bearer token, a SAS, a Shared Key signature that can be replayed)
    // lets whoever reads it act on the container until it expires: plain http only to this
    // machine, where an emulator listens.
    if endpoint.scheme != "https" && !endpoint.is_loopback() {
        let what = match credential {
            Credential::Bearer(_) => "Entra ID tokens are",
            Credential::Sas(_) => "a SAS token is",
            Credential::SharedKey(_) => "requests signed with the account key are",
        };
        return Err(format!(
            "{what} only sent over HTTPS, and {} is plain http, which anyone on the way can read: \
             use https:// (plain http is allowed only to this machine, for an emulator such as \
             Azurite)",
            endpoint.origin()
        ));
    }
    Ok(Target {
        endpoint,
        container,
        credential,
    })
}

/// Where the container is: from the `--store` URL (with the SAS its query may hold), the
/// connection string, or the account name.
fn locate<'a>(
    settings: &'a AzureSettings,
    connection: Option<&ConnectionString>,
) -> Result<(Endpoint, String, Option<&'a str>), String> {
    let mut container = if settings.container.is_empty() {
        DEFAULT_CONTAINER.to_owned()
    } else {
        settings.container.clone()
    };
    if let Some(store_url) = &settings.store_url {
        const WHAT: &str = "the --store URL";
        let url = parse_url(store_url, WHAT)?;
        let (endpoint, rest) = endpoint_of(&url, WHAT)?;
        match rest.as_slice() {
            [] => {}
            [name] => (*name).clone_into(&mut container),
            _ => {
                return Err(format!(
                    "{WHAT} must name a container, not a blob: `{}/CONTAINER`",
                    endpoint.origin()
                ));
            }
        }
        return Ok((endpoint, container, url.query));
    }
    if let Some(cs) = connection {
        if cs.account_key.is_some()
            && cs.account_name.is_none()
            && cs.blob_endpoint.is_none()
            && !cs.development
        {
            return Err(
                "the storage connection string has an AccountKey but no AccountName".to_owned(),
            );
        }
        return Ok((connection_endpoint(cs)?, container, None));
    }
    if let Some(account) = &settings.account {
        let account = account.trim().to_ascii_lowercase();
        check_account(&account)?;
        let suffix = endpoint_suffix(
            settings.endpoint_suffix.as_deref(),
            "AZURE_STORAGE_ENDPOINT_SUFFIX",
        )?;
        let endpoint = Endpoint {
            scheme: "https".to_owned(),
            authority: format!("{account}.blob.{suffix}").to_ascii_lowercase(),
            base_path: String::new(),
            account,
        };
        return Ok((endpoint, container, None));
    }
    if settings.sas_token.is_some() || settings.account_key.is_some() {
        return Err(
            "an Azure storage key or SAS token is set but no account: set \
                    AZURE_STORAGE_ACCOUNT, or pass the container URL with --store"
                .to_owned(),
        );
    }
    Err(
        "no Azure storage is configured: set AZURE_STORAGE_CONNECTION_STRING, or \
         AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN (or an Entra \
         ID sign-in, see docs/entra-id.md), or pass --store \
         https://ACCOUNT.blob.core.windows.net/CONTAINER"
            .to_owned(),
    )
}

/// The configured secret credential, in the order the store has always used: for a `--store`
/// URL its own SAS, then AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY, the connection string; for
/// a connection string its own; for an account the key, then the SAS token. `None` when no
/// secret is configured.
fn secret_credential(
    settings: &AzureSettings,
    connection: Option<&ConnectionString>,
    url_sas: Option<&str>,
) -> Option<Result<Credential, String>> {
    if settings.store_url.is_some() {
        if let Some(query) = url_sas {
            return Some(sas_credential(&Secret::new(query), "the --store URL"));
        }
        if let Some(sas) = &settings.sas_token {
            return Some(sas_credential(sas, "AZURE_STORAGE_SAS_TOKEN"));
        }
        if let Some(key) = &settings.account_key {
            return Some(decode_key(key, "AZURE_STORAGE_KEY"));
        }
        return connection
            .filter(|cs| has_secret(cs))
            .map(connection_credential);
    }
    if let Some(cs) = connection {
        return has_secret(cs).then(|| connection_credential(cs));
    }
    if let Some(key) = &settings.account_key {
        return Some(decode_key(key, "AZURE_STORAGE_KEY"));
    }
    settings
        .sas_token
        .as_ref()
        .map(|sas| sas_credential(sas, "AZURE_STORAGE_SAS_TOKEN"))
}

fn has_secret(cs: &ConnectionString) -> bool {
    cs.sas.is_some() || cs.account_key.is_some() || cs.development
}

/// What to say when neither a secret nor a sign-in is there.
fn no_credentials(settings: &AzureSettings, connection: Option<&ConnectionString>) -> String {
    if settings.store_url.is_some() {
        "the --store URL has no credentials: append a SAS token to it (`…/CONTAINER?sv=…&sig=…`) \
         or set AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or sign in with Entra ID \
         (--auth, see docs/entra-id.md)"
            .to_owned()
    } else if connection.is_some() {
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

/// The credential the `auth` setting asks for.
fn credential(
    settings: &AzureSettings,
    connection: Option<&ConnectionString>,
    url_sas: Option<&str>,
    endpoint: &Endpoint,
) -> Result<Credential, String> {
    let auth = &settings.auth;
    let bearer = |provider: Provider, auto: bool| {
        Credential::Bearer(TokenSource::shared(
            provider,
            auto,
            settings.ca_file.clone(),
        ))
    };
    match auth.method {
        AuthMethod::Auto => {
            if let Some(found) = secret_credential(settings, connection, url_sas) {
                crate::log::debug("auth auto: using the configured key, SAS or connection string");
                return found;
            }
            if let Some(method) = auth.detected() {
                return Ok(bearer(token_provider(method, auth)?, true));
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
            Err(no_credentials(settings, connection))
        }
        AuthMethod::Key => {
            let key = settings
                .account_key
                .as_ref()
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
            let sas = url_sas
                .map(|q| sas_credential(&Secret::new(q), "the --store URL"))
                .or_else(|| {
                    settings
                        .sas_token
                        .as_ref()
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
        method => Ok(bearer(token_provider(method, auth)?, false)),
    }
}

/// The token provider for a method, or what is missing for it.
fn token_provider(method: AuthMethod, auth: &AuthSettings) -> Result<Provider, String> {
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

/// A SAS token as given, and its signature alone (encoded and decoded).
fn add_sas(out: &mut Vec<String>, sas: &str) {
    let sas = sas.trim().trim_start_matches('?');
    out.push(sas.to_owned());
    for part in sas.split('&') {
        if let Some(("sig", value)) = part.split_once('=') {
            out.push(value.to_owned());
            out.push(super::signer::decode_query(value));
        }
    }
}

/// Every secret value the settings carry, in every form it may be printed in, so a CI platform
/// can mask them before anything else is written.
#[must_use]
pub fn secrets(settings: &AzureSettings) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(key) = &settings.account_key {
        out.push(key.expose().trim().to_owned());
    }
    if let Some(sas) = &settings.sas_token {
        add_sas(&mut out, sas.expose());
    }
    if let Some(cs) = &settings.connection_string {
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
    if let Some(url) = &settings.store_url
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

/// A URL with its query (where a SAS lives) removed, for messages.
#[must_use]
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a2V5LWJ5dGVzLWZvci10ZXN0aW5nLW9ubHk=";

    fn settings() -> AzureSettings {
        AzureSettings::default()
    }

    fn cs(text: &str) -> AzureSettings {
        AzureSettings {
            connection_string: Some(Secret::new(text)),
            ..settings()
        }
    }

    fn err(s: &AzureSettings) -> String {
        resolve(s).expect_err("should be refused")
    }

    #[test]
    fn development_storage() {
        let t = resolve(&cs("UseDevelopmentStorage=true")).unwrap();
        assert_eq!(
            t.endpoint.origin(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(t.endpoint.account, DEV_ACCOUNT);
        assert_eq!(t.container, DEFAULT_CONTAINER);
        assert!(matches!(t.credential, Credential::SharedKey(ref k) if k.len() == 64));
        assert!(t.endpoint.is_loopback());
    }

    #[test]
    fn account_key_form_defaults_to_https_and_core_windows_net() {
        let t = resolve(&cs(&format!(
            "DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={KEY}"
        )))
        .unwrap();
        assert_eq!(t.endpoint.origin(), "https://myacct.blob.core.windows.net");
        assert_eq!(t.endpoint.base_path, "");
        let t = resolve(&cs(&format!(
            "accountname=myacct;accountkey={KEY};EndpointSuffix=core.chinacloudapi.cn;"
        )))
        .unwrap();
        assert_eq!(t.endpoint.authority, "myacct.blob.core.chinacloudapi.cn");
    }

    #[test]
    fn account_key_form_with_path_style_blob_endpoint() {
        let t = resolve(&cs(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
        )))
        .unwrap();
        assert_eq!(t.endpoint.authority, "127.0.0.1:10000");
        assert_eq!(t.endpoint.base_path, "/devstoreaccount1");
    }

    #[test]
    fn sas_form() {
        let t = resolve(&cs("BlobEndpoint=https://myacct.blob.core.windows.net/;\
             SharedAccessSignature=sv=2025-01-05&sr=c&sp=racwdl&sig=abc%2Bdef%3D"))
        .unwrap();
        assert_eq!(t.endpoint.account, "myacct");
        match t.credential {
            Credential::Sas(s) => assert!(s.expose().starts_with("sv=")),
            other => panic!("expected SAS, got {other:?}"),
        }
    }

    #[test]
    fn malformed_connection_strings_never_echo_secrets() {
        for (text, expect) in [
            ("", "empty"),
            ("AccountName=myacct;secretvalue123", "without `=`"),
            (
                "AccountName=myacct;AccountKey=not*base64!!",
                "not valid base64",
            ),
            (
                "AccountKey=c2VjcmV0c2VjcmV0",
                "AccountKey but no AccountName",
            ),
            (
                "DefaultEndpointsProtocol=http;AccountName=myacct",
                "neither AccountKey nor SharedAccessSignature",
            ),
            (
                "BlobEndpoint=https://myacct.blob.core.windows.net;SharedAccessSignature=sv=1&sp=r",
                "no `sig=`",
            ),
            ("DefaultEndpointsProtocol=ftp;AccountName=a", "use `https`"),
            ("UseDevelopmentStorage=maybe", "`true` or `false`"),
            (
                "AccountName=myacct;AccountKey=c2VjcmV0c2VjcmV0;BlobEndpoint=myacct.blob.core.windows.net",
                "https://",
            ),
        ] {
            let msg = err(&cs(text));
            assert!(msg.contains(expect), "{text:?}: {msg}");
            for secret in [
                "secretvalue123",
                "not*base64!!",
                "c2VjcmV0c2VjcmV0",
                "sv=1&sp=r",
            ] {
                assert!(!msg.contains(secret), "{msg}");
            }
        }
    }

    #[test]
    fn store_url_account_style_with_sas() {
        let t = resolve(&AzureSettings {
            store_url: Some(
                "https://myacct.blob.core.windows.net/locks?sv=2025-01-05&sp=racwdl&sig=x%3D"
                    .into(),
            ),
            ..settings()
        })
        .unwrap();
        assert_eq!(t.endpoint.origin(), "https://myacct.blob.core.windows.net");
        assert_eq!(t.container, "locks");
        assert!(matches!(t.credential, Credential::Sas(_)));
    }

    #[test]
    fn store_url_path_style_for_ip_and_localhost() {
        for url in [
            "http://127.0.0.1:10000/devstoreaccount1/locks",
            "http://localhost:10000/devstoreaccount1/locks/",
            "https://[::1]:10000/devstoreaccount1/locks",
        ] {
            let t = resolve(&AzureSettings {
                store_url: Some(url.into()),
                account_key: Some(Secret::new(KEY)),
                ..settings()
            })
            .unwrap();
            assert_eq!(t.endpoint.account, "devstoreaccount1", "{url}");
            assert_eq!(t.endpoint.base_path, "/devstoreaccount1", "{url}");
            assert_eq!(t.container, "locks", "{url}");
        }
    }

    #[test]
    fn store_url_without_container_uses_the_configured_one() {
        let t = resolve(&AzureSettings {
            store_url: Some("https://myacct.blob.core.windows.net".into()),
            container: "team-locks".into(),
            sas_token: Some(Secret::new("?sv=2025-01-05&sig=abc")),
            ..settings()
        })
        .unwrap();
        assert_eq!(t.container, "team-locks");
    }

    #[test]
    fn bad_store_urls() {
        for (url, expect) in [
            ("ftp://x/y", "https://"),
            ("myacct.blob.core.windows.net/c", "https://"),
            ("https://myacct.blob.core.windows.net/c/blob", "not a blob"),
            ("http://127.0.0.1:10000", "account name"),
            (
                "https://user:pw@myacct.blob.core.windows.net/c",
                "user name",
            ),
            (
                "https://myacct.blob.core.windows.net/Bad_Name",
                "container name",
            ),
            ("https://x.blob.core.windows.net/c", "account name"),
            ("http://myacct.example.com/locks", "no credentials"),
        ] {
            let msg = err(&AzureSettings {
                store_url: Some(url.into()),
                ..settings()
            });
            assert!(msg.contains(expect), "{url}: {msg}");
        }
    }

    #[test]
    fn account_variables() {
        let t = resolve(&AzureSettings {
            account: Some("MyAcct".into()),
            account_key: Some(Secret::new(KEY)),
            ..settings()
        })
        .unwrap();
        assert_eq!(t.endpoint.origin(), "https://myacct.blob.core.windows.net");
        // Without a secret, `auto` tries the Azure CLI, then a managed identity, at first use.
        let t = resolve(&AzureSettings {
            account: Some("myacct".into()),
            ..settings()
        })
        .unwrap();
        assert!(
            matches!(&t.credential, Credential::Bearer(s) if s.describe().contains("Azure CLI")),
            "{:?}",
            t.credential
        );
        assert!(
            err(&AzureSettings {
                sas_token: Some(Secret::new("sv=1&sig=abc")),
                ..settings()
            })
            .contains("no account")
        );
        assert!(err(&settings()).contains("no Azure storage is configured"));
    }

    #[test]
    fn container_names() {
        for good in ["abc", "deployment-locks", "a1-b2", &"a".repeat(63)] {
            assert!(check_container(good).is_ok(), "{good}");
        }
        for bad in ["ab", "-abc", "abc-", "a--b", "ABC", "a_b", &"a".repeat(64)] {
            assert!(check_container(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_cover_every_form() {
        let s = AzureSettings {
            store_url: Some("https://a.blob.core.windows.net/c?sv=2025&sig=URLSIGNATURE%3D".into()),
            connection_string: Some(Secret::new(
                "AccountName=a;AccountKey=CONNKEYCONNKEY==;SharedAccessSignature=sv=1&sig=CONNSIG123",
            )),
            account_key: Some(Secret::new("ACCOUNTKEYVALUE==")),
            sas_token: Some(Secret::new("?sv=2025&sp=r&sig=TOKENSIG%2B1")),
            ..settings()
        };
        let found = secrets(&s);
        for expected in [
            "ACCOUNTKEYVALUE==",
            "sv=2025&sp=r&sig=TOKENSIG%2B1",
            "TOKENSIG%2B1",
            "TOKENSIG+1",
            "AccountName=a;AccountKey=CONNKEYCONNKEY==;SharedAccessSignature=sv=1&sig=CONNSIG123",
            "CONNKEYCONNKEY==",
            "sv=1&sig=CONNSIG123",
            "CONNSIG123",
            "sv=2025&sig=URLSIGNATURE%3D",
            "URLSIGNATURE%3D",
            "URLSIGNATURE=",
        ] {
            assert!(
                found.iter().any(|x| x == expected),
                "{expected} in {found:?}"
            );
        }
        assert!(secrets(&settings()).is_empty());
    }

    #[test]
    fn credentials_never_print() {
        let t = resolve(&cs("UseDevelopmentStorage=true")).unwrap();
        let text = format!("{t:?}");
        assert!(
            !text.contains("Eby8") && text.contains("redacted"),
            "{text}"
        );
        assert_eq!(
            without_query("https://a.blob.core.windows.net/c?sv=1&sig=x"),
            "https://a.blob.core.windows.net/c"
        );
    }

    fn auth(method: AuthMethod) -> AuthSettings {
        AuthSettings {
            method,
            authority_host: "https://login.example".into(),
            managed: super::super::entra::settings::ManagedEnv {
                imds_endpoint: "http://127.0.0.1:9".into(),
                ..Default::default()
            },
            ..AuthSettings::default()
        }
    }

    #[test]
    fn explicit_methods_name_what_is_missing() {
        let account = |method| AzureSettings {
            account: Some("myacct".into()),
            auth: auth(method),
            ..settings()
        };
        for (method, expect) in [
            (AuthMethod::Key, "AZURE_STORAGE_KEY"),
            (AuthMethod::Sas, "AZURE_STORAGE_SAS_TOKEN"),
            (
                AuthMethod::ConnectionString,
                "AZURE_STORAGE_CONNECTION_STRING",
            ),
            (AuthMethod::Token, "AZURE_STORAGE_TOKEN"),
            (AuthMethod::GithubOidc, "client-id"),
            (AuthMethod::AzureDevopsOidc, "serviceConnection"),
        ] {
            let msg = err(&account(method));
            assert!(msg.contains(expect), "{method:?}: {msg}");
        }
        let mut s = account(AuthMethod::GithubOidc);
        s.auth.client_id = Some("c".into());
        s.auth.tenant_id = Some("t".into());
        assert!(err(&s).contains("id-token: write"), "{}", err(&s));
        assert!(resolve(&account(AuthMethod::ManagedIdentity)).is_ok());
        assert!(resolve(&account(AuthMethod::AzureCli)).is_ok());
    }

    #[test]
    fn a_key_still_wins_in_auto_and_key_mode_ignores_tokens() {
        let mut s = AzureSettings {
            account: Some("myacct".into()),
            account_key: Some(Secret::new(KEY)),
            auth: auth(AuthMethod::Auto),
            ..settings()
        };
        s.auth.token = Some(Secret::new("a.b.c"));
        assert!(matches!(
            resolve(&s).unwrap().credential,
            Credential::SharedKey(_)
        ));
        s.account_key = None;
        assert!(matches!(
            resolve(&s).unwrap().credential,
            Credential::Bearer(_)
        ));
    }

    #[test]
    fn tokens_need_https_except_on_this_machine() {
        let mut a = auth(AuthMethod::Token);
        a.token = Some(Secret::new("a.b.c"));
        let over = |url: &str| {
            resolve(&AzureSettings {
                store_url: Some(url.into()),
                auth: a.clone(),
                ..settings()
            })
        };
        assert!(
            over("http://myacct.example.com/locks")
                .unwrap_err()
                .contains("only sent over HTTPS")
        );
        assert!(over("https://myacct.blob.core.windows.net/locks").is_ok());
        assert!(over("http://127.0.0.1:10000/devstoreaccount1/locks").is_ok());
    }

    #[test]
    fn keys_and_sas_need_https_except_on_this_machine() {
        let sig = "sv=2025-01-05&sp=racwdl&sig=abc%3D";
        for (s, kind) in [
            (
                cs(&format!(
                    "DefaultEndpointsProtocol=http;AccountName=myacct;AccountKey={KEY}"
                )),
                "account key",
            ),
            (
                cs(&format!(
                    "AccountName=myacct;AccountKey={KEY};BlobEndpoint=http://10.0.0.5:10000/myacct"
                )),
                "account key",
            ),
            (
                cs(&format!(
                    "BlobEndpoint=http://myacct.example.com;SharedAccessSignature={sig}"
                )),
                "SAS",
            ),
            (
                AzureSettings {
                    store_url: Some(format!("http://myacct.example.com/locks?{sig}")),
                    ..settings()
                },
                "SAS",
            ),
            (
                AzureSettings {
                    store_url: Some("http://[fe80::1]/myacct/locks".into()),
                    account_key: Some(Secret::new(KEY)),
                    ..settings()
                },
                "account key",
            ),
        ] {
            let msg = err(&s);
            assert!(msg.contains("only sent over HTTPS"), "{msg}");
            assert!(msg.contains(kind), "{msg}");
        }
        for url in [
            "http://127.0.0.1:10000/devstoreaccount1/locks",
            "http://127.8.9.10:10000/devstoreaccount1/locks",
            "http://[::1]:10000/devstoreaccount1/locks",
            "http://localhost:10000/devstoreaccount1/locks",
        ] {
            let local = AzureSettings {
                store_url: Some(format!("{url}?{sig}")),
                ..settings()
            };
            assert!(resolve(&local).is_ok(), "{url}");
        }
    }

    #[test]
    fn host_parts_must_be_host_names() {
        // Found by `cargo fuzz run connection_string`: a suffix became part of the host verbatim.
        let found = "De|sPrtcool=ohttps;AccountName=myacct;uoA-R=;EndpointSuffix=cZ&sig=abcdefghij\
                     WlmNophijWlmNopqrstuvwxy^z0&sig=abcdefge=20-01-01T00%3A00%3A00Z&sig=\
                     abcdefghijklmnopqrstuvwxyBlobEndpoint=http://1/12=fge=20-01-01T00%3A00%3A00Z\
                     &sig=abcdefghijklmnopqrstuvwxy&sig%3A00%3A00Z&sig=abcdefghijklmnopqrstuore.w\
                     \u{1}\0\0\0u\0\0[r";
        let msg = err(&cs(found));
        assert!(msg.contains("not a DNS suffix"), "{msg}");
        assert!(!msg.contains("abcdefghijklmnop"), "{msg}");
        for suffix in [
            "core.windows.net/x",
            "evil.example@core",
            "a..b",
            "core windows",
        ] {
            let msg = err(&cs(&format!(
                "AccountName=myacct;AccountKey={KEY};EndpointSuffix={suffix}"
            )));
            assert!(msg.contains("not a DNS suffix"), "{suffix}: {msg}");
        }
        for url in [
            "https://myacct.blob.core.windows.net&sig=x",
            "https://myacct.blob.core windows.net",
            "http://127.0.0.1:99999/devstoreaccount1",
            "http://127.0.0.1:/devstoreaccount1",
            "http://[::1/devstoreaccount1",
            "http://[nope]:10000/devstoreaccount1",
        ] {
            let msg = err(&cs(&format!("BlobEndpoint={url};AccountKey={KEY}")));
            assert!(msg.contains("host name or port"), "{url}: {msg}");
        }
        let t = resolve(&cs(&format!(
            "AccountName=myacct;AccountKey={KEY};EndpointSuffix=.Core.ChinaCloudAPI.cn."
        )))
        .unwrap();
        assert_eq!(t.endpoint.authority, "myacct.blob.core.chinacloudapi.cn");
    }

    #[test]
    fn endpoint_suffix_for_sovereign_clouds() {
        let t = resolve(&AzureSettings {
            account: Some("myacct".into()),
            account_key: Some(Secret::new(KEY)),
            endpoint_suffix: Some("core.chinacloudapi.cn".into()),
            ..settings()
        })
        .unwrap();
        assert_eq!(t.endpoint.authority, "myacct.blob.core.chinacloudapi.cn");
    }

    mod properties {
        //! Property tests over connection strings: built from valid and awkward parts, then
        //! mutated. Whatever the text, parsing never panics, and no message ever repeats the
        //! account key or the SAS signature, wherever in the text a mutation moved them.

        use super::*;
        use crate::testgen::{Rng, cases};

        const BASE64_CHARS: &str =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

        const DICT: &[&str] = &[
            "=",
            ";",
            "==",
            ";;",
            " ",
            "AccountKey=",
            ";AccountKey=",
            "AccountName=",
            "BlobEndpoint=",
            "SharedAccessSignature=",
            "&sig=",
            "?",
            "%3D",
            "%2B",
            "+",
            "/",
            "://",
            "@",
            "#",
            "[::1]",
            ":10000",
            "\u{feff}",
            "\n",
        ];

        /// A realistic secret: account keys are 64 random bytes (88 base64 characters), SAS
        /// signatures 32 (44 characters, `=` percent-encoded in a query).
        fn canary(rng: &mut Rng, bytes: usize) -> String {
            let raw = rng.bytes(bytes);
            BASE64.encode(raw)
        }

        fn value_for(rng: &mut Rng, name: &str, key: &str, sig: &str) -> String {
            let lower = name.to_ascii_lowercase();
            let awkward = |rng: &mut Rng| {
                let len = rng.length(40);
                rng.string(len)
            };
            if rng.chance(10) {
                return awkward(rng);
            }
            match lower.as_str() {
                "accountname" => {
                    (*rng.pick(&["myacct", "devstoreaccount1", "ab", "My_Acct", ""])).to_owned()
                }
                "accountkey" => match rng.below(6) {
                    0 => key.trim_end_matches('=').to_owned(),
                    1 => format!(" {key} "),
                    2 => key.replace('+', "-").replace('/', "_"),
                    3 => format!("{key}="),
                    _ => key.to_owned(),
                },
                "blobendpoint" => (*rng.pick(&[
                    "https://myacct.blob.core.windows.net",
                    "https://myacct.blob.core.windows.net/",
                    "http://127.0.0.1:10000/devstoreaccount1",
                    "http://[::1]:10000/devstoreaccount1/",
                    "http://localhost:10000",
                    "https://user:pw@myacct.blob.core.windows.net",
                    "https://myacct.blob.core.windows.net/c?x=1",
                    "https://myacct.blob.core.windows.net&sig=SIG",
                    "https://myacct.blob.core windows.net",
                    "http://127.0.0.1:99999/devstoreaccount1",
                    "http://[::1/devstoreaccount1",
                    "ftp://myacct",
                    "myacct.blob.core.windows.net",
                    "https://",
                ]))
                .replace("SIG", sig),
                "sharedaccesssignature" => {
                    let sig = sig.replace('=', "%3D").replace('+', "%2B");
                    match rng.below(4) {
                        0 => format!("?sv=2025-01-05&sr=c&sp=racwdl&sig={sig}"),
                        1 => "sv=2025-01-05&sp=r".to_owned(),
                        2 => format!("sig={sig}&se=2030-01-01"),
                        _ => {
                            format!("sv=2025-01-05&sp=racwdl&se=2030-01-01T00%3A00%3A00Z&sig={sig}")
                        }
                    }
                }
                "usedevelopmentstorage" => {
                    (*rng.pick(&["true", "false", "TRUE", "maybe", ""])).to_owned()
                }
                "defaultendpointsprotocol" => {
                    (*rng.pick(&["https", "http", "HTTPS", "ftp", ""])).to_owned()
                }
                // A SAS or another host pasted into the suffix must not become part of the host.
                "endpointsuffix" => (*rng.pick(&[
                    "core.windows.net",
                    "core.chinacloudapi.cn",
                    ".",
                    "",
                    "core.windows.net&sig=SIG",
                    "core.windows.net/x?sig=SIG",
                    "evil.example@core.windows.net",
                ]))
                .replace("SIG", sig),
                _ => awkward(rng),
            }
        }

        fn random_connection_string(rng: &mut Rng, key: &str, sig: &str) -> String {
            const NAMES: &[&str] = &[
                "AccountName",
                "accountname",
                "AccountKey",
                "ACCOUNTKEY",
                "BlobEndpoint",
                "SharedAccessSignature",
                "UseDevelopmentStorage",
                "DefaultEndpointsProtocol",
                "EndpointSuffix",
                "QueueEndpoint",
            ];
            let mut parts = Vec::new();
            for _ in 0..=rng.below(6) {
                let name = if rng.chance(5) {
                    rng.string_of(BASE64_CHARS, 6)
                } else {
                    (*rng.pick(NAMES)).to_owned()
                };
                let value = value_for(rng, &name, key, sig);
                let eq = *rng.pick(&["=", "=", "=", " = ", "=="]);
                parts.push(format!("{name}{eq}{value}"));
            }
            let sep = *rng.pick(&[";", ";", ";", ";;", " ; "]);
            let mut text = parts.join(sep);
            if rng.chance(30) {
                text.push(';');
            }
            if rng.chance(10) {
                text.insert(0, ';');
            }
            text
        }

        /// The values named AccountKey or `sig`, as a reader splitting on `;` and `&` would
        /// find them: secrets whichever part of the text they ended up in.
        fn secrets_in(text: &str) -> Vec<String> {
            let mut out = Vec::new();
            for part in text.split(';') {
                if let Some((name, value)) = part.split_once('=')
                    && name.trim().eq_ignore_ascii_case("accountkey")
                {
                    out.push(value.trim().to_owned());
                }
                for param in part.split(['&', '?']) {
                    if let Some(("sig", value)) = param.split_once('=') {
                        out.push(value.to_owned());
                    }
                }
            }
            // Real keys and signatures are 44 characters or more; short values may be words
            // that a message names for other reasons (`devstoreaccount1`).
            out.retain(|s| s.len() >= 24);
            out
        }

        #[track_caller]
        fn assert_no_secret(message: &str, text: &str, canaries: &[&str]) {
            for secret in canaries
                .iter()
                .map(|s| (*s).to_owned())
                .chain(secrets_in(text))
            {
                assert!(
                    !message.contains(&secret),
                    "the message repeats a secret:\n  text: {text:?}\n  message: {message}"
                );
            }
        }

        /// Parses and resolves `text`; checks what must hold whatever it is.
        fn check(text: &str, canaries: &[&str]) {
            match parse_connection_string(text) {
                Ok(cs) => {
                    // The parsed key is the text's last AccountKey, trimmed.
                    let last_key = text
                        .trim()
                        .split(';')
                        .filter_map(|p| p.trim().split_once('='))
                        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("accountkey"))
                        .map(|(_, v)| v.trim())
                        .next_back();
                    assert_eq!(
                        cs.account_key.as_ref().map(Secret::expose),
                        last_key,
                        "{text:?}"
                    );
                    // Secrets print redacted.
                    if let Some(key) = last_key.filter(|k| k.len() >= 12) {
                        assert!(!format!("{:?}", cs.account_key).contains(key), "{text:?}");
                    }
                }
                Err(e) => assert_no_secret(&e, text, canaries),
            }
            let settings = AzureSettings {
                connection_string: Some(Secret::new(text)),
                ..AzureSettings::default()
            };
            match resolve(&settings) {
                Ok(target) => {
                    let shown = format!("{target:?}");
                    assert_no_secret(&shown, text, canaries);
                    if let Credential::SharedKey(key) = &target.credential {
                        assert!(!key.is_empty());
                    }
                    assert!(!target.endpoint.account.is_empty(), "{text:?}");
                }
                Err(e) => assert_no_secret(&e, text, canaries),
            }
        }

        #[test]
        fn built_connection_strings_never_panic_or_leak() {
            let mut rng = Rng::new(0xc0_5eed_0001);
            for _ in 0..cases(3000) {
                let key = canary(&mut rng, 64);
                let sig = canary(&mut rng, 32);
                let text = random_connection_string(&mut rng, &key, &sig);
                check(&text, &[&key, &sig]);
            }
        }

        #[test]
        fn mutated_connection_strings_never_panic_or_leak() {
            let mut rng = Rng::new(0xc0_5eed_0002);
            for _ in 0..cases(4000) {
                let key = canary(&mut rng, 64);
                let sig = canary(&mut rng, 32);
                let text = random_connection_string(&mut rng, &key, &sig);
                let mutated = rng.mutate_str(&text, DICT);
                // A mutation may cut a secret short; what is left of it must not show either.
                let canaries: Vec<&str> = [key.as_str(), sig.as_str()]
                    .into_iter()
                    .filter(|c| mutated.contains(*c))
                    .collect();
                let canaries = if canaries.is_empty() {
                    vec!["\u{0}never-in-a-message\u{0}"]
                } else {
                    canaries
                };
                check(&mutated, &canaries);
            }
        }

        #[test]
        fn random_text_never_panics() {
            let mut rng = Rng::new(0xc0_5eed_0003);
            for _ in 0..cases(4000) {
                let len = rng.length(200);
                let text = rng.string(len);
                check(&text, &["\u{0}never-in-a-message\u{0}"]);
            }
        }

        #[test]
        fn valid_account_key_strings_resolve_to_their_parts() {
            let mut rng = Rng::new(0xc0_5eed_0004);
            for _ in 0..cases(1000) {
                let key = canary(&mut rng, 64);
                let len = 3 + rng.below(22);
                let account = rng.string_of("abcdefghijklmnopqrstuvwxyz0123456789", len);
                let protocol = *rng.pick(&["http", "https"]);
                let text = format!(
                    "DefaultEndpointsProtocol={protocol};AccountName={account};AccountKey={key};\
                     EndpointSuffix=core.windows.net"
                );
                let resolved = resolve(&AzureSettings {
                    connection_string: Some(Secret::new(&text)),
                    ..AzureSettings::default()
                });
                if protocol == "http" {
                    // A key is never used over plain http to another machine.
                    let e = resolved.expect_err("http to a remote account");
                    assert!(e.contains("only sent over HTTPS"), "{text:?}: {e}");
                    assert!(!e.contains(&key), "{e}");
                    continue;
                }
                let target = resolved.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(target.endpoint.account, account);
                assert_eq!(
                    target.endpoint.origin(),
                    format!("{protocol}://{account}.blob.core.windows.net")
                );
                match target.credential {
                    Credential::SharedKey(bytes) => assert_eq!(BASE64.encode(bytes), key),
                    other => panic!("expected a shared key, got {other:?}"),
                }
            }
        }
    }
}
