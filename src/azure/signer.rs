//! Shared Key request signing and service SAS generation, as pure functions.
//!
//! The rules follow the Blob service's Shared Key scheme exactly; one byte of difference makes the
//! server answer 403 `AuthenticationFailed`, so the unit tests pin signatures that a real Azurite
//! accepted.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The standard headers that the string-to-sign lists, in its order.
const STANDARD_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// What of a request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Signable<'a> {
    pub method: &'a str,
    /// The URL path exactly as sent, e.g. `/devstoreaccount1/container/blob` for path-style.
    pub path: &'a str,
    /// Query parameters with decoded values; names in any case.
    pub query: &'a [(String, String)],
    /// Every header that is sent (names in any case).
    pub headers: &'a [(String, String)],
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.as_str())
}

/// The Shared Key string-to-sign of a request to `account`.
#[must_use]
pub fn string_to_sign(account: &str, request: &Signable<'_>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(request.method);
    out.push('\n');
    for name in STANDARD_HEADERS {
        let mut value = header(request.headers, name);
        // Since version 2015-02-21 a zero length is signed as empty.
        if name == "content-length" && value == "0" {
            value = "";
        }
        // With x-ms-date present, Date is signed empty even if it is sent.
        if name == "date" && !header(request.headers, "x-ms-date").is_empty() {
            value = "";
        }
        out.push_str(value);
        out.push('\n');
    }

    let mut ms: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .collect();
    ms.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in ms {
        out.push_str(&name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }

    out.push('/');
    out.push_str(account);
    out.push_str(request.path);
    let mut query: Vec<(String, &str)> = request
        .query
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
        .collect();
    query.sort_by(|a, b| a.0.cmp(&b.0));
    // A parameter given more than once is signed once with its values comma-separated.
    let mut i = 0;
    while i < query.len() {
        let name = &query[i].0;
        let mut values = vec![query[i].1];
        let mut j = i + 1;
        while j < query.len() && query[j].0 == *name {
            values.push(query[j].1);
            j += 1;
        }
        out.push('\n');
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        i = j;
    }
    out
}

/// Base64 of HMAC-SHA256 over `message` with the decoded account key.
#[must_use]
pub fn signature(key: &[u8], message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC-SHA256 takes keys of any length")
    };
    mac.update(message.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for a request.
#[must_use]
pub fn authorization(account: &str, key: &[u8], request: &Signable<'_>) -> String {
    format!(
        "SharedKey {account}:{}",
        signature(key, &string_to_sign(account, request))
    )
}

/// The fields of a service SAS for a container (or one blob in it).
#[derive(Debug, Clone, Copy)]
pub struct ServiceSas<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// Permissions in canonical order, e.g. `racwdl`.
    pub permissions: &'a str,
    /// Start and expiry, ISO 8601 UTC (`2026-01-01T00:00:00Z`); start may be empty.
    pub start: &'a str,
    pub expiry: &'a str,
    /// Service version that governs the SAS (≥ 2020-12-06 for the 16-line string-to-sign).
    pub version: &'a str,
    /// `https` or `https,http`; empty for any.
    pub protocol: &'a str,
}

/// The string-to-sign of a container service SAS (16 lines, no trailing newline).
#[must_use]
pub fn sas_string_to_sign(sas: &ServiceSas<'_>) -> String {
    let resource = format!("/blob/{}/{}", sas.account, sas.container);
    [
        sas.permissions,
        sas.start,
        sas.expiry,
        &resource,
        "", // signed identifier
        "", // signed IP
        sas.protocol,
        sas.version,
        "c", // signed resource: container
        "",  // snapshot time
        "",  // encryption scope
        "",  // rscc
        "",  // rscd
        "",  // rsce
        "",  // rscl
        "",  // rsct
    ]
    .join("\n")
}

/// A container service SAS token (the query string, without `?`), signed with the account key.
#[must_use]
pub fn service_sas(key: &[u8], sas: &ServiceSas<'_>) -> String {
    let sig = signature(key, &sas_string_to_sign(sas));
    let mut token = format!("sv={}&sr=c&sp={}", sas.version, sas.permissions);
    if !sas.start.is_empty() {
        let _ = write!(token, "&st={}", encode_query(sas.start));
    }
    let _ = write!(token, "&se={}", encode_query(sas.expiry));
    if !sas.protocol.is_empty() {
        let _ = write!(token, "&spr={}", encode_query(sas.protocol));
    }
    let _ = write!(token, "&sig={}", encode_query(&sig));
    token
}

/// Percent-encodes a query value: everything but unreserved characters (Azurite needs `+`, `=`,
/// `/` and `:` encoded).
#[must_use]
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-encodes a path segment (a blob or container name); `/` inside a blob name is kept.
#[must_use]
pub fn encode_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as Azure reads it).
#[must_use]
pub fn decode_query(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
