//! The token endpoints: the CI platform's ID token (GitHub Actions, Azure DevOps), its exchange
//! at Entra ID for an access token, and the managed identity endpoints. Every request goes
//! through the store's one HTTP layer; failures are explained with the fix.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::settings::{EXCHANGE_AUDIENCE, STORAGE_RESOURCE, STORAGE_SCOPE};
use crate::config::secrets::Secret;
use crate::store::azure::http::{Http, Outgoing, Response, RetryPolicy};
use crate::store::azure::signer::encode_query;

/// Largest token-endpoint answer read.
const MAX_BODY: u64 = 1024 * 1024;
/// How long `auto` waits for the instance metadata service before deciding there is none.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A federated identity token (the assertion) and where it comes from.
#[derive(Debug, Clone)]
pub enum Assertion {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    GitHub {
        request_url: String,
        request_token: Secret,
    },
    /// `SYSTEM_OIDCREQUESTURI` with `System.AccessToken`, for one service connection.
    AzureDevOps {
        request_uri: String,
        system_access_token: Secret,
        connection_id: String,
    },
}

/// An access token as fetched, and how long it is valid when the answer says.
pub struct Fetched {
    pub access_token: Secret,
    pub lifetime: Option<Duration>,
}

/// The retry policy of token requests: the store's, with the 410 the instance metadata service
/// answers while it is being updated.
fn token_policy() -> RetryPolicy {
    RetryPolicy {
        retry_gone: true,
        ..RetryPolicy::default()
    }
}

/// `url` with `params` appended to its query.
fn with_query(url: &str, params: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{params}")
}

/// One token request through the store's HTTP layer; a transport failure is told in words.
fn call(
    http: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    policy: &RetryPolicy,
) -> Result<Response, String> {
    let outgoing = Outgoing {
        method,
        url,
        headers,
        body,
        max_body: MAX_BODY,
    };
    http.send(&outgoing, policy).map_err(|e| e.message)
}

/// How a CI platform hands out its ID token: the request, authorized with `bearer`, and the
/// answer's field that holds the token.
struct IdTokenRequest<'a> {
    method: &'static str,
    url: String,
    bearer: &'a Secret,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    field: &'static str,
}

impl Assertion {
    fn request(&self) -> IdTokenRequest<'_> {
        match self {
            Self::GitHub {
                request_url,
                request_token,
            } => IdTokenRequest {
                method: "GET",
                url: with_query(
                    request_url,
                    &format!("audience={}", encode_query(EXCHANGE_AUDIENCE)),
                ),
                bearer: request_token,
                headers: &[("Accept", "application/json; api-version=2.0")],
                body: &[],
                field: "value",
            },
            Self::AzureDevOps {
                request_uri,
                system_access_token,
                connection_id,
            } => IdTokenRequest {
                method: "POST",
                url: with_query(
                    request_uri,
                    &format!(
                        "api-version=7.1&serviceConnectionId={}",
                        encode_query(connection_id)
                    ),
                ),
                bearer: system_access_token,
                headers: &[
                    ("Content-Type", "application/json"),
                    // Without it a bad token is redirected to a sign-in page.
                    ("X-TFS-FedAuthRedirect", "Suppress"),
                ],
                body: b"{}",
                field: "oidcToken",
            },
        }
    }

    /// What to say when the platform answers without a token.
    fn refused(&self, resp: &Response) -> String {
        match self {
            Self::GitHub { .. } => format!(
                "GitHub refused the ID token request ({}); the job's \
                 ACTIONS_ID_TOKEN_REQUEST_TOKEN is not valid: run deploy-lock in the same \
                 job, with `permissions: id-token: write`",
                status_line(resp)
            ),
            Self::AzureDevOps { connection_id, .. } if matches!(resp.status, 401 | 403) => {
                format!(
                    "Azure DevOps refused the OIDC token request ({}); System.AccessToken is \
                     not valid for this pipeline, or the pipeline may not use service \
                     connection {connection_id}: authorize the pipeline to use it",
                    status_line(resp)
                )
            }
            Self::AzureDevOps { connection_id, .. } => format!(
                "Azure DevOps could not issue an OIDC token for service connection \
                 {connection_id} ({}: {}); check that the connection exists and uses \
                 workload identity federation",
                status_line(resp),
                message(resp)
            ),
        }
    }

    /// What to say when a 200 answer holds no token.
    fn empty(&self) -> String {
        match self {
            Self::GitHub { .. } => "GitHub's ID token answer has no `value`".to_owned(),
            Self::AzureDevOps { .. } => {
                "Azure DevOps answered the OIDC token request without `oidcToken`".to_owned()
            }
        }
    }
}

/// The federated ID token from the CI platform.
pub fn id_token(http: &Http, assertion: &Assertion) -> Result<Secret, String> {
    let request = assertion.request();
    let bearer = format!("Bearer {}", request.bearer.expose());
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(request.headers);
    let resp = call(
        http,
        request.method,
        &request.url,
        &headers,
        request.body,
        &token_policy(),
    )?;
    if resp.status != 200 {
        return Err(assertion.refused(&resp));
    }
    json_string(&resp, request.field)
        .map(Secret::new)
        .ok_or_else(|| assertion.empty())
}

/// The client-credentials exchange of an ID token for a storage access token.
pub fn exchange(
    http: &Http,
    id_token: &Secret,
    assertion: &Assertion,
    client_id: &str,
    tenant_id: &str,
    authority: &str,
) -> Result<Fetched, String> {
    let url = format!("{authority}/{}/oauth2/v2.0/token", encode_query(tenant_id));
    let form = [
        ("client_id", client_id),
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", id_token.expose()),
        ("scope", STORAGE_SCOPE),
    ]
    .iter()
    .map(|(n, v)| format!("{n}={}", encode_query(v)))
    .collect::<Vec<_>>()
    .join("&");
    let resp = call(
        http,
        "POST",
        &url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
        &token_policy(),
    )?;
    if resp.status == 200
        && let Some(access_token) = json_string(&resp, "access_token")
    {
        return Ok(Fetched {
            lifetime: json_seconds(&resp, "expires_in").or_else(|| jwt_lifetime(&access_token)),
            access_token: Secret::new(access_token),
        });
    }
    Err(exchange_error(
        &resp, id_token, assertion, client_id, tenant_id,
    ))
}

/// An App Service style managed identity (`IDENTITY_ENDPOINT` with `IDENTITY_HEADER`).
pub fn app_service(
    http: &Http,
    endpoint: &str,
    header: &Secret,
    client_id: Option<&str>,
) -> Result<Fetched, String> {
    let mut url = with_query(
        endpoint,
        &format!(
            "api-version=2019-08-01&resource={}",
            encode_query(STORAGE_RESOURCE)
        ),
    );
    if let Some(id) = client_id {
        url.push_str(&format!("&client_id={}", encode_query(id)));
    }
    let resp = call(
        http,
        "GET",
        &url,
        &[("X-IDENTITY-HEADER", header.expose())],
        &[],
        &token_policy(),
    )?;
    managed_answer(&resp, "the managed identity endpoint (IDENTITY_ENDPOINT)")
}

/// The VM/VMSS instance metadata service; a `probe` (by `auto`) is tried once, briefly.
pub fn imds(
    http: &Http,
    endpoint: &str,
    client_id: Option<&str>,
    probe: bool,
) -> Result<Fetched, String> {
    let mut url = format!(
        "{endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
        encode_query(STORAGE_RESOURCE)
    );
    if let Some(id) = client_id {
        url.push_str(&format!("&client_id={}", encode_query(id)));
    }
    let policy = if probe {
        RetryPolicy {
            attempts: 1,
            connect_timeout: IMDS_PROBE_TIMEOUT,
            request_timeout: IMDS_PROBE_TIMEOUT * 3,
            ..token_policy()
        }
    } else {
        token_policy()
    };
    let resp = call(http, "GET", &url, &[("Metadata", "true")], &[], &policy).map_err(|e| {
        format!(
            "the VM's instance metadata service did not answer ({e}); managed identity works \
             only on an Azure VM or scale set (for App Service, IDENTITY_ENDPOINT is set)"
        )
    })?;
    managed_answer(&resp, "the instance metadata service")
}

fn json(resp: &Response) -> Option<Value> {
    serde_json::from_slice(&resp.body).ok()
}

fn status_line(resp: &Response) -> String {
    format!("HTTP {}", resp.status)
}

/// The endpoint's own words, first line, from the usual error fields. Token endpoints put no
/// secret in their errors.
fn message(resp: &Response) -> String {
    let json = json(resp).unwrap_or(Value::Null);
    let text = ["error_description", "message", "Message", "error"]
        .iter()
        .find_map(|k| match &json[*k] {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Object(o) => o.get("message").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    crate::ci::escape_controls(text.lines().next().unwrap_or_default().trim())
}

fn json_string(resp: &Response, key: &str) -> Option<String> {
    json(resp)?
        .get(key)?
        .as_str()
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// A number of seconds sent as a number or a string (managed identity endpoints send strings).
fn json_seconds(resp: &Response, key: &str) -> Option<Duration> {
    let json = json(resp)?;
    let value = json.get(key)?;
    let secs = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(Duration::from_secs(secs))
}

/// Seconds from now until a unix time.
pub fn until_unix(secs: u64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Duration::from_secs(secs).checked_sub(now)
}

fn managed_answer(resp: &Response, what: &str) -> Result<Fetched, String> {
    if resp.status == 200
        && let Some(access_token) = json_string(resp, "access_token")
    {
        let lifetime = json_seconds(resp, "expires_in")
            .or_else(|| json_seconds(resp, "expires_on").and_then(|d| until_unix(d.as_secs())))
            .or_else(|| jwt_lifetime(&access_token));
        return Ok(Fetched {
            access_token: Secret::new(access_token),
            lifetime,
        });
    }
    let message = message(resp);
    let hint = if message.to_ascii_lowercase().contains("identity not found") || resp.status == 400
    {
        "; assign a managed identity to this machine (a user-assigned one needs its client id: \
         client-id input or AZURE_CLIENT_ID) and give it the Storage Blob Data Contributor role"
    } else {
        ""
    };
    Err(format!(
        "{what} gave no token ({}: {message}){hint}",
        status_line(resp)
    ))
}

/// Explains a failed exchange, naming the fix. AADSTS codes: 700213/70021 no federated
/// credential matches the subject, 700211 the issuer, 700212 the audience, 700016 unknown app,
/// 90002/900023 unknown tenant, 700024 the ID token expired.
fn exchange_error(
    resp: &Response,
    id_token: &Secret,
    assertion: &Assertion,
    client_id: &str,
    tenant_id: &str,
) -> String {
    let json = json(resp).unwrap_or(Value::Null);
    let mut codes: Vec<u64> = json["error_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let description = message(resp);
    if codes.is_empty() {
        codes.extend(
            description
                .split("AADSTS")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|c| c.trim().parse::<u64>().ok()),
        );
    }
    let claims = jwt_claims(id_token.expose()).unwrap_or(Value::Null);
    let claim = |k: &str| claims[k].as_str().unwrap_or("(unknown)").to_owned();
    let setup = match assertion {
        Assertion::GitHub { .. } => {
            "App registrations → the app → Certificates & secrets → Federated credentials \
             (see docs/entra-id.md)"
        }
        Assertion::AzureDevOps { .. } => {
            "the service connection's app → Federated credentials (Azure DevOps shows the \
             expected subject on the service connection's page)"
        }
    };
    let head = format!("Entra ID refused the sign-in of app {client_id} in tenant {tenant_id}");
    let has = |c: u64| codes.contains(&c);
    if has(700_213) || has(70_021) || has(70_025) {
        format!(
            "{head}: no federated credential matches the token's subject `{}` (issuer `{}`, \
             audience `{}`). Add a federated credential with exactly this subject in Entra ID: \
             {setup}. ({description})",
            claim("sub"),
            claim("iss"),
            claims["aud"]
                .as_str()
                .map_or_else(|| claims["aud"].to_string(), str::to_owned)
        )
    } else if has(700_211) {
        format!(
            "{head}: no federated credential has the token's issuer `{}`; set the federated \
             credential's issuer to exactly this. ({description})",
            claim("iss")
        )
    } else if has(700_212) {
        format!(
            "{head}: the federated credential's audience must be `{EXCHANGE_AUDIENCE}`. \
             ({description})"
        )
    } else if has(700_016) {
        format!(
            "{head}: no app with client id {client_id} exists in tenant {tenant_id}; check the \
             client-id and tenant-id inputs (AZURE_CLIENT_ID, AZURE_TENANT_ID). ({description})"
        )
    } else if has(90_002) || has(900_023) || has(90_013) {
        format!(
            "{head}: tenant {tenant_id} was not found; check the tenant-id input (AZURE_TENANT_ID) \
             and AZURE_AUTHORITY_HOST for sovereign clouds. ({description})"
        )
    } else if has(700_024) {
        format!(
            "{head}: the ID token had expired or was not yet valid; this machine's clock may be \
             off. ({description})"
        )
    } else {
        format!("{head} ({}: {description})", status_line(resp))
    }
}

/// The claims of a JWT, unverified: only to explain errors and read lifetimes.
#[must_use]
pub fn jwt_claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Time left until a JWT's `exp`, by this machine's clock.
pub fn jwt_lifetime(jwt: &str) -> Option<Duration> {
    until_unix(jwt_claims(jwt)?["exp"].as_u64()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn answer(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            attempts: 1,
        }
    }

    #[test]
    fn claims_and_lifetimes() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let id_token = jwt(&serde_json::json!({"sub": "repo:o/r:ref:refs/heads/main", "exp": exp}));
        assert_eq!(
            jwt_claims(&id_token).unwrap()["sub"],
            "repo:o/r:ref:refs/heads/main"
        );
        let left = jwt_lifetime(&id_token).unwrap();
        assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
        assert!(jwt_claims("not a jwt").is_none());
        assert!(jwt_lifetime(&jwt(&serde_json::json!({"exp": 5}))).is_none());
    }

    #[test]
    fn subject_mismatch_quotes_the_subject() {
        let id = Secret::new(jwt(&serde_json::json!({
            "sub": "repo:org/app:environment:prod",
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "api://AzureADTokenExchange"
        })));
        let resp = answer(
            400,
            &serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS700213: No matching federated identity record found for presented assertion subject 'repo:org/app:environment:prod'.\r\nTrace ID: x",
                "error_codes": [700_213]
            }),
        );
        let gh = Assertion::GitHub {
            request_url: "u".into(),
            request_token: Secret::new("t"),
        };
        let msg = exchange_error(&resp, &id, &gh, "client", "tenant");
        assert!(
            msg.contains("`repo:org/app:environment:prod`")
                && msg.contains("Federated credentials"),
            "{msg}"
        );
        assert!(!msg.contains("Trace ID"), "{msg}");
        let resp = answer(
            400,
            &serde_json::json!({"error_description": "AADSTS700016: Application not found"}),
        );
        assert!(exchange_error(&resp, &id, &gh, "c", "t").contains("no app with client id c"));
    }

    #[test]
    fn managed_identity_answers() {
        let ok = answer(
            200,
            &serde_json::json!({"access_token": "tok", "expires_in": "3599", "expires_on": "1"}),
        );
        let t = managed_answer(&ok, "imds").unwrap();
        assert_eq!(t.lifetime, Some(Duration::from_secs(3599)));
        let missing = answer(
            400,
            &serde_json::json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
        let e = managed_answer(&missing, "imds").err().unwrap();
        assert!(e.contains("assign a managed identity"), "{e}");
    }
}
