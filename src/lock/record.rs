//! The lock record stored in `deployment-lock-{environment}`: our JSON, the seed script's
//! `pipeline|timestamp|build` line, or something we do not understand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ci::runs::{CiRun, lenient};

/// Blob names the seed script uses, so both can run side by side.
pub const KEY_PREFIX: &str = "deployment-lock-";

/// The seed script's stale timeout (its `LOCK_TIMEOUT_MINUTES` default), for locks it wrote.
pub const SEED_TIMEOUT_MINUTES: f64 = 30.0;

/// The lock blob's name for an environment.
#[must_use]
pub fn key(environment: &str) -> String {
    format!("{KEY_PREFIX}{environment}")
}

/// The schema version written by this program.
pub const SCHEMA: u32 = 1;

/// Largest record we accept; a lock record is a few hundred bytes, and every record we write
/// is far below this (`MAX_REASON_CHARS`, `MAX_FIELD_CHARS`).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Longest `--reason` we record, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest value of a field taken from the environment (repository, ref, run URL, ...).
pub const MAX_FIELD_CHARS: usize = 512;

/// Azure's limit on a blob's metadata: names and values together.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Longest metadata value we write (the reason's: the others are shorter); the record itself
/// always holds the whole value, metadata is only a preview for listings.
const MAX_META_REASON: usize = 2048;
const MAX_META_VALUE: usize = 512;

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
    /// The job's display name, where it differs from its id (Azure DevOps).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub attempt: String,
    /// 128 random bits, hex: identifies this acquisition.
    pub token: String,
    /// When the lock was acquired, by the store's clock (RFC 3339); kept by renewals. Ages and
    /// hold times are measured from it; it never decides staleness.
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
    /// Where the holder's run can be asked whether it is still going; added in 1.x, ignored by
    /// earlier versions, and read leniently (an odd value is no reference).
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<CiRun>,
}

/// What a lock blob turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Written by this program.
    Current(LockRecord),
    /// Written by the seed's `deployment-coordinator.sh`: `pipeline|timestamp|build_id`.
    Seed {
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
            return Self::Seed {
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
            Self::Seed { pipeline, .. } => pipeline,
            Self::Unknown { .. } => "unknown",
        }
    }

    #[must_use]
    pub fn build_id(&self) -> &str {
        match self {
            Self::Current(r) => &r.build_id,
            Self::Seed { build_id, .. } => build_id,
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
                // Parallel jobs and matrix legs share a job id: the runner tells them apart.
                let job = if r.job_name.is_empty() {
                    &r.job
                } else {
                    &r.job_name
                };
                match (job.is_empty(), r.host.is_empty()) {
                    (false, false) => s.push_str(&format!(" (job {job} on {})", r.host)),
                    (false, true) => s.push_str(&format!(" (job {job})")),
                    (true, _) => {}
                }
                if !r.actor.is_empty() {
                    s.push_str(&format!(" by {}", r.actor));
                }
                s
            }
            Self::Seed {
                pipeline, build_id, ..
            } => format!("{pipeline} build {build_id} (written by deployment-coordinator.sh)"),
            Self::Unknown { .. } => "an unknown holder".into(),
        }
    }
}

impl LockRecord {
    /// Holder fields as blob metadata, so a listing shows them without a download. Names are
    /// valid C# identifiers (Azure's rule); values are ASCII with anything else percent-encoded,
    /// each cut short so that all of it stays below Azure's 8 KiB (`MAX_METADATA_BYTES`).
    #[must_use]
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            let max = if k == "reason" {
                MAX_META_REASON
            } else {
                MAX_META_VALUE
            };
            let v = meta_cut(&meta_encode(v), max);
            if !v.is_empty() {
                m.insert(k.to_owned(), v);
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

/// An encoded value cut to at most `max` bytes, never inside a `%XX` escape, marked with `...`
/// where it was cut; without trailing spaces, which a header value cannot end with.
fn meta_cut(encoded: &str, max: usize) -> String {
    if encoded.len() <= max {
        return encoded.to_owned();
    }
    let mut end = max.saturating_sub(3);
    // The encoding is ASCII, so any byte offset is a char boundary; step back over a cut escape.
    if let Some(i) = encoded[..end].rfind('%').filter(|i| i + 3 > end) {
        end = i;
    }
    format!("{}...", encoded[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_line_is_read() {
        let h = Holder::parse(b"github|2025-09-27 17:30:00 UTC|1234567890\n");
        assert_eq!(
            h,
            Holder::Seed {
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

    /// The largest record we can write: every field at its bound, in the characters that take the
    /// most room in JSON and in metadata.
    fn largest_record() -> LockRecord {
        let worst =
            |n: usize| -> String { "\u{1}\u{10ffff}\"%\n ".chars().cycle().take(n).collect() };
        let field = worst(MAX_FIELD_CHARS);
        LockRecord {
            schema: SCHEMA,
            environment: "e".repeat(63),
            pipeline: "p".repeat(32),
            build_id: field.clone(),
            job: field.clone(),
            job_name: field.clone(),
            attempt: field.clone(),
            token: "f".repeat(32),
            acquired_at: "2025-09-27T17:30:00Z".into(),
            ttl_seconds: u64::MAX,
            fence: Some(u64::MAX),
            run_url: field.clone(),
            repository: field.clone(),
            git_ref: field.clone(),
            commit: field.clone(),
            actor: field.clone(),
            reason: worst(MAX_REASON_CHARS),
            host: field.clone(),
            ci_run: Some(CiRun {
                system: field.clone(),
                api_url: field.clone(),
                repository: field.clone(),
                project: field.clone(),
                run_id: field.clone(),
                attempt: field,
            }),
        }
    }

    #[test]
    fn whatever_we_can_write_we_read_back_and_azure_accepts() {
        let rec = largest_record();
        let bytes = rec.to_bytes();
        assert!(bytes.len() <= MAX_RECORD_BYTES, "{} bytes", bytes.len());
        assert_eq!(Holder::parse(&bytes), Holder::Current(rec.clone()));
        let meta = rec.metadata();
        let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size < MAX_METADATA_BYTES, "{size} bytes of metadata");
        for v in meta.values() {
            assert!(v.bytes().all(|b| (0x20..0x7f).contains(&b)), "{v:?}");
            assert_eq!(v.trim(), v);
        }
        assert!(meta["reason"].ends_with("..."));
    }

    #[test]
    fn metadata_is_cut_between_escapes() {
        assert_eq!(meta_cut("abc", 10), "abc");
        assert_eq!(meta_cut("abcdefghijkl", 10), "abcdefg...");
        assert_eq!(meta_cut("abcde%C3%BCxyz", 10), "abcde...");
        assert_eq!(meta_cut("abcd%C3%BCxyz", 10), "abcd%C3...");
        assert_eq!(meta_cut("ab   %C3%BCxyz", 10), "ab...");
    }

    mod properties {
        //! Property tests over `Holder::parse`: random bytes and text, records of random content,
        //! and records and seed lines mutated at random or given fields of the wrong type.

        use serde_json::Value;

        use super::super::*;
        use crate::testgen::{Rng, cases};

        const FIELDS_STRING: &[&str] = &[
            "environment",
            "pipeline",
            "build_id",
            "job",
            "attempt",
            "token",
            "acquired_at",
            "run_url",
            "repository",
            "ref",
            "commit",
            "actor",
            "reason",
            "host",
        ];

        /// JSON tokens and fragments that mutations splice in.
        const DICT: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "|",
            "\\u0000",
            "\\ud800",
            "\\",
            "null",
            "true",
            "1e400",
            "-1",
            "18446744073709551616",
            "\"pipeline\":",
            "\"build_id\":\"1\"",
            "\"ttl_seconds\":",
            "\"fence\":null",
            "\n",
            "\u{feff}",
        ];

        fn text(rng: &mut Rng, max: usize) -> String {
            let len = rng.length(max);
            rng.string(len)
        }

        fn random_record(rng: &mut Rng) -> LockRecord {
            let field = |rng: &mut Rng| {
                if rng.chance(40) {
                    String::new()
                } else {
                    text(rng, 60)
                }
            };
            let (random_ttl, random_fence) = (rng.next_u64(), rng.next_u64());
            let mut rec = LockRecord {
                schema: *rng.pick(&[0, 1, 2, u32::MAX]),
                environment: field(rng),
                pipeline: field(rng),
                build_id: field(rng),
                job: field(rng),
                job_name: field(rng),
                attempt: field(rng),
                token: field(rng),
                acquired_at: field(rng),
                ttl_seconds: *rng.pick(&[0, 1, 60, 1800, u64::MAX, random_ttl]),
                fence: *rng.pick(&[None, Some(0), Some(u64::MAX), Some(random_fence)]),
                run_url: field(rng),
                repository: field(rng),
                git_ref: field(rng),
                commit: field(rng),
                actor: field(rng),
                reason: field(rng),
                host: field(rng),
                ci_run: None,
            };
            if rng.chance(30) {
                rec.ci_run = Some(crate::ci::runs::CiRun {
                    system: field(rng),
                    api_url: field(rng),
                    repository: field(rng),
                    project: field(rng),
                    run_id: field(rng),
                    attempt: field(rng),
                });
            }
            if rec.pipeline.is_empty() && rec.build_id.is_empty() {
                rec.build_id = "1".into();
            }
            rec
        }

        /// Whether every field we know has the JSON type the record needs: read without our
        /// parser, so a record it accepts can be checked against it.
        fn well_typed(v: &Value) -> bool {
            let Some(obj) = v.as_object() else {
                return false;
            };
            obj.iter().all(|(k, v)| match k.as_str() {
                "schema" => v.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                "ttl_seconds" => v.is_u64(),
                "fence" => v.is_u64() || v.is_null(),
                k if FIELDS_STRING.contains(&k) => v.is_string(),
                _ => true,
            })
        }

        /// What must hold for any input: no panic, and the answer agrees with the format.
        fn check(data: &[u8]) -> Holder {
            let holder = Holder::parse(data);
            let shown = format!("{:?}", String::from_utf8_lossy(data));
            // Every accessor works on every outcome.
            let _ = (holder.describe(), holder.pipeline(), holder.build_id());
            let Ok(text) = std::str::from_utf8(data) else {
                assert!(matches!(holder, Holder::Unknown { .. }), "{shown}");
                return holder;
            };
            let trimmed = text.trim();
            if data.len() > MAX_RECORD_BYTES || trimmed.is_empty() {
                assert!(matches!(holder, Holder::Unknown { .. }), "{shown}");
                return holder;
            }
            if trimmed.starts_with('{') {
                match serde_json::from_str::<Value>(trimmed) {
                    Ok(v) if !well_typed(&v) => {
                        assert!(matches!(holder, Holder::Unknown { .. }), "{shown}");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // serde skips an unknown field without building its value, so neither
                        // its depth, the size of its numbers nor a broken `\u` escape in its
                        // strings makes the record invalid.
                        let e = e.to_string();
                        let skipped = ["recursion limit", "number out of range", "escape"];
                        if !skipped.iter().any(|s| e.contains(s)) {
                            assert!(matches!(holder, Holder::Unknown { .. }), "{e}: {shown}");
                        }
                    }
                }
            }
            match &holder {
                Holder::Current(rec) => {
                    assert!(trimmed.starts_with('{'), "{shown}");
                    assert!(!(rec.pipeline.is_empty() && rec.build_id.is_empty()));
                    // Whatever we accept, we write back the same way.
                    assert_eq!(Holder::parse(&rec.to_bytes()), holder, "{shown}");
                    for value in rec.metadata().values() {
                        assert!(
                            value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                            "metadata {value:?} from {shown}"
                        );
                    }
                }
                Holder::Seed {
                    pipeline,
                    timestamp,
                    build_id,
                } => {
                    assert!(!trimmed.starts_with('{') && !trimmed.contains('\n'));
                    assert_eq!(trimmed.matches('|').count(), 2, "{shown}");
                    assert!(!pipeline.is_empty(), "{shown}");
                    for part in [pipeline, timestamp, build_id] {
                        assert_eq!(part.trim(), part, "{shown}");
                    }
                    let line = format!("{pipeline}|{timestamp}|{build_id}");
                    assert_eq!(Holder::parse(line.as_bytes()), holder, "{shown}");
                }
                Holder::Unknown { why } => {
                    assert!(!why.is_empty());
                    assert_eq!(holder.describe(), "an unknown holder");
                    assert!(holder.record().is_none());
                }
            }
            holder
        }

        #[test]
        fn random_bytes_and_text_never_panic() {
            let mut rng = Rng::new(0x5eed_0001);
            for _ in 0..cases(6000) {
                let len = rng.length(300);
                let data = if rng.chance(50) {
                    rng.bytes(len)
                } else {
                    let mut t = rng.string(len);
                    if rng.chance(30) {
                        t.insert(0, '{');
                    }
                    t.into_bytes()
                };
                check(&data);
            }
        }

        #[test]
        fn valid_records_round_trip() {
            let mut rng = Rng::new(0x5eed_0002);
            for _ in 0..cases(3000) {
                let rec = random_record(&mut rng);
                let bytes = rec.to_bytes();
                let parsed = check(&bytes);
                assert_eq!(parsed, Holder::Current(rec.clone()), "{rec:?}");
                // Parse, serialise, parse: the same record and the same bytes.
                let again = parsed.record().expect("a record").to_bytes();
                assert_eq!(again, bytes);
                // Surrounding whitespace and a trailing newline, as tools leave them, are fine.
                let mut padded = b"\n  ".to_vec();
                padded.extend_from_slice(&bytes);
                padded.extend_from_slice(b"\r\n");
                assert_eq!(Holder::parse(&padded), parsed);
                // A record without pipeline and build names nobody.
                let anonymous = LockRecord {
                    pipeline: String::new(),
                    build_id: String::new(),
                    ..rec
                };
                assert!(matches!(
                    check(&anonymous.to_bytes()),
                    Holder::Unknown { .. }
                ));
            }
        }

        /// `{"field":RAW,…rest of the record without field…}`.
        fn with_raw_field(rec: &LockRecord, field: &str, raw: &str) -> String {
            let mut v = serde_json::to_value(rec).expect("a record is JSON");
            if let Some(obj) = v.as_object_mut() {
                obj.remove(field);
            }
            let rest = v.to_string();
            let rest = rest.strip_prefix('{').unwrap_or(&rest);
            if rest == "}" {
                format!("{{\"{field}\":{raw}}}")
            } else {
                format!("{{\"{field}\":{raw},{rest}")
            }
        }

        fn deep(open: &str, close: &str, depth: usize) -> String {
            format!("{}1{}", open.repeat(depth), close.repeat(depth))
        }

        #[test]
        fn fields_of_the_wrong_type_huge_numbers_and_deep_nesting_are_unknown() {
            let mut rng = Rng::new(0x5eed_0003);
            let nested = [
                deep("[", "]", 1),
                deep("[", "]", 127),
                deep("[", "]", 129),
                deep("[", "]", 20_000),
                deep("{\"a\":", "}", 200),
                deep("{\"a\":", "}", 5_000),
            ];
            let mut wrong_for_string: Vec<&str> = vec![
                "0",
                "-1",
                "1.5",
                "true",
                "null",
                "[]",
                "{}",
                "[\"a\"]",
                "{\"a\":\"b\"}",
                "1e400",
                "18446744073709551616",
                "-9223372036854775809",
            ];
            wrong_for_string.extend(nested.iter().map(String::as_str));
            let mut wrong_for_number: Vec<&str> = vec![
                "\"60\"",
                "-1",
                "1.5",
                "1e3",
                "1e400",
                "-0.0",
                "18446744073709551616",
                "99999999999999999999999999999",
                "true",
                "[]",
                "{}",
                "\"\"",
            ];
            wrong_for_number.extend(nested.iter().map(String::as_str));
            for _ in 0..cases(1500) {
                let rec = random_record(&mut rng);
                let (field, raw) = match rng.below(4) {
                    0 => ("schema", *rng.pick(&["4294967296", "-1", "\"1\"", "null"])),
                    1 => ("ttl_seconds", *rng.pick(&wrong_for_number)),
                    2 => ("fence", *rng.pick(&wrong_for_number)),
                    _ => (*rng.pick(FIELDS_STRING), *rng.pick(&wrong_for_string)),
                };
                let text = with_raw_field(&rec, field, raw);
                let holder = check(text.as_bytes());
                assert!(
                    matches!(holder, Holder::Unknown { ref why } if why.contains("not valid")),
                    "{field}: {raw:.40} gave {holder:?}"
                );
            }
            // Unknown fields are skipped without recursion, however deep, and huge numbers in
            // them are never converted: a newer writer's additions do not hide the holder.
            let rec = random_record(&mut rng);
            for raw in nested
                .iter()
                .map(String::as_str)
                .chain(["1e400", "[1e999]"])
            {
                let text = with_raw_field(&rec, "extra", raw);
                assert_eq!(
                    check(text.as_bytes()),
                    Holder::Current(rec.clone()),
                    "{raw:.40}"
                );
            }
        }

        #[test]
        fn mutated_records_never_panic() {
            let mut rng = Rng::new(0x5eed_0004);
            for _ in 0..cases(5000) {
                let bytes = random_record(&mut rng).to_bytes();
                let mutated = if rng.chance(50) {
                    rng.mutate_bytes(&bytes, DICT)
                } else {
                    let text = String::from_utf8(bytes).expect("JSON is UTF-8");
                    rng.mutate_str(&text, DICT).into_bytes()
                };
                check(&mutated);
            }
        }

        #[test]
        fn mutated_seed_lines_never_panic() {
            let mut rng = Rng::new(0x5eed_0005);
            let seeds = [
                "github|2025-09-27 17:30:00 UTC|1234567890",
                "azdevops|2025-09-27 17:30:00 UTC|20250927.3\n",
                "local| |x",
            ];
            for _ in 0..cases(6000) {
                let seed = rng.pick(&seeds);
                let mutated = if rng.chance(50) {
                    rng.mutate_bytes(seed.as_bytes(), DICT)
                } else {
                    rng.mutate_str(seed, DICT).into_bytes()
                };
                check(&mutated);
            }
            // Every line of three fields with a pipeline is read as the seed wrote it.
            for _ in 0..cases(2000) {
                let part = |rng: &mut Rng| {
                    let len = rng.length(30);
                    rng.string(len).replace(['|', '\n'], "").trim().to_owned()
                };
                let (p, t, b) = (part(&mut rng), part(&mut rng), part(&mut rng));
                let line = format!("{p}|{t}|{b}");
                let holder = check(line.as_bytes());
                if !p.is_empty() && !p.starts_with('{') {
                    assert_eq!(
                        holder,
                        Holder::Seed {
                            pipeline: p,
                            timestamp: t,
                            build_id: b
                        }
                    );
                }
            }
        }
    }
}
