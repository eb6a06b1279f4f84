//! Property tests over connection strings: built from valid and awkward parts, then
//! mutated. Whatever the text, parsing never panics, and no message ever repeats the
//! account key or the SAS signature, wherever in the text a mutation moved them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::secrets::Secret;
use crate::store::azure::credential::Credential;
use crate::store::azure::location::parse_connection_string;
use crate::store::azure::{AzureSettings, resolve};
use crate::testgen::{Rng, cases};

const BASE64_CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

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
        "usedevelopmentstorage" => (*rng.pick(&["true", "false", "TRUE", "maybe", ""])).to_owned(),
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
