//! The lock record stored in `deployment-lock-{environment}`: our JSON, the seed script's
//! `pipeline|timestamp|build` line, or something we do not understand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema version written by this program.
pub const SCHEMA: u32 = 1;

/// Largest record we accept; a lock record is a few hundred bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Who holds a lock, as written by `acquire`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockRecord {
    pub schema: u32,
    pub environment: String,
    pub pipeline: String,
    pub build_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub attempt: String,
    /// 128 random bits, hex: identifies this acquisition.
    pub token: String,
    /// The holder's own clock when it acquired; shown to people, never used to decide staleness.
    pub acquired_at: String,
    pub ttl_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(rename = "ref", skip_serializing_if = "String::is_empty")]
    pub git_ref: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub commit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// What a lock blob turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Written by this program.
    Current(LockRecord),
    /// Written by the seed's `deployment-coordinator.sh`: `pipeline|timestamp|build_id`.
    Legacy {
        pipeline: String,
        timestamp: String,
        build_id: String,
    },
    /// Neither: held by someone we cannot identify. `why` says what is wrong with it.
    Unknown { why: String },
}

impl Holder {
    /// Reads a lock blob. Never fails: a blob we cannot understand is an unknown holder, so a
    /// corrupt record is never mistaken for a free lock.
    #[must_use]
    pub fn parse(data: &[u8]) -> Self {
        if data.len() > MAX_RECORD_BYTES {
            return Self::Unknown {
                why: format!(
                    "the lock blob is {} bytes, far larger than a lock record",
                    data.len()
                ),
            };
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return Self::Unknown {
                why: "the lock blob is not UTF-8 text".into(),
            };
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Self::Unknown {
                why: "the lock blob is empty".into(),
            };
        }
        if trimmed.starts_with('{') {
            return match serde_json::from_str::<LockRecord>(trimmed) {
                Ok(rec) if rec.pipeline.is_empty() && rec.build_id.is_empty() => Self::Unknown {
                    why: "the lock record names no pipeline and no build".into(),
                },
                Ok(rec) => Self::Current(rec),
                Err(e) => Self::Unknown {
                    why: format!("the lock record is not valid: {e}"),
                },
            };
        }
        let parts: Vec<&str> = trimmed.split('|').collect();
        if let [pipeline, timestamp, build_id] = parts.as_slice()
            && !pipeline.trim().is_empty()
            && !trimmed.contains('\n')
        {
            return Self::Legacy {
                pipeline: pipeline.trim().to_owned(),
                timestamp: timestamp.trim().to_owned(),
                build_id: build_id.trim().to_owned(),
            };
        }
        Self::Unknown {
            why: "the lock blob is neither a deploy-lock record nor a `pipeline|time|build` line"
                .into(),
        }
    }

    #[must_use]
    pub fn pipeline(&self) -> &str {
        match self {
            Self::Current(r) => &r.pipeline,
            Self::Legacy { pipeline, .. } => pipeline,
            Self::Unknown { .. } => "unknown",
        }
    }

    #[must_use]
    pub fn build_id(&self) -> &str {
        match self {
            Self::Current(r) => &r.build_id,
            Self::Legacy { build_id, .. } => build_id,
            Self::Unknown { .. } => "",
        }
    }

    #[must_use]
    pub fn record(&self) -> Option<&LockRecord> {
        match self {
            Self::Current(r) => Some(r),
            _ => None,
        }
    }

    /// A short "who" for messages: `github build 123 (job deploy)`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Current(r) => {
                let mut s = format!("{} build {}", r.pipeline, r.build_id);
                if !r.job.is_empty() {
                    s.push_str(&format!(" (job {})", r.job));
                }
                if !r.actor.is_empty() {
                    s.push_str(&format!(" by {}", r.actor));
                }
                s
            }
            Self::Legacy {
                pipeline, build_id, ..
            } => format!("{pipeline} build {build_id} (written by deployment-coordinator.sh)"),
            Self::Unknown { .. } => "an unknown holder".into(),
        }
    }
}

impl LockRecord {
    /// Holder fields as blob metadata, so a listing shows them without a download. Names are
    /// valid C# identifiers (Azure's rule); values are ASCII with anything else percent-encoded.
    #[must_use]
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                m.insert(k.to_owned(), meta_encode(v));
            }
        };
        put("deploylock_schema", &self.schema.to_string());
        put("pipeline", &self.pipeline);
        put("build_id", &self.build_id);
        put("job", &self.job);
        put("actor", &self.actor);
        put("acquired_at", &self.acquired_at);
        put("ttl_seconds", &self.ttl_seconds.to_string());
        put("run_url", &self.run_url);
        put("reason", &self.reason);
        if let Some(f) = self.fence {
            put("fence", &f.to_string());
        }
        m
    }

    /// Serialises the record as the blob body.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Percent-encodes what may not stand in an HTTP header value: controls, `%` and non-ASCII.
#[must_use]
pub fn meta_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_line_is_read() {
        let h = Holder::parse(b"github|2025-09-27 17:30:00 UTC|1234567890\n");
        assert_eq!(
            h,
            Holder::Legacy {
                pipeline: "github".into(),
                timestamp: "2025-09-27 17:30:00 UTC".into(),
                build_id: "1234567890".into()
            }
        );
        assert_eq!(h.pipeline(), "github");
        assert_eq!(h.build_id(), "1234567890");
    }

    #[test]
    fn record_round_trips() {
        let rec = LockRecord {
            schema: SCHEMA,
            environment: "sandbox".into(),
            pipeline: "github".into(),
            build_id: "42".into(),
            token: "ab".into(),
            ttl_seconds: 60,
            fence: Some(7),
            ..LockRecord::default()
        };
        assert_eq!(Holder::parse(&rec.to_bytes()), Holder::Current(rec));
    }

    #[test]
    fn garbage_is_an_unknown_holder() {
        for blob in [
            &b""[..],
            b"   ",
            b"\xff\xfe\x00",
            b"{not json",
            b"{\"pipeline\": 5}",
            b"{}",
            b"[1,2,3]",
            b"a|b",
            b"a|b|c|d",
        ] {
            assert!(
                matches!(Holder::parse(blob), Holder::Unknown { .. }),
                "{blob:?}"
            );
        }
        let huge = vec![b'{'; MAX_RECORD_BYTES + 1];
        assert!(matches!(Holder::parse(&huge), Holder::Unknown { .. }));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            Holder::parse(format!("{{\"a\":{deep}").as_bytes()),
            Holder::Unknown { .. }
        ));
    }

    #[test]
    fn metadata_is_header_safe() {
        let rec = LockRecord {
            pipeline: "gh".into(),
            reason: "fix ü\nnow 100%".into(),
            ..LockRecord::default()
        };
        let m = rec.metadata();
        assert_eq!(m["reason"], "fix %C3%BC%0Anow 100%25");
        assert!(
            m.keys()
                .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
