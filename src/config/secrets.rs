//! Secrets (account keys, SAS tokens, connection strings, access tokens): a type that cannot be
//! printed by accident (`Debug` and `Display` both show `(redacted)`), the one splitter of a
//! secret into the parts that could be printed alone, and the one entry that masks them on CI.

use crate::ci::Platform;

pub use crate::secret::Secret;

/// A secret and the parts of it that could be printed on their own: `AccountKey=…`,
/// `SharedAccessSignature=…`, and a SAS's `sig=…`.
#[must_use]
pub fn parts(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned()];
    for part in value.split([';', '&']) {
        if let Some((name, v)) = part.split_once('=') {
            let name = name.trim().to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "accountkey" | "sharedaccesssignature" | "sig"
            ) {
                out.push(v.trim().to_owned());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The forms of a secret that is or holds URLs (`--notify` targets, one a line or comma-separated;
/// an Application Insights connection string) that could be printed alone: the whole value, each
/// URL, and each URL's path and query
/// (where a webhook keeps its token; a path shorter than 8 characters holds none).
#[must_use]
pub fn url_parts(value: &str) -> Vec<String> {
    let value = value.trim();
    let mut out = vec![value.to_owned()];
    for piece in value.split([',', ';', '\n']).map(str::trim) {
        let Some(scheme_end) = piece.find("://") else {
            continue;
        };
        // The URL starts with its scheme: after the last character that cannot be in one.
        let start = piece[..scheme_end]
            .char_indices()
            .rfind(|(_, c)| !c.is_ascii_alphabetic())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let url = &piece[start..];
        out.push(piece.to_owned());
        out.push(url.to_owned());
        let after = &url[url.find("://").map_or(0, |i| i + 3)..];
        if let Some(slash) = after.find(['/', '?'])
            && after.len() >= slash + 8
        {
            out.push(after[slash..].to_owned());
        }
    }
    out.retain(|s| s.len() > 1);
    out.sort();
    out.dedup();
    out
}

/// Masks a secret and each of its parts on CI, before anything else is printed.
pub fn mask(platform: Platform, value: &str) {
    for part in parts(value) {
        platform.mask(&part);
    }
}

#[cfg(test)]
mod tests {
    use super::{Secret, parts};

    #[test]
    fn never_printed() {
        let s = Secret::new("canary-key");
        assert_eq!(format!("{s} {s:?}"), "(redacted) (redacted)");
        assert_eq!(s.expose(), "canary-key");
    }

    #[test]
    fn webhook_urls_are_split_out() {
        let all = super::url_parts(
            "slack:https://hooks.slack.com/services/T0/B0/s3cr3t\n json:http://127.0.0.1:9/x",
        );
        for part in [
            "https://hooks.slack.com/services/T0/B0/s3cr3t",
            "/services/T0/B0/s3cr3t",
            "slack:https://hooks.slack.com/services/T0/B0/s3cr3t",
            "http://127.0.0.1:9/x",
        ] {
            assert!(all.contains(&part.to_owned()), "{part}: {all:?}");
        }
        assert!(
            !all.contains(&"/x".to_owned()),
            "a short path holds no token"
        );
    }

    #[test]
    fn secrets_are_split_out() {
        let parts_of = parts(
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3cr3t==;EndpointSuffix=x",
        );
        assert!(parts_of.contains(&"S3cr3t==".to_owned()));
        let sas = parts("sv=2022-11-02&sp=r&sig=abc%2Bdef");
        assert!(sas.contains(&"abc%2Bdef".to_owned()));
    }
}
