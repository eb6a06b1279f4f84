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
    let mut query = format!("sv={}&sr=c&sp={}", sas.version, sas.permissions);
    if !sas.start.is_empty() {
        let _ = write!(query, "&st={}", encode_query(sas.start));
    }
    let _ = write!(query, "&se={}", encode_query(sas.expiry));
    if !sas.protocol.is_empty() {
        let _ = write!(query, "&spr={}", encode_query(sas.protocol));
    }
    let _ = write!(query, "&sig={}", encode_query(&sig));
    query
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn key() -> Vec<u8> {
        BASE64.decode(DEV_KEY).unwrap()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A Put Blob that Azurite 3.37 accepted (201) with exactly these headers and an 11-byte body.
    fn put_headers() -> Vec<(String, String)> {
        pairs(&[
            ("x-ms-blob-type", "BlockBlob"),
            ("if-none-match", "*"),
            ("x-ms-meta-pipeline", "github"),
            ("x-ms-version", "2025-01-05"),
            ("x-ms-date", "Sat, 28 Nov 2026 10:00:00 GMT"),
            (
                "x-ms-client-request-id",
                "0f8fad5b-d9cb-469f-a165-70867728950e",
            ),
            ("content-length", "11"),
        ])
    }

    #[test]
    fn put_blob_signature_accepted_by_azurite() {
        let headers = put_headers();
        let put = Signable {
            method: "PUT",
            path: "/devstoreaccount1/vectors/deployment-lock-prod",
            query: &[],
            headers: &headers,
        };
        assert_eq!(
            string_to_sign("devstoreaccount1", &put),
            "PUT\n\n\n11\n\n\n\n\n\n*\n\n\nx-ms-blob-type:BlockBlob\n\
             x-ms-client-request-id:0f8fad5b-d9cb-469f-a165-70867728950e\n\
             x-ms-date:Sat, 28 Nov 2026 10:00:00 GMT\nx-ms-meta-pipeline:github\n\
             x-ms-version:2025-01-05\n/devstoreaccount1/devstoreaccount1/vectors/deployment-lock-prod"
        );
        assert_eq!(
            authorization("devstoreaccount1", &key(), &put),
            "SharedKey devstoreaccount1:nQYgyxi8mcJIQipIATDPwmzMqsavRFOiQHhX7aP8sTI="
        );
    }

    #[test]
    fn list_signature_accepted_by_azurite() {
        // Sent as `?restype=container&comp=list&prefix=deployment-lock-&include=metadata`; 200.
        let query = pairs(&[
            ("restype", "container"),
            ("comp", "list"),
            ("prefix", "deployment-lock-"),
            ("include", "metadata"),
        ]);
        let headers = pairs(&[
            ("x-ms-version", "2025-01-05"),
            ("x-ms-date", "Sat, 28 Nov 2026 10:00:00 GMT"),
            (
                "x-ms-client-request-id",
                "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            ),
            ("content-length", "0"),
        ]);
        let list = Signable {
            method: "GET",
            path: "/devstoreaccount1/vectors",
            query: &query,
            headers: &headers,
        };
        let sts = string_to_sign("devstoreaccount1", &list);
        assert!(
            sts.starts_with("GET\n\n\n\n"),
            "zero length signs empty: {sts:?}"
        );
        assert!(sts.ends_with(
            "/devstoreaccount1/devstoreaccount1/vectors\ncomp:list\ninclude:metadata\n\
             prefix:deployment-lock-\nrestype:container"
        ));
        assert_eq!(
            authorization("devstoreaccount1", &key(), &list),
            "SharedKey devstoreaccount1:9Tqagl7kO/uClej8wJYlci6T0Y+YXOGojc/1o4OqL1g="
        );
    }

    #[test]
    fn service_sas_accepted_by_azurite() {
        // A GET of a blob with this token answered 200.
        let sas = ServiceSas {
            account: "devstoreaccount1",
            container: "vectors",
            permissions: "racwdl",
            start: "",
            expiry: "2099-01-01T00:00:00Z",
            version: "2025-01-05",
            protocol: "",
        };
        assert_eq!(sas_string_to_sign(&sas).split('\n').count(), 16);
        assert_eq!(
            service_sas(&key(), &sas),
            "sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z\
             &sig=7XqCuw8GzQ3LqMj4sP2AKLZ%2B391vQO97d9noCcXgRYo%3D"
        );
    }

    #[test]
    fn header_names_and_query_names_are_case_insensitive() {
        let upper: Vec<(String, String)> = put_headers()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_uppercase(), v))
            .collect();
        let a = Signable {
            method: "GET",
            path: "/a/c",
            query: &pairs(&[("COMP", "list"), ("restype", "container")]),
            headers: &upper,
        };
        let b = Signable {
            query: &pairs(&[("restype", "container"), ("comp", "list")]),
            headers: &put_headers(),
            ..a
        };
        assert_eq!(string_to_sign("a", &a), string_to_sign("a", &b));
    }

    #[test]
    fn repeated_query_parameters_sign_once_joined() {
        let q = pairs(&[("include", "metadata"), ("include", "tags")]);
        let r = Signable {
            method: "GET",
            path: "/a/c",
            query: &q,
            headers: &[],
        };
        assert!(string_to_sign("a", &r).ends_with("\ninclude:metadata,tags"));
    }

    #[test]
    fn date_is_signed_empty_when_x_ms_date_is_sent() {
        let h = pairs(&[
            ("date", "Sat, 28 Nov 2026 10:00:00 GMT"),
            ("x-ms-date", "Sat, 28 Nov 2026 10:00:00 GMT"),
        ]);
        let r = Signable {
            method: "GET",
            path: "/a/c",
            query: &[],
            headers: &h,
        };
        assert!(string_to_sign("a", &r).starts_with("GET\n\n\n\n\n\n\n\n"));
    }

    #[test]
    fn encoding_round_trips() {
        assert_eq!(encode_query("a+b=c/d:e f"), "a%2Bb%3Dc%2Fd%3Ae%20f");
        assert_eq!(decode_query("a%2Bb%3Dc%2fd+x%"), "a+b=c/d+x%");
        assert_eq!(
            encode_path("/c/deployment lock/é"),
            "/c/deployment%20lock/%C3%A9"
        );
    }
}
