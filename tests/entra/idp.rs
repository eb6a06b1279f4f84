//! A local HTTP server that plays every identity endpoint the Entra ID tests need: the GitHub ID
//! token endpoint, Entra ID's token endpoint, the Azure DevOps OIDC endpoint, the managed identity
//! endpoints (and, for one test, a storage endpoint that refuses a token without the data role).

use std::collections::BTreeMap;
use std::io::{BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::azurite::ACCOUNT;
use crate::support::receiver::{Received, read_request};

use super::{
    APP_SERVICE_HEADER, AZDO_ACCESS_TOKEN, CLIENT, CONNECTION, GH_REQUEST_TOKEN, GH_SUBJECT,
    TENANT, jwt, now, storage_token,
};

/// One request a fake endpoint received.
pub(super) type Seen = Received;

#[derive(Default)]
pub(super) struct IdpState {
    pub(super) seen: Vec<Seen>,
    /// ID tokens handed out, which the token endpoint accepts as assertions.
    pub(super) id_tokens: Vec<String>,
    /// Every token handed out, which must never be printed.
    pub(super) issued: Vec<String>,
    pub(super) lifetime: i64,
    pub(super) audience: String,
    pub(super) subject_mismatch: bool,
}

/// A local HTTP server playing every identity endpoint (and, for one test, a storage endpoint).
#[derive(Clone)]
pub(super) struct Idp {
    pub(super) port: u16,
    pub(super) state: Arc<Mutex<IdpState>>,
}

impl Idp {
    pub(super) fn start(lifetime: i64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let idp = Self {
            port,
            state: Arc::new(Mutex::new(IdpState {
                lifetime,
                audience: "https://storage.azure.com".into(),
                ..IdpState::default()
            })),
        };
        let server = idp.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = server.serve(stream);
            }
        });
        idp
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn seen(&self, path_prefix: &str) -> Vec<Seen> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|s| s.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub(super) fn secrets(&self) -> Vec<String> {
        let mut out = self.state.lock().unwrap().issued.clone();
        out.extend([GH_REQUEST_TOKEN, AZDO_ACCESS_TOKEN, APP_SERVICE_HEADER].map(str::to_owned));
        out
    }

    pub(super) fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let Some(seen) = read_request(&mut reader)? else {
            return Ok(());
        };
        let (status, extra, answer) = self.answer(&seen);
        self.state.lock().unwrap().seen.push(seen);
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nDate: {date}\r\nConnection: close\r\n{extra}\r\n{answer}",
            answer.len()
        )?;
        out.flush()
    }

    pub(super) fn mint_id_token(&self, subject: &str, issuer: &str) -> String {
        let t = now();
        let token = jwt(&json!({
            "sub": subject, "iss": issuer, "aud": "api://AzureADTokenExchange",
            "iat": t, "nbf": t, "exp": t + 300, "jti": storage_token(1, "x"),
        }));
        let mut state = self.state.lock().unwrap();
        state.id_tokens.push(token.clone());
        state.issued.push(token.clone());
        token
    }

    pub(super) fn mint_access_token(&self) -> (String, i64) {
        let mut state = self.state.lock().unwrap();
        let token = storage_token(state.lifetime, &state.audience.clone());
        state.issued.push(token.clone());
        (token, state.lifetime)
    }

    pub(super) fn answer(&self, req: &Seen) -> (u16, String, String) {
        let header = |n: &str| req.headers.get(n).map(String::as_str).unwrap_or_default();
        let json_ok = |v: Value| {
            (
                200,
                "Content-Type: application/json\r\n".to_owned(),
                v.to_string(),
            )
        };
        let refuse = |status: u16, why: &str| {
            (
                status,
                "Content-Type: application/json\r\n".to_owned(),
                json!({"error": "test_refused", "error_description": why}).to_string(),
            )
        };
        let resource_ok = req
            .path
            .contains("resource=https%3A%2F%2Fstorage.azure.com%2F");
        if req.path.starts_with("/gh/token") {
            if header("authorization") != format!("Bearer {GH_REQUEST_TOKEN}")
                || !req
                    .path
                    .contains("audience=api%3A%2F%2FAzureADTokenExchange")
                || req.method != "GET"
            {
                return refuse(401, "bad GitHub ID token request");
            }
            return json_ok(json!({
                "count": 1,
                "value": self.mint_id_token(GH_SUBJECT, "https://token.actions.githubusercontent.com"),
            }));
        }
        if req.path.starts_with("/azdo/oidc") {
            if header("authorization") != format!("Bearer {AZDO_ACCESS_TOKEN}")
                || req.method != "POST"
                || !req
                    .path
                    .contains(&format!("api-version=7.1&serviceConnectionId={CONNECTION}"))
            {
                return refuse(401, "bad Azure DevOps OIDC request");
            }
            return json_ok(json!({
                "oidcToken": self.mint_id_token(
                    &format!("sc://org/project/{CONNECTION}"),
                    "https://vstoken.dev.azure.com/00000000-0000-0000-0000-000000000000",
                ),
            }));
        }
        if req.path == format!("/{TENANT}/oauth2/v2.0/token") {
            let form: BTreeMap<String, String> = req
                .body
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(n, v)| (n.to_owned(), percent_decode(v)))
                .collect();
            let known = self
                .state
                .lock()
                .unwrap()
                .id_tokens
                .contains(&form.get("client_assertion").cloned().unwrap_or_default());
            let expected = [
                ("client_id", CLIENT),
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("scope", "https://storage.azure.com/.default"),
            ];
            for (name, value) in expected {
                if form.get(name).map(String::as_str) != Some(value) {
                    return refuse(400, &format!("TEST: form field {name} is wrong"));
                }
            }
            if !known
                || form.len() != 5
                || req.method != "POST"
                || header("content-type") != "application/x-www-form-urlencoded"
            {
                return refuse(400, "TEST: bad assertion or form");
            }
            if self.state.lock().unwrap().subject_mismatch {
                return (
                    400,
                    "Content-Type: application/json\r\n".to_owned(),
                    json!({
                        "error": "invalid_client",
                        "error_description": format!("AADSTS700213: No matching federated identity record found for presented assertion subject '{GH_SUBJECT}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.\r\nTrace ID: 0\r\nTimestamp: 2026"),
                        "error_codes": [700_213],
                    })
                    .to_string(),
                );
            }
            let (token, lifetime) = self.mint_access_token();
            return json_ok(json!({
                "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": token,
            }));
        }
        if req.path.starts_with("/metadata/identity/oauth2/token") {
            if header("metadata") != "true"
                || !resource_ok
                || !req.path.contains("api-version=2018-02-01")
            {
                return refuse(400, "bad IMDS request");
            }
            let (token, lifetime) = self.mint_access_token();
            return json_ok(json!({
                "access_token": token, "expires_in": lifetime.to_string(),
                "expires_on": (now() + lifetime).to_string(), "resource": "https://storage.azure.com/",
                "token_type": "Bearer",
            }));
        }
        if req.path.starts_with("/appservice") {
            if header("x-identity-header") != APP_SERVICE_HEADER
                || !resource_ok
                || !req.path.contains("api-version=2019-08-01")
            {
                return refuse(400, "bad App Service identity request");
            }
            let (token, lifetime) = self.mint_access_token();
            return json_ok(json!({
                "access_token": token, "expires_on": (now() + lifetime).to_string(),
                "resource": "https://storage.azure.com/", "token_type": "Bearer",
            }));
        }
        if req.path.starts_with(&format!("/{ACCOUNT}/")) {
            return (
                403,
                "x-ms-error-code: AuthorizationPermissionMismatch\r\nContent-Type: application/xml\r\n"
                    .to_owned(),
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.\nRequestId:1</Message></Error>".to_owned(),
            );
        }
        refuse(404, "no such test endpoint")
    }
}

pub(super) fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
