//! A local stand-in for Entra ID's token endpoint and the instance metadata endpoint that
//! checks each request as they do, and hands out the tokens a test queues.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "9f2a1c3e-5b7d-4e8f-a0b1-c2d3e4f5a6b7";
pub const SECRET: &str = "s3cr3t~do-not-log-me";
pub const SCOPE: &str = "https://management.azure.com/.default";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Default)]
pub struct Inner {
    /// Tokens to hand out, in order; when empty, `tok-N`.
    pub tokens: VecDeque<String>,
    /// Lifetime of the tokens handed out, in seconds.
    pub expires_in: u64,
    /// The federated token the client must present.
    pub assertion: Option<String>,
    /// Answer this body instead, with 200, to every request.
    pub garbage: Option<String>,
    /// Delay before answering.
    pub delay: Duration,
    /// Every request: its form or query fields.
    pub requests: Vec<BTreeMap<String, String>>,
    issued: u64,
}

#[derive(Clone)]
pub struct Entra {
    pub url: String,
    pub inner: Arc<Mutex<Inner>>,
}

impl Entra {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            expires_in: 3600,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/metadata/identity/oauth2/token", get(imds))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn imds(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.url)
    }
}

fn refuse(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

fn issue(inner: &mut Inner) -> (String, u64) {
    inner.issued += 1;
    let token = inner
        .tokens
        .pop_front()
        .unwrap_or_else(|| format!("tok-{}", inner.issued));
    (token, inner.expires_in)
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(tenant): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let delay = inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut inner = inner.lock().unwrap();
    inner.requests.push(form.clone());
    if let Some(g) = &inner.garbage {
        return (StatusCode::OK, g.clone()).into_response();
    }
    if tenant != TENANT {
        return refuse("invalid_request", "AADSTS90002: Tenant not found.");
    }
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return refuse("unsupported_grant_type", "AADSTS70003: grant_type");
    }
    if field("client_id") != Some(CLIENT) {
        return refuse(
            "unauthorized_client",
            "AADSTS700016: Application not found.",
        );
    }
    if field("scope") != Some(SCOPE) {
        return refuse(
            "invalid_scope",
            "AADSTS70011: The provided value for scope is not valid.",
        );
    }
    let authenticated = match (field("client_secret"), field("client_assertion_type")) {
        (Some(s), None) => s == SECRET,
        (None, Some(JWT_BEARER)) => {
            field("client_assertion").is_some()
                && field("client_assertion") == inner.assertion.as_deref()
        }
        _ => false,
    };
    if !authenticated {
        return refuse(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let (token, expires_in) = issue(&mut inner);
    axum::Json(json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token}))
        .into_response()
}

async fn imds(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.requests.push(query.clone());
    if headers.get("Metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request", "error_description": "Required metadata header not specified"})),
        )
            .into_response();
    }
    if query.get("api-version").map(String::as_str) != Some("2018-02-01")
        || query.get("resource").map(String::as_str) != Some("https://management.azure.com/")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request", "error_description": "bad api-version or resource"})),
        )
            .into_response();
    }
    if query.get("client_id").is_some_and(|c| c != CLIENT) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            ),
        )
            .into_response();
    }
    let (token, expires_in) = issue(&mut inner);
    axum::Json(json!({
        "access_token": token, "expires_in": expires_in.to_string(), "expires_on": "1800000000",
        "resource": "https://management.azure.com/", "token_type": "Bearer"
    }))
    .into_response()
}
