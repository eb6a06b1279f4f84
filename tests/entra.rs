//! Entra ID sign-in end to end: the real binary against Azurite with `--oauth basic` over HTTPS
//! (a certificate this harness makes and the binary trusts through --ca-file), and local HTTP
//! servers that play the GitHub ID token endpoint, Entra ID's token endpoint, the Azure DevOps
//! OIDC endpoint and the managed identity endpoints. Nothing leaves this machine.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::azurite::{ACCOUNT, Azurite, azurite_oauth};
use crate::support::{Cmd, Out, TempDir};

mod idp;

use idp::Idp;

const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const GH_REQUEST_TOKEN: &str = "gh-request-token-SECRET";
const AZDO_ACCESS_TOKEN: &str = "azdo-system-token-SECRET";
const APP_SERVICE_HEADER: &str = "app-service-header-SECRET";
const CONNECTION: &str = "c0ffee00-1234-5678-9abc-def012345678";
const GH_SUBJECT: &str = "repo:octo/app:ref:refs/heads/main";

/// The CA and server certificate, made once per test process and kept while Azurite runs.
struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("entra-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tls dir");
        let p = |n: &str| dir.join(n);
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("run openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=deploy-lock entra test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        Tls {
            ca: p("ca.pem"),
            cert: p("cert.pem"),
            key: p("key.pem"),
        }
    })
}

fn emulator() -> &'static Azurite {
    let t = tls();
    azurite_oauth(&t.cert, &t.key)
}

fn store_url(hint: &str) -> String {
    format!(
        "https://127.0.0.1:{}/{ACCOUNT}/{}",
        emulator().port(),
        emulator().unique_container(hint)
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A storage access token as Entra ID would issue it (unsigned: Azurite checks only the claims).
fn storage_token(lifetime: i64, audience: &str) -> String {
    let t = now();
    // A random claim keeps every token distinct, as real ones are.
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).unwrap();
    jwt(&json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": t - 5,
        "nbf": t - 5,
        "exp": t + lifetime,
        "appid": CLIENT,
        "tid": TENANT,
        "uti": URL_SAFE_NO_PAD.encode(nonce),
    }))
}

/// The binary pointed at the OAuth emulator, with --debug so the test also proves that debug
/// output never shows a token.
fn cmd(url: &str) -> Cmd {
    Cmd::new()
        .env("DEPLOY_LOCK_STORE", url)
        .env("DEPLOY_LOCK_CA_FILE", &tls().ca)
        .env("DEPLOY_LOCK_DEBUG", "true")
        // Never the real instance metadata service.
        .env("DEPLOY_LOCK_IMDS_ENDPOINT", "http://127.0.0.1:9")
}

fn github_env(c: Cmd, idp: &Idp) -> Cmd {
    c.env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_TENANT_ID", TENANT)
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            idp.url("/gh/token?api-version=2.0"),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", GH_REQUEST_TOKEN)
        .env("AZURE_AUTHORITY_HOST", idp.url(""))
}

/// No secret in the output, except where a line asks the platform to mask it.
#[track_caller]
fn no_secrets(out: &Out, secrets: &[String]) {
    for line in out.all().lines() {
        if line.starts_with("::add-mask::") || line.starts_with("##vso[task.setsecret]") {
            continue;
        }
        for s in secrets {
            assert!(!line.contains(s.as_str()), "a secret was printed: {line}");
        }
    }
}

#[test]
fn github_oidc_acquire_check_release() {
    let idp = Idp::start(3600);
    let url = store_url("gh-oidc");
    // One build id: outside CI, separate processes are one holder only when they say so.
    let run = |args: &[&str]| {
        github_env(cmd(&url), &idp)
            .env("DEPLOY_LOCK_BUILD_ID", "1")
            .args(["--auth", "github-oidc"])
            .args(args)
            .run()
    };
    let out = run(&["acquire", "github", "sandbox"]);
    out.code(0);
    no_secrets(&out, &idp.secrets());
    run(&["check", "github", "sandbox"]).code(0);
    let out = run(&["release", "github", "sandbox"]);
    out.code(0).contains("Released");
    no_secrets(&out, &idp.secrets());

    let id_requests = idp.seen("/gh/token");
    let exchanges = idp.seen(&format!("/{TENANT}/"));
    assert!(id_requests.len() >= 3, "{id_requests:?}");
    assert_eq!(id_requests.len(), exchanges.len());
    let form = &exchanges[0].body;
    for field in [
        format!("client_id={CLIENT}"),
        "grant_type=client_credentials".to_owned(),
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            .to_owned(),
        "scope=https%3A%2F%2Fstorage.azure.com%2F.default".to_owned(),
        "client_assertion=".to_owned(),
    ] {
        assert!(form.contains(&field), "{field} in {form}");
    }
}

#[test]
fn auto_on_github_says_what_it_used_and_masks_tokens() {
    let idp = Idp::start(3600);
    let dir = TempDir::new("gh-auto");
    let out = github_env(cmd(&store_url("gh-auto")), &idp)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", "42")
        .env("GITHUB_OUTPUT", dir.join("output"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary"))
        .args(["acquire", "sandbox"])
        .run();
    out.code(0)
        .contains("signed in to Azure Storage with GitHub OIDC");
    let secrets = idp.secrets();
    let access = secrets
        .iter()
        .find(|s| storage_claims(s).is_some())
        .expect("an access token was issued");
    assert!(
        out.stdout.contains(&format!("::add-mask::{access}")),
        "{}",
        out.stdout
    );
    no_secrets(&out, &secrets);
}

fn storage_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (v["aud"] == "https://storage.azure.com").then_some(v)
}

#[test]
fn azure_devops_oidc_through_the_task_and_the_cli() {
    let idp = Idp::start(3600);
    let url = store_url("azdo-oidc");
    let upper = CONNECTION.to_ascii_uppercase();
    let azdo = |c: Cmd| {
        c.env("TF_BUILD", "True")
            .env("BUILD_BUILDID", "77")
            .env("SYSTEM_OIDCREQUESTURI", idp.url("/azdo/oidc"))
            .env("SYSTEM_ACCESSTOKEN", AZDO_ACCESS_TOKEN)
            .env(
                &format!("ENDPOINT_AUTH_PARAMETER_{upper}_SERVICEPRINCIPALID"),
                CLIENT,
            )
            .env(&format!("ENDPOINT_AUTH_PARAMETER_{upper}_TENANTID"), TENANT)
            .env(
                &format!("ENDPOINT_AUTH_SCHEME_{upper}"),
                "WorkloadIdentityFederation",
            )
            .env("AZURE_AUTHORITY_HOST", idp.url(""))
    };
    // The task: its connectedService input carries the service connection's id.
    let out = azdo(cmd(&url))
        .env("INPUT_ENVIRONMENT", "sandbox")
        .env("INPUT_SERVICECONNECTION", CONNECTION)
        .env("INPUT_AUTH", "azure-devops-oidc")
        .env("INPUT_HEARTBEAT", "false")
        .args(["step", "main"])
        .run();
    out.code(0)
        .contains("##vso[task.complete result=Succeeded")
        .contains("##vso[task.setsecret]");
    no_secrets(&out, &idp.secrets());

    // A script step: the connection id from the variables AzureCLI@2 sets, `auto` picks it.
    let out = azdo(cmd(&url))
        .env("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", CONNECTION)
        .args(["release", "azdevops", "sandbox"])
        .run();
    out.code(0)
        .contains("Released")
        .contains("Azure DevOps service connection");
    no_secrets(&out, &idp.secrets());
    assert_eq!(idp.seen("/azdo/oidc").len(), 2);
    assert_eq!(idp.seen(&format!("/{TENANT}/")).len(), 2);
}

#[test]
fn managed_identity_vm_and_app_service() {
    let idp = Idp::start(3600);
    let url = store_url("managed");
    let vm = |c: Cmd| c.env("DEPLOY_LOCK_IMDS_ENDPOINT", idp.url(""));
    vm(cmd(&url))
        .args(["--auth", "managed-identity", "acquire", "local", "sandbox"])
        .run()
        .code(0);
    vm(cmd(&url))
        .args(["--auth", "managed-identity", "release", "local", "sandbox"])
        .run()
        .code(0);
    assert_eq!(idp.seen("/metadata/identity/oauth2/token").len(), 2);

    // App Service style, picked by `auto` from IDENTITY_ENDPOINT and IDENTITY_HEADER.
    let app = |c: Cmd| {
        c.env("IDENTITY_ENDPOINT", idp.url("/appservice"))
            .env("IDENTITY_HEADER", APP_SERVICE_HEADER)
    };
    let out = app(cmd(&url)).args(["acquire", "local", "sandbox"]).run();
    out.code(0).contains("managed identity (IDENTITY_ENDPOINT)");
    no_secrets(&out, &idp.secrets());
    app(cmd(&url))
        .args(["release", "local", "sandbox"])
        .run()
        .code(0);
    assert_eq!(idp.seen("/appservice").len(), 2);
}

/// A fake `az` that logs its arguments and answers from a file, or says it is not signed in.
fn fake_az(dir: &TempDir, token: &str) -> String {
    let answer = dir.join("answer.json");
    let expires = chrono::Local::now() + chrono::Duration::hours(1);
    std::fs::write(
        &answer,
        json!({
            "accessToken": token,
            "expiresOn": expires.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "expires_on": expires.timestamp(),
            "subscription": "sub", "tenant": TENANT, "tokenType": "Bearer",
        })
        .to_string(),
    )
    .unwrap();
    let script = dir.join("az");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{log}'\nif [ -n \"$AZ_NOT_SIGNED_IN\" ]; then\n  echo \"ERROR: Please run 'az login' to setup account.\" >&2\n  exit 1\nfi\ncat '{answer}'\n",
            log = dir.join("az.log").display(),
            answer = answer.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[cfg(unix)]
#[test]
fn azure_cli_signed_in_and_not() {
    let dir = TempDir::new("fake-az");
    let token = storage_token(3600, "https://storage.azure.com");
    let path = fake_az(&dir, &token);
    let url = store_url("az-cli");
    let run = |args: &[&str]| cmd(&url).env("PATH", &path).args(args).run();
    let out = run(&["--auth", "azure-cli", "acquire", "local", "sandbox"]);
    out.code(0);
    no_secrets(&out, std::slice::from_ref(&token));
    // `auto` finds the signed-in CLI after finding no secret.
    let out = run(&["release", "local", "sandbox"]);
    out.code(0).contains("Azure CLI");
    let log = std::fs::read_to_string(dir.join("az.log")).unwrap();
    assert!(
        log.lines()
            .all(|l| l
                == "account get-access-token --resource https://storage.azure.com/ --output json"),
        "{log}"
    );

    let out = cmd(&url)
        .env("PATH", &path)
        .env("AZ_NOT_SIGNED_IN", "1")
        .args(["--auth", "azure-cli", "check", "local", "sandbox"])
        .run();
    out.code(1).contains("run `az login`");
}

#[test]
fn static_token_works_and_expired_or_wrong_audience_tokens_are_explained() {
    let url = store_url("static");
    let with = |token: &str| {
        cmd(&url)
            .env("AZURE_STORAGE_TOKEN", token)
            .args(["check", "local", "sandbox"])
            .run()
    };
    let good = storage_token(600, "https://storage.azure.com");
    let out = with(&good);
    out.code(0);
    no_secrets(&out, std::slice::from_ref(&good));

    let t = now();
    let expired = jwt(&json!({
        "aud": "https://storage.azure.com", "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": t - 7200, "nbf": t - 7200, "exp": t - 3600,
    }));
    let out = with(&expired);
    out.code(1)
        .contains("AZURE_STORAGE_TOKEN has expired")
        .contains("az account get-access-token");
    no_secrets(&out, std::slice::from_ref(&expired));

    let vault = storage_token(600, "https://vault.azure.net");
    let out = with(&vault);
    out.code(1)
        .contains("not meant for Azure Storage")
        .contains("https://storage.azure.com/");
    no_secrets(&out, std::slice::from_ref(&vault));
}

#[test]
fn tokens_are_refreshed_during_a_long_wait() {
    // Tokens that live 8 s, refreshed at half-life, during a wait of about 14 s.
    let idp = Idp::start(8);
    let url = store_url("refresh");
    let holder = storage_token(600, "https://storage.azure.com");
    let as_holder = |args: &[&str]| {
        cmd(&url)
            .env("AZURE_STORAGE_TOKEN", &holder)
            .env("DEPLOY_LOCK_BUILD_ID", "holder")
            .args(args)
            .run()
    };
    as_holder(&["acquire", "local", "sandbox"]).code(0);
    let started = Instant::now();
    let waiter = github_env(cmd(&url), &idp)
        .env("DEPLOY_LOCK_BUILD_ID", "waiter")
        .env("DEPLOY_LOCK_POLL_SECONDS", "0.5")
        .args([
            "--auth",
            "github-oidc",
            "acquire",
            "local",
            "sandbox",
            "--wait",
            "1",
        ])
        .spawn();
    std::thread::sleep(Duration::from_secs(14));
    as_holder(&["release", "local", "sandbox"]).code(0);
    let out = Out::from(waiter.wait_with_output().expect("waiter"));
    out.code(0);
    assert!(started.elapsed() >= Duration::from_secs(14));
    no_secrets(&out, &idp.secrets());
    let exchanges = idp.seen(&format!("/{TENANT}/")).len();
    // One token at the start, then one about every 4 s.
    assert!(exchanges >= 3, "only {exchanges} token requests");
    // Each exchange used a new ID token.
    assert_eq!(idp.seen("/gh/token").len(), exchanges);
    assert!(
        !out.stderr.contains("AuthenticationFailed"),
        "{}",
        out.stderr
    );
}

#[test]
fn federated_subject_mismatch_quotes_the_subject() {
    let idp = Idp::start(3600);
    idp.state.lock().unwrap().subject_mismatch = true;
    let out = github_env(cmd(&store_url("mismatch")), &idp)
        .args(["--auth", "github-oidc", "acquire", "github", "sandbox"])
        .run();
    out.code(1)
        .contains(&format!("subject `{GH_SUBJECT}`"))
        .contains("Federated credentials");
    no_secrets(&out, &idp.secrets());
}

#[test]
fn github_oidc_without_the_id_token_permission_says_so() {
    cmd(&store_url("no-perm"))
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_TENANT_ID", TENANT)
        .args(["--auth", "github-oidc", "check", "sandbox"])
        .run()
        .code(2)
        .contains("id-token: write");
}

#[test]
fn a_token_without_the_data_role_names_the_role_to_assign() {
    let idp = Idp::start(3600);
    let token = storage_token(600, "https://storage.azure.com");
    // The fake storage endpoint answers every request as Azure does without a data role.
    let out = Cmd::new()
        .env("DEPLOY_LOCK_STORE", idp.url(&format!("/{ACCOUNT}/locks")))
        .env("AZURE_STORAGE_TOKEN", &token)
        .args(["--auth", "token", "check", "sandbox"])
        .run();
    out.code(1)
        .contains("Storage Blob Data Contributor")
        .contains("az role assignment create");
    no_secrets(&out, std::slice::from_ref(&token));
    let seen = idp.seen(&format!("/{ACCOUNT}/"));
    assert_eq!(
        seen[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(
        seen[0]
            .headers
            .get("x-ms-version")
            .is_some_and(|v| v.as_str() >= "2017-11-09")
    );
}
