//! Resolving settings into a target: where the container is, who signs in, and the refusal of
//! plain http for secrets.

use super::credential::Credential;
use super::entra::settings::{AuthMethod, AuthSettings, ManagedEnv};
use super::location::{DEFAULT_CONTAINER, DEV_ACCOUNT, without_query};
use super::{AzureSettings, resolve, secrets};
use crate::config::secrets::Secret;

mod properties;

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
    let t = resolve(&cs("UseDevelopmentStorage=true")).expect("resolves");
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
    .expect("resolves");
    assert_eq!(t.endpoint.origin(), "https://myacct.blob.core.windows.net");
    assert_eq!(t.endpoint.base_path, "");
    let t = resolve(&cs(&format!(
        "accountname=myacct;accountkey={KEY};EndpointSuffix=core.chinacloudapi.cn;"
    )))
    .expect("resolves");
    assert_eq!(t.endpoint.authority, "myacct.blob.core.chinacloudapi.cn");
}

#[test]
fn account_key_form_with_path_style_blob_endpoint() {
    let t = resolve(&cs(&format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
         BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;"
    )))
    .expect("resolves");
    assert_eq!(t.endpoint.authority, "127.0.0.1:10000");
    assert_eq!(t.endpoint.base_path, "/devstoreaccount1");
}

#[test]
fn sas_form() {
    let t = resolve(&cs("BlobEndpoint=https://myacct.blob.core.windows.net/;\
         SharedAccessSignature=sv=2025-01-05&sr=c&sp=racwdl&sig=abc%2Bdef%3D"))
    .expect("resolves");
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
            "https://myacct.blob.core.windows.net/locks?sv=2025-01-05&sp=racwdl&sig=x%3D".into(),
        ),
        ..settings()
    })
    .expect("resolves");
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
        .expect("resolves");
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
    .expect("resolves");
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
    .expect("resolves");
    assert_eq!(t.endpoint.origin(), "https://myacct.blob.core.windows.net");
    // Without a secret, `auto` tries the Azure CLI, then a managed identity, at first use.
    let t = resolve(&AzureSettings {
        account: Some("myacct".into()),
        ..settings()
    })
    .expect("resolves");
    assert!(
        matches!(&t.credential, Credential::Entra { provider, .. } if provider.describe().contains("Azure CLI")),
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
    let t = resolve(&cs("UseDevelopmentStorage=true")).expect("resolves");
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
        managed: ManagedEnv {
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
        (AuthMethod::AccessToken, "AZURE_STORAGE_TOKEN"),
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
    s.auth.access_token = Some(Secret::new("a.b.c"));
    assert!(matches!(
        resolve(&s).expect("resolves").credential,
        Credential::SharedKey(_)
    ));
    s.account_key = None;
    assert!(matches!(
        resolve(&s).expect("resolves").credential,
        Credential::Entra { .. }
    ));
}

#[test]
fn tokens_need_https_except_on_this_machine() {
    let mut a = auth(AuthMethod::AccessToken);
    a.access_token = Some(Secret::new("a.b.c"));
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
    .expect("resolves");
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
    .expect("resolves");
    assert_eq!(t.endpoint.authority, "myacct.blob.core.chinacloudapi.cn");
}
