//! Secrets (account keys, SAS tokens, connection strings, access tokens): a type that cannot be
//! printed by accident (`Debug` and `Display` both show `(redacted)`), the one splitter of a
//! secret into the parts that could be printed alone, and the one entry that masks them on CI.

use std::fmt;

use crate::ci::Platform;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for signing and headers only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

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
    fn secrets_are_split_out() {
        let parts_of = parts(
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3cr3t==;EndpointSuffix=x",
        );
        assert!(parts_of.contains(&"S3cr3t==".to_owned()));
        let sas = parts("sv=2022-11-02&sp=r&sig=abc%2Bdef");
        assert!(sas.contains(&"abc%2Bdef".to_owned()));
    }
}
