//! Entra ID sign-in for Azure Resource Manager: workload identity, managed identity and
//! client secret, for the public, US Government and China clouds.
//!
//! A small client on reqwest rather than the `azure_identity` crate: it pulls in
//! `azure_core` with its own HTTP stack and TLS backend (we build reqwest on rustls
//! only), and what we need is three token requests, a cache, and one refresh shared by
//! every reconcile. Each request follows the published protocol: the OAuth 2.0 client
//! credentials grant on `{authority}/{tenant}/oauth2/v2.0/token` (with a client secret,
//! or with the federated token as a JWT bearer client assertion, re-read from its file
//! on every request because the kubelet rotates it), and the instance metadata endpoint
//! (`Metadata: true`, `api-version=2018-02-01`, `resource`, optional `client_id`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// An Azure cloud: where ARM and Entra ID are, and the ARM audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Azure (global).
    Public,
    /// Azure Government.
    UsGovernment,
    /// Azure operated by 21Vianet.
    China,
}

impl std::str::FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "azurepubliccloud" | "public" | "azurecloud" => Ok(Self::Public),
            "azureusgovernment" | "azureusgovernmentcloud" | "usgovernment" | "usgov" => {
                Ok(Self::UsGovernment)
            }
            "azurechinacloud" | "china" => Ok(Self::China),
            _ => Err(format!(
                "--cloud {s:?} is not a cloud this controller knows; use AzurePublicCloud, AzureUSGovernment or AzureChinaCloud"
            )),
        }
    }
}

impl Cloud {
    /// The Resource Manager endpoint.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Self::Public => "https://management.azure.com",
            Self::UsGovernment => "https://management.usgovcloudapi.net",
            Self::China => "https://management.chinacloudapi.cn",
        }
    }

    /// The Entra ID authority host.
    pub fn authority_host(self) -> &'static str {
        match self {
            Self::Public => "https://login.microsoftonline.com",
            Self::UsGovernment => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
        }
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the controller signs in.
#[derive(Debug, Clone)]
pub enum Method {
    /// AKS workload identity: a federated token file, exchanged for an Entra ID token.
    WorkloadIdentity {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The projected service-account token.
        token_file: PathBuf,
    },
    /// The managed identity of the VM or node, from the instance metadata endpoint.
    ManagedIdentity {
        /// The user-assigned identity's client id; the system-assigned one when absent.
        client_id: Option<String>,
    },
    /// Workload identity with a token the controller requests itself (a service account
    /// of the object's namespace, through the TokenRequest API), exchanged like the file.
    Federated {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// Where each exchange gets a fresh service account token.
        assertion: Arc<dyn Assertion>,
    },
    /// An application's client secret.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: Secret,
    },
}

/// A source of federated tokens (JWTs) to exchange for Entra ID tokens.
pub trait Assertion: Send + Sync {
    /// A fresh token; an error names what failed and what to do.
    fn assertion(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, AuthError>> + Send + '_>>;
    /// What it is, for logs (never the token).
    fn describe(&self) -> String;
}

impl std::fmt::Debug for dyn Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Why a token could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// The standard variables, as the credential reads them (a map, for tests).
pub type Env = std::collections::BTreeMap<String, String>;

/// The process's `AZURE_*` variables.
pub fn process_env() -> Env {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AZURE_"))
        .collect()
}

impl Method {
    /// Chooses the sign-in method: `kind` (`workload-identity`, `managed-identity`,
    /// `client-secret`, or `auto`) with the standard variables. `auto` takes workload
    /// identity when `AZURE_FEDERATED_TOKEN_FILE` is set, a client secret when
    /// `AZURE_CLIENT_SECRET` is, and the managed identity otherwise.
    pub fn from_env(kind: &str, env: &Env) -> Result<Self, AuthError> {
        let var = |name: &str, why: &str| -> Result<String, AuthError> {
            env.get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .ok_or_else(|| AuthError(format!("{name} is not set: {why}")))
        };
        let kind = match kind {
            "auto" if env.contains_key("AZURE_FEDERATED_TOKEN_FILE") => "workload-identity",
            "auto" if env.contains_key("AZURE_CLIENT_SECRET") => "client-secret",
            "auto" => "managed-identity",
            k => k,
        };
        match kind {
            "workload-identity" => {
                let why = "workload identity needs it (the AKS workload identity webhook sets it in pods whose service account is annotated azure.workload.identity/client-id and labelled azure.workload.identity/use: \"true\")";
                Ok(Self::WorkloadIdentity {
                    tenant_id: var("AZURE_TENANT_ID", why)?,
                    client_id: var("AZURE_CLIENT_ID", why)?,
                    token_file: PathBuf::from(var("AZURE_FEDERATED_TOKEN_FILE", why)?),
                })
            }
            "client-secret" => {
                let why = "a client secret sign-in needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET";
                Ok(Self::ClientSecret {
                    tenant_id: var("AZURE_TENANT_ID", why)?,
                    client_id: var("AZURE_CLIENT_ID", why)?,
                    secret: Secret::new(var("AZURE_CLIENT_SECRET", why)?),
                })
            }
            "managed-identity" => Ok(Self::ManagedIdentity {
                client_id: env
                    .get("AZURE_CLIENT_ID")
                    .cloned()
                    .filter(|v| !v.is_empty()),
            }),
            other => Err(AuthError(format!(
                "--azure-credential {other:?}: use auto, workload-identity, managed-identity or client-secret"
            ))),
        }
    }
}

/// Where tokens come from.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The Entra ID authority host (`AZURE_AUTHORITY_HOST`, or the cloud's).
    pub authority_host: String,
    /// The instance metadata token endpoint.
    pub imds: String,
    /// The ARM audience of the cloud (its endpoint), whose `/.default` scope the tokens
    /// are for, wherever requests are sent.
    pub audience: String,
}

impl Endpoints {
    /// The endpoints of a cloud, with `AZURE_AUTHORITY_HOST` taking precedence.
    pub fn of(cloud: Cloud, env: &Env) -> Self {
        Self {
            authority_host: env
                .get("AZURE_AUTHORITY_HOST")
                .cloned()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| cloud.authority_host().to_string()),
            imds: "http://169.254.169.254/metadata/identity/oauth2/token".into(),
            audience: cloud.arm_endpoint().to_string(),
        }
    }
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// A token source for ARM: cached, refreshed before expiry, one refresh at a time.
pub struct Credential {
    method: Method,
    endpoints: Endpoints,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("method", &self.method)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

/// Tokens are refreshed when this little of their life is left.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

impl Credential {
    /// A credential with this method and these endpoints.
    pub fn new(method: Method, endpoints: Endpoints) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client builds");
        Arc::new(Self {
            method,
            endpoints,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The method, for logs.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// A token for ARM: the cached one while it has more than five minutes left (or half
    /// its life, for short-lived ones), else a new one. Callers waiting at once share one
    /// request.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some(c) = cache.as_ref()
            && now < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                let early = REFRESH_BEFORE.min(lifetime / 2);
                *cache = Some(Cached {
                    token: token.clone(),
                    refresh_at: now + lifetime - early,
                    expires_at: now + lifetime,
                });
                Ok(token)
            }
            // A refresh that fails while the old token still works keeps the old one.
            Err(e) => match cache.as_ref() {
                Some(c) if now < c.expires_at => {
                    tracing::warn!("refreshing the Azure token failed, using the current one: {e}");
                    Ok(c.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets the cached token (ARM refused it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// The client credentials grant with a federated token as the client assertion.
    fn exchange(
        &self,
        authority: &str,
        tenant_id: &str,
        client_id: &str,
        assertion: &str,
        scope: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{authority}/{tenant_id}/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", scope),
            ])
    }

    async fn fetch(&self) -> Result<(Secret, Duration), AuthError> {
        let scope = format!("{}/.default", self.endpoints.audience.trim_end_matches('/'));
        let authority = self.endpoints.authority_host.trim_end_matches('/');
        let request = match &self.method {
            Method::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => self
                .http
                .post(format!("{authority}/{tenant_id}/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret.expose()),
                    ("scope", &scope),
                ]),
            Method::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => {
                // Re-read every time: the kubelet rotates the projected token.
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    AuthError(format!(
                        "AZURE_FEDERATED_TOKEN_FILE {}: cannot read the federated token: {e}",
                        token_file.display()
                    ))
                })?;
                self.exchange(authority, tenant_id, client_id, assertion.trim(), &scope)
            }
            Method::Federated {
                tenant_id,
                client_id,
                assertion,
            } => {
                let assertion = assertion.assertion().await?;
                self.exchange(authority, tenant_id, client_id, assertion.trim(), &scope)
            }
            Method::ManagedIdentity { client_id } => {
                let resource = format!("{}/", self.endpoints.audience.trim_end_matches('/'));
                let mut query = vec![("api-version", "2018-02-01"), ("resource", &resource)];
                if let Some(id) = client_id {
                    query.push(("client_id", id));
                }
                self.http
                    .get(&self.endpoints.imds)
                    .header("Metadata", "true")
                    .query(&query)
            }
        };
        let what = match &self.method {
            Method::ManagedIdentity { .. } => "the instance metadata endpoint",
            _ => "Entra ID",
        };
        let response = request.send().await.map_err(|e| {
            AuthError(format!(
                "signing in to Azure: {what} could not be reached: {}",
                e.without_url()
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| AuthError(format!("signing in to Azure: reading {what}'s answer: {e}")))?;
        let body: TokenResponse = serde_json::from_str(&text).map_err(|_| {
            AuthError(format!(
                "signing in to Azure: {what} answered {status} with something that is not a token response"
            ))
        })?;
        match (body.access_token, body.expires_in) {
            (Some(token), Some(secs)) if status.is_success() && !token.is_empty() => {
                Ok((Secret::new(token), Duration::from_secs(secs.max(1))))
            }
            _ => Err(AuthError(format!(
                "signing in to Azure: {what} refused ({status}): {} {}",
                body.error.as_deref().unwrap_or("no error code"),
                body.error_description
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn auto_picks_the_method_the_variables_describe() {
        let wi = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ]);
        assert!(matches!(
            Method::from_env("auto", &wi),
            Ok(Method::WorkloadIdentity { .. })
        ));
        let cs = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        assert!(matches!(
            Method::from_env("auto", &cs),
            Ok(Method::ClientSecret { .. })
        ));
        assert!(matches!(
            Method::from_env("auto", &env(&[])),
            Ok(Method::ManagedIdentity { client_id: None })
        ));
    }

    #[test]
    fn a_missing_variable_is_named_and_a_secret_never_prints() {
        let e =
            Method::from_env("workload-identity", &env(&[("AZURE_CLIENT_ID", "c")])).unwrap_err();
        assert!(e.0.contains("AZURE_TENANT_ID is not set"), "{e}");
        let cs = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2"),
        ]);
        let m = Method::from_env("client-secret", &cs).unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
        assert!(
            Method::from_env("kerberos", &cs)
                .unwrap_err()
                .0
                .contains("--azure-credential")
        );
    }

    #[test]
    fn clouds_have_their_endpoints_and_unknown_ones_are_refused() {
        let c: Cloud = "AzureUSGovernment".parse().unwrap();
        assert_eq!(c.arm_endpoint(), "https://management.usgovcloudapi.net");
        assert_eq!(c.authority_host(), "https://login.microsoftonline.us");
        assert_eq!(
            "AzureChinaCloud".parse::<Cloud>().unwrap().authority_host(),
            "https://login.chinacloudapi.cn"
        );
        assert!(
            "AzureMoonCloud"
                .parse::<Cloud>()
                .unwrap_err()
                .contains("AzurePublicCloud")
        );
        let e = Endpoints::of(
            Cloud::Public,
            &env(&[("AZURE_AUTHORITY_HOST", "https://login.example/")]),
        );
        assert_eq!(e.authority_host, "https://login.example/");
    }
}
