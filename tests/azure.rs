//! The Azure store against a real Azurite beyond the shared contract: Shared Key and SAS
//! authorization, and the errors people meet (wrong key, missing permissions, expired SAS, a
//! container the credentials may not create, an unreachable endpoint), without leaking secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use deploy_lock::config::secrets::Secret;
use deploy_lock::store::azure::AzureStore;
use deploy_lock::store::azure::client::Client;
use deploy_lock::store::azure::credential::Credential;
use deploy_lock::store::azure::http::RetryPolicy;
use deploy_lock::store::azure::location::Endpoint;
use deploy_lock::store::azure::signer::{ServiceSas, service_sas};
use deploy_lock::store::azure::{AzureSettings, open};
use deploy_lock::store::{Store, StoreError};

use crate::support::azurite::{ACCOUNT, KEY, azurite};

fn key_store(container: &str) -> AzureStore {
    open(&AzureSettings {
        connection_string: Some(Secret::new(azurite().connection_string())),
        container: container.to_owned(),
        ..AzureSettings::default()
    })
    .expect("open with the account key")
}

fn sas(container: &str, permissions: &str, expiry: chrono::DateTime<Utc>) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    service_sas(
        &key,
        &ServiceSas {
            account: ACCOUNT,
            container,
            permissions,
            start: "",
            expiry: &expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            version: "2025-01-05",
            protocol: "",
        },
    )
}

fn sas_store(container: &str, token: &str) -> AzureStore {
    open(&AzureSettings {
        store_url: Some(format!("{}/{container}?{token}", azurite().blob_endpoint())),
        ..AzureSettings::default()
    })
    .expect("open with a SAS URL")
}

fn no_meta() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn auth_message<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Auth(msg)) => msg,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[test]
fn shared_key_and_container_sas_both_work() {
    let container = azurite().unique_container("sas-ok");
    // A container SAS cannot create its container: the key store does, as an operator would.
    key_store(&container)
        .create("seed", b"x", &no_meta())
        .unwrap();

    let token = sas(
        &container,
        "racwdl",
        Utc::now() + chrono::Duration::hours(1),
    );
    let store = sas_store(&container, &token);
    let w = store
        .create("deployment-lock-prod", b"one", &no_meta())
        .expect("create with SAS");
    let w = store
        .replace("deployment-lock-prod", b"two", &no_meta(), &w.etag)
        .expect("replace with SAS");
    let blob = store.get("deployment-lock-prod").unwrap().blob.unwrap();
    assert_eq!(blob.data, b"two");
    let keys: Vec<String> = store
        .list("deployment-lock-")
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["deployment-lock-prod"]);
    assert!(store.append("audit", b"line\n").is_ok());
    store.delete("deployment-lock-prod", &w.etag).unwrap();
    assert!(!store.describe().contains("sig="), "{}", store.describe());

    // The same blobs are visible through the account key.
    let via_key = key_store(&container);
    assert!(via_key.get("deployment-lock-prod").unwrap().blob.is_none());
    assert!(via_key.get("audit").unwrap().blob.is_some());
}

#[test]
fn read_only_sas_names_the_missing_permission() {
    let container = azurite().unique_container("sas-ro");
    key_store(&container).create("k", b"x", &no_meta()).unwrap();
    let token = sas(&container, "rl", Utc::now() + chrono::Duration::hours(1));
    let store = sas_store(&container, &token);
    assert!(store.get("k").unwrap().blob.is_some(), "reading is allowed");
    let msg = auth_message(store.create("other", b"x", &no_meta()));
    assert!(msg.contains("racwdl"), "{msg}");
    assert!(!msg.contains(&token) && !msg.contains("sig="), "{msg}");
}

#[test]
fn expired_sas_says_to_generate_a_new_one() {
    let container = azurite().unique_container("sas-old");
    key_store(&container).create("k", b"x", &no_meta()).unwrap();
    let token = sas(
        &container,
        "racwdl",
        Utc::now() - chrono::Duration::hours(1),
    );
    let msg = auth_message(sas_store(&container, &token).get("k"));
    assert!(
        msg.contains("expired") && msg.contains("generate-sas"),
        "{msg}"
    );
}

#[test]
fn sas_that_may_not_create_the_container_says_so() {
    let container = azurite().unique_container("sas-nocont");
    let token = sas(
        &container,
        "racwdl",
        Utc::now() + chrono::Duration::hours(1),
    );
    let store = sas_store(&container, &token);
    let msg = auth_message(store.create("k", b"x", &no_meta()));
    assert!(
        msg.contains("does not exist") && msg.contains("az storage container create"),
        "{msg}"
    );
}

#[test]
fn wrong_key_says_the_key_is_wrong_without_printing_it() {
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let store = open(&AzureSettings {
        store_url: Some(format!(
            "{}/{}",
            azurite().blob_endpoint(),
            azurite().unique_container("wrong-key")
        )),
        account_key: Some(Secret::new(wrong.clone())),
        ..AzureSettings::default()
    })
    .unwrap();
    let msg = auth_message(store.get("k"));
    assert!(msg.contains("account key is wrong"), "{msg}");
    assert!(!msg.contains(&wrong), "{msg}");
}

#[test]
fn unreachable_endpoint_says_cannot_access_coordination_storage() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = Endpoint {
        scheme: "http".into(),
        authority: format!("127.0.0.1:{port}"),
        base_path: format!("/{ACCOUNT}"),
        account: ACCOUNT.into(),
    };
    let policy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let client = Client::new(
        endpoint,
        Credential::Sas(Secret::new("sv=2025-01-05&sig=SECRETSIGNATURE")),
        None,
        policy,
    )
    .unwrap();
    let store = AzureStore::new(client, "locks".into());
    match store.get("k") {
        Err(StoreError::Transient(msg)) => {
            assert!(msg.contains("cannot access coordination storage"), "{msg}");
            assert!(msg.contains("firewall"), "{msg}");
            assert!(!msg.contains("SECRETSIGNATURE"), "{msg}");
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_usage_errors_before_anything_is_sent() {
    let failure = open(&AzureSettings {
        connection_string: Some(Secret::new("AccountName=a1b;AccountKey=***notbase64***")),
        ..AzureSettings::default()
    })
    .unwrap_err();
    assert_eq!(failure.code, deploy_lock::exit::ExitCode::Usage);
    let text = failure.to_string();
    assert!(
        text.contains("base64") && !text.contains("notbase64"),
        "{text}"
    );

    let failure = open(&AzureSettings {
        connection_string: Some(Secret::new("UseDevelopmentStorage=true")),
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..AzureSettings::default()
    })
    .unwrap_err();
    assert!(failure.to_string().contains("CA file"), "{failure}");
}

#[test]
fn https_with_an_extra_ca_file() {
    let dir = std::env::temp_dir().join(format!("deploy-lock-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert, key, csr) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("req.csr"),
    );
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A private CA and a server certificate it signed, as a corporate proxy or emulator has.
    let openssl = |args: &[&std::ffi::OsStr]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let o = |s: &'static str| std::ffi::OsStr::new(s);
    openssl(&[
        o("req"),
        o("-x509"),
        o("-newkey"),
        o("rsa:2048"),
        o("-nodes"),
        o("-days"),
        o("1"),
        o("-subj"),
        o("/CN=deploy-lock test CA"),
        o("-keyout"),
        ca_key.as_os_str(),
        o("-out"),
        ca.as_os_str(),
    ]);
    openssl(&[
        o("req"),
        o("-newkey"),
        o("rsa:2048"),
        o("-nodes"),
        o("-subj"),
        o("/CN=127.0.0.1"),
        o("-keyout"),
        key.as_os_str(),
        o("-out"),
        csr.as_os_str(),
    ]);
    openssl(&[
        o("x509"),
        o("-req"),
        o("-in"),
        csr.as_os_str(),
        o("-CA"),
        ca.as_os_str(),
        o("-CAkey"),
        ca_key.as_os_str(),
        o("-CAcreateserial"),
        o("-days"),
        o("1"),
        o("-extfile"),
        ext.as_os_str(),
        o("-out"),
        cert.as_os_str(),
    ]);
    let emulator = crate::support::azurite::azurite_https(&cert, &key);
    let url = format!(
        "https://127.0.0.1:{}/{ACCOUNT}/{}",
        emulator.port(),
        emulator.unique_container("https")
    );
    let settings = AzureSettings {
        store_url: Some(url),
        account_key: Some(Secret::new(KEY)),
        ..AzureSettings::default()
    };

    // Without the CA the certificate cannot verify, and the message points at --ca-file.
    let untrusted = open(&settings).unwrap();
    match untrusted.get("k") {
        Err(StoreError::BadRequest(msg)) => assert!(msg.contains("--ca-file"), "{msg}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    let trusted = open(&AzureSettings {
        ca_file: Some(ca.clone()),
        ..settings
    })
    .unwrap();
    trusted.create("k", b"over tls", &no_meta()).unwrap();
    assert_eq!(trusted.get("k").unwrap().blob.unwrap().data, b"over tls");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listings_follow_every_page() {
    let az = azurite();
    let settings = AzureSettings {
        connection_string: Some(Secret::new(az.connection_string())),
        container: az.unique_container("pages"),
        ..AzureSettings::default()
    };
    let store = open(&settings)
        .expect("open the Azurite store")
        .with_page_size(2);
    let meta = BTreeMap::new();
    for i in 0..7 {
        store
            .create(&format!("deployment-lock-env{i}"), b"x", &meta)
            .expect("create");
    }
    store.create("other-key", b"x", &meta).expect("create");
    let keys: Vec<String> = store
        .list("deployment-lock-")
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.key)
        .collect();
    let expected: Vec<String> = (0..7).map(|i| format!("deployment-lock-env{i}")).collect();
    assert_eq!(keys, expected);
}
