//! Entra ID as far as the emulator's callers need it: the OAuth 2.0 client credentials
//! grant on `POST /{tenant}/oauth2/v2.0/token`, for the identities the world lists, and
//! the reading of the bearer tokens ARM requests carry.
//!
//! A client proves who it is with a client secret, or with a federated token as a JWT
//! bearer client assertion (AKS workload identity). The assertion is read, not verified:
//! its payload must say `aud` `api://AzureADTokenExchange`, a `sub` the identity federates,
//! and an `exp` to come. Refusals are Entra's: the OAuth error, the `AADSTS` code and its
//! message, `error_codes`, a trace and correlation id; `invalid_client` answers 401 and the
//! others 400, as Entra does. Neither a secret nor an assertion is logged or echoed.
//!
//! The access token is an unsecured JWT (`alg` `none`, no signature) with Entra's claims
//! for an application: `aud`, `iss`, `iat`, `nbf`, `exp`, `tid`, `oid` and `sub` (the
//! service principal's object id), `appid`, `appidacr`, `idtyp`. ARM's checks on it are in
//! [`super::arm_api`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::Emulator;
use super::world::{Identity, World};

/// The `client_assertion_type` of a JWT bearer client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The audience a federated token must be for.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// How long the tokens issued live, in seconds, as `expires_in` says.
pub const LIFETIME_SECONDS: i64 = 3599;

/// Why a token's claims could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not `header.payload.signature`.
    #[error("a JWT has three parts separated by dots")]
    Parts,
    /// The payload is not base64url.
    #[error("the JWT payload is not base64url")]
    Base64,
    /// The payload is not a JSON object.
    #[error("the JWT payload is not a JSON object")]
    Json,
}

/// The claims of a JWT, read without verifying its signature: the emulator trusts its
/// callers, and only needs to know who they say they are.
pub fn claims(token: &str) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Parts);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Base64)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Json),
    }
}

/// A string claim, when it is a non-empty string.
pub fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A time claim (seconds since the epoch), when it is a number.
pub fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// The audiences of a token: `aud` as a string or an array of strings.
pub fn audiences(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The object id (`oid`) of the principal whose token a request carries; none without a
/// token that reads as a JWT with one.
pub fn principal(headers: &HeaderMap) -> Option<String> {
    let claims = claims(bearer(headers)?).ok()?;
    text(&claims, "oid").map(str::to_ascii_lowercase)
}

/// An unsecured JWT (`alg` `none`) of these claims.
pub fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// The issuer of Entra's access tokens for a tenant.
pub fn issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// Seconds since the epoch.
pub fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A time in seconds since the epoch, as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// An Entra refusal: the OAuth error, the `AADSTS` number and the message after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The OAuth 2.0 error, e.g. `invalid_client`.
    pub error: &'static str,
    /// The `AADSTS` number.
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

impl Refusal {
    fn new(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self {
            error,
            code,
            message: message.into(),
        }
    }

    fn missing(parameter: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{parameter}'."),
        )
    }

    /// The status Entra answers with: 401 for `invalid_client`, else 400.
    pub fn status(&self) -> StatusCode {
        if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    /// Entra's answer.
    pub fn response(&self) -> Response {
        let trace = uuid::Uuid::new_v4();
        let correlation = uuid::Uuid::new_v4();
        let at = jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M:%SZ")
            .to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {at}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": at,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status(), axum::Json(body)).into_response()
    }
}

/// What a successful token request gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// Its claims.
    pub claims: Value,
}

/// Equal strings, comparing every byte whatever the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Answers a client credentials request to `tenant`'s token endpoint with the form
/// `fields`, at `now` (seconds since the epoch).
pub fn grant(
    world: &World,
    tenant: &str,
    fields: &[(String, String)],
    now: i64,
) -> Result<Issued, Refusal> {
    if !world.knows_tenant(tenant) {
        return Err(Refusal::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    match field("grant_type") {
        None => return Err(Refusal::missing("grant_type")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(Refusal::new(
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{other}'."),
            ));
        }
    }
    let client_id = field("client_id").ok_or_else(|| Refusal::missing("client_id"))?;
    let scope = field("scope").ok_or_else(|| Refusal::missing("scope"))?;
    let resource = scope
        .strip_suffix("/.default")
        .filter(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        .ok_or_else(|| {
            Refusal::new(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            )
        })?;
    let identity = world.identity(tenant, client_id).ok_or_else(|| {
        Refusal::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    })?;
    let acr = match (field("client_secret"), field("client_assertion_type")) {
        (Some(_), Some(_)) => {
            return Err(Refusal::new(
                "invalid_request",
                7000216,
                "Only one of 'client_assertion' or 'client_secret' may be sent for the 'client_credentials' grant type.",
            ));
        }
        (Some(secret), None) => {
            check_secret(identity, secret)?;
            "1"
        }
        (None, Some(JWT_BEARER)) => {
            let assertion =
                field("client_assertion").ok_or_else(|| Refusal::missing("client_assertion"))?;
            check_assertion(identity, assertion, now)?;
            "2"
        }
        (None, Some(other)) => {
            return Err(Refusal::new(
                "invalid_request",
                50027,
                format!(
                    "The client_assertion_type '{other}' is not supported; use '{JWT_BEARER}'."
                ),
            ));
        }
        (None, None) => {
            return Err(Refusal::new(
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            ));
        }
    };
    let tid = identity.tenant_id.to_ascii_lowercase();
    let oid = identity.object_id.to_ascii_lowercase();
    let claims = json!({
        "aud": resource,
        "iss": issuer(&tid),
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME_SECONDS,
        "tid": tid,
        "oid": oid,
        "sub": oid,
        "appid": identity.client_id,
        "appidacr": acr,
        "idtyp": "app",
        "ver": "1.0",
    });
    Ok(Issued {
        access_token: unsigned(&claims),
        claims,
    })
}

fn check_secret(identity: &Identity, given: &str) -> Result<(), Refusal> {
    match &identity.client_secret {
        Some(s) if same_secret(s.expose(), given) => Ok(()),
        _ => Err(Refusal::new(
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                identity.client_id
            ),
        )),
    }
}

fn check_assertion(identity: &Identity, assertion: &str, now: i64) -> Result<(), Refusal> {
    let claims = claims(assertion).map_err(|_| {
        Refusal::new(
            "invalid_request",
            50027,
            "JWT token is invalid or malformed.",
        )
    })?;
    let audiences = audiences(&claims);
    if !audiences.contains(&TOKEN_EXCHANGE_AUDIENCE) {
        return Err(Refusal::new(
            "invalid_client",
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                audiences.join(", ")
            ),
        ));
    }
    let subject = text(&claims, "sub").unwrap_or_default();
    if !identity.federated_subjects.iter().any(|s| s == subject) {
        return Err(Refusal::new(
            "invalid_client",
            70021,
            format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. Assertion Issuer: '{}'. Assertion Audience: '{TOKEN_EXCHANGE_AUDIENCE}'.",
                text(&claims, "iss").unwrap_or_default()
            ),
        ));
    }
    let exp = seconds(&claims, "exp");
    let nbf = seconds(&claims, "nbf");
    if exp.is_none_or(|e| e <= now) || nbf.is_some_and(|n| n > now + 300) {
        return Err(Refusal::new(
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                rfc3339(now),
                nbf.map_or_else(|| "(none)".to_string(), rfc3339),
                exp.map_or_else(|| "(none)".to_string(), rfc3339),
            ),
        ));
    }
    Ok(())
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return Refusal::new(
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded and contain the following parameter: 'grant_type'.",
        )
        .response();
    };
    let outcome = grant(&emulator.lock().world, &tenant, &fields, now_seconds());
    match outcome {
        Ok(issued) => {
            tracing::debug!(
                tenant = %tenant,
                client = issued.claims["appid"].as_str().unwrap_or_default(),
                "issued an access token"
            );
            let mut response = axum::Json(json!({
                "token_type": "Bearer",
                "expires_in": LIFETIME_SECONDS,
                "ext_expires_in": LIFETIME_SECONDS,
                "access_token": issued.access_token,
            }))
            .into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store, no-cache"),
            );
            response
        }
        Err(refusal) => {
            tracing::debug!(
                tenant = %tenant,
                "refused a token request: {} AADSTS{}",
                refusal.error,
                refusal.code
            );
            refusal.response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn odd_tokens_are_errors_never_panics() {
        let cases: Vec<(String, JwtError)> = vec![
            (String::new(), JwtError::Parts),
            ("abc".into(), JwtError::Parts),
            ("a.b".into(), JwtError::Parts),
            ("a.b.c.d".into(), JwtError::Parts),
            ("..".into(), JwtError::Json),
            ("a.!!!.c".into(), JwtError::Base64),
            ("a.a.c".into(), JwtError::Base64),
            ("a.€€.c".into(), JwtError::Base64),
            (format!("a.{}.c", b64(b"not json")), JwtError::Json),
            (format!("a.{}.c", b64(b"[1,2]")), JwtError::Json),
            (format!("a.{}.c", b64(b"\"text\"")), JwtError::Json),
            (format!("a.{}.c", b64(b"null")), JwtError::Json),
            (format!("a.{}.c", b64(&[0xff, 0xfe, 0x00])), JwtError::Json),
            (format!("a.{}.c", b64(b"{\"a\":")), JwtError::Json),
        ];
        for (token, want) in cases {
            assert_eq!(claims(&token), Err(want), "{token:?}");
        }
        // Padding is tolerated, and an empty signature (an unsecured JWT) reads.
        let padded = format!(
            "h.{}==.",
            base64::engine::general_purpose::URL_SAFE.encode("{\"oid\":\"x\"}")
        );
        assert_eq!(claims(&padded).unwrap()["oid"], "x");
    }

    #[test]
    fn missing_or_mistyped_claims_read_as_absent() {
        let c = claims(&format!(
            "a.{}.",
            b64(br#"{"tid": 7, "oid": "", "exp": "soon", "aud": [1, "x", null], "nbf": 1.5}"#)
        ))
        .unwrap();
        assert_eq!(text(&c, "tid"), None);
        assert_eq!(text(&c, "oid"), None);
        assert_eq!(text(&c, "appid"), None);
        assert_eq!(seconds(&c, "exp"), None);
        assert_eq!(seconds(&c, "iat"), None);
        assert_eq!(seconds(&c, "nbf"), Some(1));
        assert_eq!(audiences(&c), vec!["x"]);
        let c = claims(&format!("a.{}.", b64(b"{}"))).unwrap();
        assert!(audiences(&c).is_empty());
    }

    #[test]
    fn the_principal_is_the_oid_of_a_bearer_jwt_only() {
        let with = |auth: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, auth.parse().unwrap());
            principal(&h)
        };
        let token = unsigned(&json!({"oid": "ABC-1"}));
        assert_eq!(with(&format!("Bearer {token}")).as_deref(), Some("abc-1"));
        assert_eq!(with(&format!("Basic {token}")), None);
        assert_eq!(with("Bearer static-token"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(
            with(&format!("Bearer {}", unsigned(&json!({"sub": "x"})))),
            None
        );
        assert_eq!(principal(&HeaderMap::new()), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("s3cret", "s3cret "));
        assert!(!same_secret("", "x"));
        assert!(same_secret("", ""));
    }
}
