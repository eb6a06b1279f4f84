//! Any text as `AZURE_STORAGE_CONNECTION_STRING`: parsing and resolving never panic, and no
//! message repeats an account key or a SAS signature, wherever in the text it ended up.

#![no_main]

use deploy_lock::config::secrets::Secret;
use deploy_lock::store::azure::location::parse_connection_string;
use deploy_lock::store::azure::{AzureSettings, resolve};
use libfuzzer_sys::fuzz_target;

/// Values that are secrets by their name, as a reader splitting on `;`, `&` and `?` finds them.
/// Short ones are skipped: real keys and signatures are 44 characters or more, and a short value
/// may be a word a message names for other reasons.
fn secrets_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in text.split(';') {
        if let Some((name, value)) = part.split_once('=')
            && name.trim().eq_ignore_ascii_case("accountkey")
        {
            out.push(value.trim());
        }
        for param in part.split(['&', '?']) {
            if let Some(("sig", value)) = param.split_once('=') {
                out.push(value);
            }
        }
    }
    out.retain(|s| s.len() >= 24);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let secrets = secrets_in(text);
    let parsed = parse_connection_string(text);
    if let Err(message) = &parsed {
        for secret in &secrets {
            assert!(!message.contains(secret), "{message}");
        }
    }
    let settings = AzureSettings {
        connection_string: Some(Secret::new(text)),
        ..AzureSettings::default()
    };
    let shown = match resolve(&settings) {
        Ok(target) => format!("{target:?}"),
        Err(message) => message,
    };
    for secret in &secrets {
        assert!(!shown.contains(secret), "{shown}");
    }
});
