//! The ARM client: reqwest over HTTPS to Azure or HTTP to the emulator.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::throttle::{self, ArmMetrics, Limits, Throttle};
use super::{Backend, BackendError, Result};
use crate::arm::error::CloudError;
use crate::arm::models::{
    AppAttachPackage, Application, ApplicationGroup, HostPool, List, MsixPackage, RoleAssignment,
    SendMessage, SessionHost, UserSession,
};
use crate::arm::{self, ArmError, Scope};
use crate::domain::directory::Directory;

/// How requests authenticate.
#[derive(Clone)]
pub enum Auth {
    /// No Authorization header (the emulator without `--token`).
    None,
    /// A static bearer token.
    Bearer(String),
    /// Entra ID tokens, cached and refreshed.
    Credential(std::sync::Arc<crate::azure::Credential>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Credential(c) => write!(f, "Credential({:?})", c.method()),
        }
    }
}

/// The HTTP client: `User-Agent: appattach-operator/VERSION` (with ` (INSTANCE)` when
/// given), as Azure asks of its callers.
fn http_client(instance: Option<&str>) -> reqwest::Client {
    let mut agent = format!("appattach-operator/{}", env!("CARGO_PKG_VERSION"));
    if let Some(i) = instance {
        // A header value is visible ASCII; a pod name always is, anything else is replaced.
        let i: String = i
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        agent.push_str(&format!(" ({i})"));
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(agent)
        .build()
        .expect("a reqwest client builds")
}

/// An ARM client for one subscription and resource group.
#[derive(Clone, Debug)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: String,
    scope: Scope,
    auth: Auth,
    throttle: Option<std::sync::Arc<Throttle>>,
    metrics: ArmMetrics,
    /// Wait for the request budget rather than fail with `Budget` when it is spent.
    patient: bool,
}

impl ArmClient {
    /// A client for `endpoint` (e.g. `https://management.azure.com`).
    pub fn new(endpoint: &str, subscription: &str, resource_group: &str, auth: Auth) -> Self {
        Self {
            http: http_client(None),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            scope: Scope {
                subscription: subscription.to_string(),
                resource_group: resource_group.to_string(),
            },
            auth,
            throttle: None,
            metrics: ArmMetrics::default(),
            patient: false,
        }
    }

    /// Names this replica in the `User-Agent` of every request, after the product and its
    /// version, so that the backend's logs tell the replicas apart.
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.http = http_client(Some(instance));
        self
    }

    /// Keeps requests within these budgets: a request over budget fails at once with
    /// [`BackendError::Budget`], and its reconcile comes back when there is room.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.throttle = Some(std::sync::Arc::new(Throttle::new(limits)));
        self
    }

    /// Keeps requests within a budget shared with other clients (ARM's is per principal
    /// and subscription, whatever the resource group).
    pub fn with_throttle(mut self, throttle: std::sync::Arc<Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Counts requests in these metric families, labelled with their target.
    pub fn with_metrics(mut self, metrics: ArmMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn rg_list_path(&self, collection: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DesktopVirtualization/{collection}?api-version={DV}",
            self.scope.subscription, self.scope.resource_group
        )
    }

    /// The resource group the client works in.
    pub fn resource_group(&self) -> &str {
        &self.scope.resource_group
    }

    /// The client's metrics, to register.
    pub fn metrics(&self) -> &ArmMetrics {
        &self.metrics
    }

    /// Sends a request, retrying transient failures (5xx, transport errors, and 429 after
    /// its Retry-After when that is short) a few times with exponential backoff, as the
    /// Azure SDKs do. What still fails goes to the caller, whose reconcile backs off.
    async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Option<Value>)> {
        let (status, text) = self.send_text(method, path_or_url, body).await?;
        let value = text
            .map(|t| serde_json::from_str(&t).map_err(|e| BackendError::Decode(e.to_string())))
            .transpose()?;
        Ok((status, value))
    }

    /// As [`Self::send`], the answer's body as text (`None`: empty), for a caller that
    /// reads it straight into its type: a large answer read as a JSON value first takes
    /// about ten times its size (the emulator's directory of 50,000 users: 60 MiB).
    async fn send_text(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Option<String>)> {
        const RETRIES: u32 = 3;
        let mut attempt = 0;
        loop {
            let result = self.send_once(method.clone(), path_or_url, body).await;
            let wait = match &result {
                Err(BackendError::Throttled(after)) if *after <= Duration::from_secs(5) => *after,
                Err(e @ (BackendError::Arm(_) | BackendError::Transport(_)))
                    if e.is_transient() =>
                {
                    Duration::from_millis(100 << attempt)
                }
                // A refused token was dropped above: one more attempt signs in again.
                Err(BackendError::Arm(e))
                    if e.status == 401
                        && matches!(self.auth, Auth::Credential(_))
                        && attempt == 0 =>
                {
                    Duration::ZERO
                }
                _ => return result,
            };
            if attempt >= RETRIES {
                return result;
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one request; `path_or_url` is an ARM path (with its query, api-version
    /// included) or a full nextLink.
    async fn send_once(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Option<String>)> {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.endpoint)
        };
        let kind = throttle::kind(&method);
        if let Some(t) = &self.throttle {
            // A pass waits its turn for a token, up to a bound beyond which it gives its
            // worker back and comes again; a patient client (the snapshot's lists) waits.
            let max_wait = if self.patient {
                Duration::MAX
            } else {
                MAX_BUDGET_WAIT
            };
            match t.take(kind, max_wait).await {
                Ok(waited) if waited < Duration::from_millis(1) => {}
                Ok(waited) => self.metrics.waited("client", waited),
                Err(wait) => {
                    self.metrics.waited("client", wait);
                    return Err(BackendError::Budget(wait));
                }
            }
        }
        let mut req = self.http.request(method.clone(), &url);
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => req = req.bearer_auth(token),
            Auth::Credential(c) => {
                let token = c.token().await.map_err(|e| BackendError::Auth(e.0))?;
                req = req.bearer_auth(token.expose());
            }
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        tracing::debug!(%method, path = path_or_url, "ARM request");
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                self.metrics.requested(&method, path_or_url, None);
                return Err(BackendError::Transport(e.without_url().to_string()));
            }
        };
        let status = resp.status();
        self.metrics
            .requested(&method, path_or_url, Some(status.as_u16()));
        for k in ["reads", "writes", "deletes"] {
            if let Some(left) = resp
                .headers()
                .get(format!("x-ms-ratelimit-remaining-subscription-{k}"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
            {
                self.metrics
                    .remaining
                    .get_or_create(&throttle::KindLabels {
                        kind: k.into(),
                        target: self.metrics.target(),
                    })
                    .set(left);
                if let Some(t) = &self.throttle {
                    t.server_left(k, left);
                }
            }
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = resp
            .text()
            .await
            .map_err(|e| BackendError::Transport(e.without_url().to_string()))?;
        if status == StatusCode::UNAUTHORIZED
            && let Auth::Credential(c) = &self.auth
        {
            // An expired or revoked token: the next attempt signs in again.
            c.invalidate().await;
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
        {
            let wait = Duration::from_secs(retry_after.unwrap_or(10));
            self.metrics.waited("server", wait);
            if let Some(t) = &self.throttle {
                t.server_refused(kind, wait);
            }
            return Err(BackendError::Throttled(wait));
        }
        if !status.is_success() {
            let (code, message) = match serde_json::from_str::<CloudError>(&text) {
                Ok(e) => (e.error.code, e.error.message),
                Err(_) => ("Unknown".to_string(), text.chars().take(300).collect()),
            };
            return Err(BackendError::Arm(ArmError::new(
                status.as_u16(),
                &code,
                message,
            )));
        }
        if text.trim().is_empty() {
            return Ok((status, None));
        }
        Ok((status, Some(text)))
    }

    async fn get_opt<T: DeserializeOwned>(&self, path: &str, api: &str) -> Result<Option<T>> {
        match self
            .send_text(Method::GET, &format!("{path}?api-version={api}"), None)
            .await
        {
            Ok((_, Some(text))) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| BackendError::Decode(e.to_string())),
            Ok((_, None)) => Err(BackendError::Decode(format!("empty answer to GET {path}"))),
            Err(BackendError::Arm(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_json<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        api: &str,
        body: &T,
    ) -> Result<R> {
        let body = serde_json::to_value(body).map_err(|e| BackendError::Decode(e.to_string()))?;
        let (_, value) = self
            .send(
                Method::PUT,
                &format!("{path}?api-version={api}"),
                Some(&body),
            )
            .await?;
        serde_json::from_value(value.unwrap_or(Value::Null))
            .map_err(|e| BackendError::Decode(e.to_string()))
    }

    async fn delete_path(&self, path: &str, api: &str) -> Result<()> {
        match self
            .send(Method::DELETE, &format!("{path}?api-version={api}"), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::Arm(e)) if e.status == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following nextLink.
    /// Every page of a list, following `nextLink`. A `nextLink` seen before (a list that
    /// never ends) or more than [`MAX_PAGES`] pages is an error, never a partial answer.
    async fn list_all<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(path_and_query.to_string());
        while let Some(url) = next {
            if !seen.insert(url.clone()) || seen.len() > MAX_PAGES {
                return Err(BackendError::Decode(format!(
                    "the list at {path_and_query} does not end: its nextLink repeats, or it has more than {MAX_PAGES} pages"
                )));
            }
            let (_, value) = self.send(Method::GET, &url, None).await?;
            let page: List<T> = serde_json::from_value(value.unwrap_or(Value::Null))
                .map_err(|e| BackendError::Decode(e.to_string()))?;
            out.extend(page.value);
            next = page.next_link;
        }
        Ok(out)
    }
}

/// The most pages a list may have (a million objects at ARM's usual page sizes).
const MAX_PAGES: usize = 10_000;

/// The longest a pass waits for its turn in the client's budget before it gives its worker
/// back and comes again when the budget says.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(10);

const DV: &str = arm::DESKTOP_VIRTUALIZATION_API_VERSION;
const RA: &str = arm::ROLE_ASSIGNMENTS_API_VERSION;

impl Backend for ArmClient {
    fn scope(&self) -> &Scope {
        &self.scope
    }

    async fn list_host_pools(&self) -> Result<Vec<HostPool>> {
        self.list_all(&self.rg_list_path("hostPools")).await
    }

    async fn list_packages(&self) -> Result<Vec<AppAttachPackage>> {
        self.list_all(&self.rg_list_path("appAttachPackages")).await
    }

    async fn list_application_groups(&self) -> Result<Vec<ApplicationGroup>> {
        self.list_all(&self.rg_list_path("applicationGroups")).await
    }

    async fn list_applications(&self, group_id: &str) -> Result<Vec<Application>> {
        self.list_all(&format!("{group_id}/applications?api-version={DV}"))
            .await
    }

    async fn put_application(
        &self,
        group_id: &str,
        name: &str,
        application: &Application,
    ) -> Result<Application> {
        self.put_json(&format!("{group_id}/applications/{name}"), DV, application)
            .await
    }

    async fn delete_application(&self, group_id: &str, name: &str) -> Result<()> {
        self.delete_path(&format!("{group_id}/applications/{name}"), DV)
            .await
    }

    async fn list_role_assignments_in_resource_group(&self) -> Result<Vec<RoleAssignment>> {
        let rg = format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.scope.subscription, self.scope.resource_group
        );
        self.list_all(&format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments?api-version={RA}"
        ))
        .await
    }

    async fn list_virtual_machines(
        &self,
        resource_group_id: &str,
    ) -> Result<Vec<crate::arm::compute::VirtualMachine>> {
        self.list_all(&format!(
            "{}/providers/{}?api-version={}",
            resource_group_id.trim_end_matches('/'),
            crate::arm::compute::VIRTUAL_MACHINE_TYPE,
            crate::arm::compute::COMPUTE_API_VERSION
        ))
        .await
    }

    fn patient(&self) -> Self {
        Self {
            patient: true,
            ..self.clone()
        }
    }

    /// The emulator serves its directory beside ARM's paths; Azure (always HTTPS) has
    /// none the controller reads, and is not asked.
    async fn directory(&self) -> Result<Option<Directory>> {
        if !self.endpoint.starts_with("http://") {
            return Ok(None);
        }
        let view: Option<crate::emulator::admin::DirectoryView> =
            self.get_opt("/_emulator/directory", DV).await?;
        Ok(view.map(|v| directory_of(&v.directory)))
    }

    async fn get_package(&self, name: &str) -> Result<Option<AppAttachPackage>> {
        self.get_opt(&self.package_id(name), DV).await
    }

    async fn put_package(
        &self,
        name: &str,
        package: &AppAttachPackage,
    ) -> Result<AppAttachPackage> {
        self.put_json(&self.package_id(name), DV, package).await
    }

    async fn delete_package(&self, name: &str) -> Result<()> {
        self.delete_path(&self.package_id(name), DV).await
    }

    async fn get_host_pool(&self, id: &str) -> Result<Option<HostPool>> {
        self.get_opt(id, DV).await
    }

    async fn list_session_hosts(&self, pool_id: &str) -> Result<Vec<SessionHost>> {
        self.list_all(&format!("{pool_id}/sessionHosts?api-version={DV}"))
            .await
    }

    async fn list_user_sessions(&self, pool_id: &str) -> Result<Vec<UserSession>> {
        self.list_all(&format!("{pool_id}/userSessions?api-version={DV}"))
            .await
    }

    async fn get_msix_package(
        &self,
        pool_id: &str,
        full_name: &str,
    ) -> Result<Option<MsixPackage>> {
        self.get_opt(&format!("{pool_id}/msixPackages/{full_name}"), DV)
            .await
    }

    async fn put_msix_package(
        &self,
        pool_id: &str,
        full_name: &str,
        package: &MsixPackage,
    ) -> Result<MsixPackage> {
        self.put_json(&format!("{pool_id}/msixPackages/{full_name}"), DV, package)
            .await
    }

    async fn delete_msix_package(&self, pool_id: &str, full_name: &str) -> Result<()> {
        self.delete_path(&format!("{pool_id}/msixPackages/{full_name}"), DV)
            .await
    }

    async fn list_msix_packages(&self, pool_id: &str) -> Result<Vec<MsixPackage>> {
        self.list_all(&format!("{pool_id}/msixPackages?api-version={DV}"))
            .await
    }

    async fn list_role_assignments(&self, scope: &str) -> Result<Vec<RoleAssignment>> {
        let all: Vec<RoleAssignment> =
            self.list_all(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={RA}&$filter=atScope()")).await?;
        // atScope() includes assignments inherited from above; keep those at the scope itself.
        Ok(all
            .into_iter()
            .filter(|r| {
                r.properties
                    .scope
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(scope))
            })
            .collect())
    }

    async fn put_role_assignment(
        &self,
        scope: &str,
        name: &str,
        assignment: &RoleAssignment,
    ) -> Result<RoleAssignment> {
        self.put_json(
            &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            RA,
            assignment,
        )
        .await
    }

    async fn delete_role_assignment(&self, id: &str) -> Result<()> {
        self.delete_path(id, RA).await
    }

    async fn send_message(&self, session_id: &str, message: &SendMessage) -> Result<()> {
        let body =
            serde_json::to_value(message).map_err(|e| BackendError::Decode(e.to_string()))?;
        self.send(
            Method::POST,
            &format!("{session_id}/sendMessage?api-version={DV}"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    async fn log_off(&self, session_id: &str) -> Result<()> {
        match self
            .send(
                Method::DELETE,
                &format!("{session_id}?api-version={DV}&force=true"),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(BackendError::Arm(e)) if e.status == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_allow_new_session(&self, host_id: &str, allow: bool) -> Result<()> {
        let body = drain_body(allow);
        self.send(
            Method::PATCH,
            &format!("{host_id}?api-version={DV}"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}

/// The emulator's directory, whose users name their groups by name.
fn directory_of(d: &crate::emulator::world::Directory) -> Directory {
    let id_of: std::collections::BTreeMap<&str, &str> = d
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.object_id.as_str()))
        .collect();
    Directory::new(d.users.iter().map(|u| {
        let groups = u
            .groups
            .iter()
            .filter_map(|g| id_of.get(g.as_str()).copied())
            .collect();
        (u.object_id.as_str(), groups)
    }))
}

/// The body of the PATCH that drains a session host (or lets it take sessions again).
pub fn drain_body(allow: bool) -> Value {
    serde_json::json!({ "properties": { "allowNewSession": allow } })
}
