//! Where the container is: container URLs, the endpoint parts of connection strings, the Azure
//! CLI-style account variables, path-style (emulator) and account endpoints, container names.
//!
//! Messages never repeat a secret value: they name the part that is wrong and what to do.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::secrets::Secret;

/// The container used when none is configured (the seed script's).
pub const DEFAULT_CONTAINER: &str = "deployment-locks";

/// Azurite's well-known development account (published in Microsoft's documentation).
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_BLOB_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

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
        is_loopback_host(&self.authority)
    }
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

/// `host` or `host:port` is this machine.
#[must_use]
pub fn is_loopback_host(authority: &str) -> bool {
    let host = host_of(authority);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

/// What the settings say about where the container is.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// `--store` when it is a container URL (its query may hold a SAS).
    pub store_url: Option<&'a str>,
    /// The configured container; empty for the default.
    pub container: &'a str,
    pub connection: Option<&'a ConnectionString>,
    /// `AZURE_STORAGE_ACCOUNT` and `AZURE_STORAGE_ENDPOINT_SUFFIX`.
    pub account: Option<&'a str>,
    pub endpoint_suffix: Option<&'a str>,
    /// `AZURE_STORAGE_KEY` or `AZURE_STORAGE_SAS_TOKEN` is set.
    pub loose_secret: bool,
}

/// Where the container is, and the SAS a `--store` URL carries.
#[derive(Debug)]
pub struct Place<'a> {
    pub endpoint: Endpoint,
    pub container: String,
    pub url_sas: Option<&'a str>,
}

/// Where the container is: from the `--store` URL (with the SAS its query may hold), the
/// connection string, or the account name; the container's name is checked.
pub fn locate<'a>(wanted: &Wanted<'a>) -> Result<Place<'a>, String> {
    let (endpoint, container, url_sas) = endpoint_and_container(wanted)?;
    check_container(&container)?;
    Ok(Place {
        endpoint,
        container,
        url_sas,
    })
}

fn endpoint_and_container<'a>(
    wanted: &Wanted<'a>,
) -> Result<(Endpoint, String, Option<&'a str>), String> {
    let mut container = if wanted.container.is_empty() {
        DEFAULT_CONTAINER.to_owned()
    } else {
        wanted.container.to_owned()
    };
    if let Some(store_url) = wanted.store_url {
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
    if let Some(cs) = wanted.connection {
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
    if let Some(account) = wanted.account {
        let account = account.trim().to_ascii_lowercase();
        check_account(&account)?;
        let suffix = endpoint_suffix(wanted.endpoint_suffix, "AZURE_STORAGE_ENDPOINT_SUFFIX")?;
        let endpoint = Endpoint {
            scheme: "https".to_owned(),
            authority: format!("{account}.blob.{suffix}").to_ascii_lowercase(),
            base_path: String::new(),
            account,
        };
        return Ok((endpoint, container, None));
    }
    if wanted.loose_secret {
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

/// A URL with its query (where a SAS lives) removed, for messages.
#[must_use]
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn loopback_hosts() {
        assert!(is_loopback_host("[::1]:80") && is_loopback_host("localhost"));
        assert!(is_loopback_host("127.8.9.10:10000"));
        assert!(!is_loopback_host("169.254.169.254"));
    }
}
