//! Backend targets: which Azure tenant, subscription and resource group a package goes
//! to, and as whom. Each target the controller uses is a *lane*: its own ARM client (its
//! own credential, and the request budget of its principal in its subscription) and its
//! own picture of the backend, refreshed apart. The operator's flags are the default
//! lane.
//!
//! Isolation: a target is read from the package's own namespace, its client secret from
//! a Secret of that namespace, and its workload identity token is requested for a service
//! account of that namespace, never the controller's own; so a namespace can act only as
//! an identity federated to it, or whose secret it holds.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::{Config, refresh};
use crate::arm::Scope;
use crate::azure::{Assertion, AuthError, Credential, Endpoints, Method};
use crate::backend::snapshot::Snapshot;
use crate::backend::{Auth, Backend};
use crate::resources::{AppAttachPackage, BackendTarget, CredentialMethod, DEFAULT_TARGET};

/// How long a pass waits for the first list of BackendTargets.
const LISTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The audience of a service account token exchanged with Entra ID.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A backend the controller writes to, with its own picture of it.
pub struct Lane<B> {
    /// The client.
    pub backend: B,
    /// Its picture, refreshed apart from the other lanes'.
    pub snapshot: Arc<Snapshot>,
    /// `namespace/name` of its BackendTarget, or `operator` for the flags' own.
    pub label: String,
}

/// A target resolved to what a client needs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `namespace/name` of the BackendTarget.
    pub label: String,
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Where the packages go.
    pub scope: Scope,
    /// How requests authenticate.
    pub auth: Auth,
    /// Whose budget requests spend: ARM's is per principal and subscription.
    pub budget_key: String,
}

/// Makes the client of a resolved target.
pub type MakeBackend<B> = Arc<dyn Fn(&Resolved) -> B + Send + Sync>;

/// Why a package has no backend: a reason for `Ready=False`, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFailure {
    /// The condition's reason.
    pub reason: &'static str,
    /// What is wrong and the fix.
    pub message: String,
}

fn failure(reason: &'static str, message: String) -> TargetFailure {
    TargetFailure { reason, message }
}

/// What the operator allows of targets.
pub struct TargetSettings<B> {
    /// Makes a client for a target; `None`: targets are not served (every package goes to
    /// the operator's own backend).
    pub make: Option<MakeBackend<B>>,
    /// Where Entra ID and the instance metadata endpoint are.
    pub endpoints: Option<Endpoints>,
    /// A namespace without a target is refused rather than sent to the operator's own.
    pub require_target: bool,
    /// Namespaces whose targets may use the managed identity of the controller's node.
    pub managed_identity_namespaces: Vec<String>,
}

impl<B> std::fmt::Debug for TargetSettings<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSettings")
            .field("served", &self.make.is_some())
            .field("require_target", &self.require_target)
            .field(
                "managed_identity_namespaces",
                &self.managed_identity_namespaces,
            )
            .finish()
    }
}

impl<B> Default for TargetSettings<B> {
    fn default() -> Self {
        Self {
            make: None,
            endpoints: None,
            require_target: false,
            managed_identity_namespaces: vec![],
        }
    }
}

/// The name of the target a package asks for, and whether it asked for it by name.
pub fn wanted(pkg: &AppAttachPackage) -> (&str, bool) {
    match pkg.spec.target.as_deref() {
        Some(t) => (t, true),
        None => (DEFAULT_TARGET, false),
    }
}

/// A package whose backend objects live in another subscription or resource group than
/// its target's: it is not moved (its objects there would be left behind, still assigned).
pub fn moved(pkg: &AppAttachPackage, scope: &Scope, label: &str) -> Option<TargetFailure> {
    let id = pkg.status.as_ref()?.resource_id.as_deref()?;
    let prefix = format!(
        "/subscriptions/{}/resourcegroups/{}/",
        scope.subscription, scope.resource_group
    )
    .to_ascii_lowercase();
    (!id.to_ascii_lowercase().starts_with(&prefix)).then(|| {
        failure(
            "TargetChanged",
            format!(
                "the package's backend objects are at {id}, but its target {label} is subscription {} resource group {}: a package is not moved between targets; set spec.target back, or delete the package (its objects are removed from the old target) and create it again",
                scope.subscription, scope.resource_group
            ),
        )
    })
}

/// A lane made for a target, with the fingerprint of the target (and Secret) it was made
/// from.
type Made<B> = (u64, Arc<Lane<B>>);

/// The lanes: the operator's own, and one per BackendTarget in use.
pub struct Lanes<B> {
    /// The operator's own backend.
    pub default: Option<Arc<Lane<B>>>,
    settings: TargetSettings<B>,
    client: Client,
    targets: Store<BackendTarget>,
    config: Config,
    changed: tokio::sync::mpsc::Sender<ObjectRef<AppAttachPackage>>,
    made: Mutex<HashMap<String, Made<B>>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

impl<B: Backend + Clone> Lanes<B> {
    /// The lanes of a controller: `default` (the flags'), and targets as `settings` say.
    pub fn new(
        default: Option<Arc<Lane<B>>>,
        settings: TargetSettings<B>,
        (client, targets): (Client, Store<BackendTarget>),
        config: Config,
        changed: tokio::sync::mpsc::Sender<ObjectRef<AppAttachPackage>>,
    ) -> Self {
        Self {
            default,
            settings,
            client,
            targets,
            config,
            changed,
            made: Mutex::new(HashMap::new()),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// The lane of a package, or why it has none (with the scope to report it in).
    pub async fn lane_for(
        &self,
        pkg: &AppAttachPackage,
    ) -> Result<Arc<Lane<B>>, (Scope, TargetFailure)> {
        let ns = pkg.namespace().unwrap_or_default();
        let (name, named) = wanted(pkg);
        let fallback = || {
            self.default
                .as_ref()
                .map(|l| l.backend.scope().clone())
                .unwrap_or_default()
        };
        let target = match self.read_target(&ns, name).await {
            Ok(t) => t,
            Err(f) => return Err((fallback(), f)),
        };
        let lane = match target {
            None if named => Err(failure(
                "TargetNotFound",
                format!(
                    "spec.target names BackendTarget {ns}/{name}, which does not exist: create it in namespace {ns}, or remove spec.target to use the namespace's default"
                ),
            )),
            None => match &self.default {
                Some(d) if !self.settings.require_target => Ok(d.clone()),
                _ => Err(failure(
                    "NoBackendTarget",
                    format!(
                        "namespace {ns} has no BackendTarget named {DEFAULT_TARGET}, and the operator serves no namespace without one (--require-backend-target): create a BackendTarget {DEFAULT_TARGET} in {ns}, or name one in spec.target"
                    ),
                )),
            },
            Some(t) => {
                let scope = Scope {
                    subscription: t.spec.subscription_id.clone(),
                    resource_group: t.spec.resource_group.clone(),
                };
                return self.lane_of(&ns, &t).await.map_err(|f| (scope, f));
            }
        };
        lane.map_err(|f| (fallback(), f))
    }

    /// The target `ns/name`, from the cache (once it has listed them).
    async fn read_target(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BackendTarget>, TargetFailure> {
        if tokio::time::timeout(LISTED_WITHIN, self.targets.wait_until_ready())
            .await
            .is_err()
        {
            return Err(failure(
                "TargetUnreadable",
                format!(
                    "the BackendTargets are not listed yet after {}s: the controller needs list and watch on backendtargets.appattach.io (deploy/ RBAC), and the CRD installed ({})",
                    LISTED_WITHIN.as_secs(),
                    crate::resources::INSTALL_CRDS
                ),
            ));
        }
        Ok(self
            .targets
            .get(&ObjectRef::new(name).within(ns))
            .map(|t| (*t).clone()))
    }

    /// Where a package goes, from the cached targets alone (no sign-in): its target's
    /// subscription and resource group, the operator's own, or `None` when it has none.
    pub fn scope_of(&self, pkg: &AppAttachPackage) -> Option<Scope> {
        let ns = pkg.namespace().unwrap_or_default();
        let (name, named) = wanted(pkg);
        match self.targets.get(&ObjectRef::new(name).within(&ns)) {
            Some(t) => Some(Scope {
                subscription: t.spec.subscription_id.clone(),
                resource_group: t.spec.resource_group.clone(),
            }),
            None if named || self.settings.require_target => None,
            None => self.default.as_ref().map(|l| l.backend.scope().clone()),
        }
    }

    /// The lane of a target: the one made for it, while the target and its Secret are as
    /// they were; else a new one, once its identity signs in.
    async fn lane_of(&self, ns: &str, t: &BackendTarget) -> Result<Arc<Lane<B>>, TargetFailure> {
        let label = format!("{ns}/{}", t.name_any());
        let Some(make) = self.settings.make.clone() else {
            return Err(failure(
                "TargetsNotServed",
                format!(
                    "BackendTarget {label} cannot be used: this controller runs against its in-process emulator, which serves its own backend only; run it with --cloud (Azure) or --arm-endpoint"
                ),
            ));
        };
        let (auth, secret_version) = self.credential(ns, t, &label).await?;
        let fingerprint = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&t.spec)
                .unwrap_or_default()
                .hash(&mut h);
            secret_version.hash(&mut h);
            h.finish()
        };
        if let Some((f, lane)) = self
            .made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&label)
            && *f == fingerprint
        {
            return Ok(lane.clone());
        }
        if let Auth::Credential(c) = &auth {
            // A new identity signs in before anything uses it: a refusal is the target's
            // to report, not a backend failure on every pass.
            c.token().await.map_err(|e| {
                failure(
                    "TargetCredentialFailed",
                    format!("BackendTarget {label}: signing in failed: {}", e.0),
                )
            })?;
        }
        let resolved = Resolved {
            label: label.clone(),
            tenant_id: t.spec.tenant_id.clone(),
            scope: Scope {
                subscription: t.spec.subscription_id.clone(),
                resource_group: t.spec.resource_group.clone(),
            },
            budget_key: budget_key(t),
            auth,
        };
        let backend = make(&resolved);
        let lane = Arc::new(Lane {
            backend,
            snapshot: Arc::new(Snapshot::new()),
            label: label.clone(),
        });
        let (refreshes, _ready) = refresh::task(
            lane.snapshot.clone(),
            &lane.backend,
            &self.config,
            self.changed.clone(),
            false,
        );
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(refreshes);
        tracing::info!(target_label = %label, subscription = %resolved.scope.subscription, resource_group = %resolved.scope.resource_group, "backend target in use");
        // A target changed (or its Secret) replaces its lane; the old one's refresh stops
        // with the last pass that holds it.
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(label, (fingerprint, lane.clone()));
        Ok(lane)
    }

    /// How a target's requests authenticate, and the version of the Secret read for it.
    async fn credential(
        &self,
        ns: &str,
        t: &BackendTarget,
        label: &str,
    ) -> Result<(Auth, String), TargetFailure> {
        let c = &t.spec.credential;
        let endpoints = self.settings.endpoints.clone().ok_or_else(|| {
            failure(
                "TargetsNotServed",
                format!("BackendTarget {label}: the controller has no Entra ID endpoints (run it with --cloud)"),
            )
        })?;
        let client_id = || c.client_id.clone().unwrap_or_default();
        let tenant_id = t.spec.tenant_id.clone();
        let (method, version) = match c.method {
            CredentialMethod::ClientSecret => {
                let r = c.client_secret_ref.clone().ok_or_else(|| {
                    failure(
                        "TargetInvalid",
                        format!("BackendTarget {label}: spec.credential.clientSecretRef is required with method ClientSecret"),
                    )
                })?;
                let (secret, version) = self.client_secret(ns, &r.name, r.key(), label).await?;
                (
                    Method::ClientSecret {
                        tenant_id,
                        client_id: client_id(),
                        secret,
                    },
                    version,
                )
            }
            CredentialMethod::WorkloadIdentity => (
                Method::Federated {
                    tenant_id,
                    client_id: client_id(),
                    assertion: Arc::new(ServiceAccountToken {
                        client: self.client.clone(),
                        namespace: ns.to_string(),
                        name: c.service_account().to_string(),
                    }),
                },
                String::new(),
            ),
            CredentialMethod::ManagedIdentity => {
                if !self
                    .settings
                    .managed_identity_namespaces
                    .iter()
                    .any(|n| n == ns)
                {
                    return Err(failure(
                        "ManagedIdentityNotAllowed",
                        format!(
                            "BackendTarget {label} asks for the managed identity of the controller's node, which only the namespaces the operator lists in --managed-identity-namespaces may use: ask the operator's administrator, or use WorkloadIdentity"
                        ),
                    ));
                }
                (
                    Method::ManagedIdentity {
                        client_id: c.client_id.clone(),
                    },
                    String::new(),
                )
            }
        };
        Ok((
            Auth::Credential(Credential::new(method, endpoints)),
            version,
        ))
    }

    async fn client_secret(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        label: &str,
    ) -> Result<(crate::azure::Secret, String), TargetFailure> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = api.get_opt(name).await.map_err(|e| {
            failure(
                "TargetCredentialFailed",
                format!("BackendTarget {label}: reading Secret {ns}/{name}: {e}; the controller needs get on secrets (deploy/ RBAC)"),
            )
        })?;
        let Some(s) = s else {
            return Err(failure(
                "TargetCredentialFailed",
                format!(
                    "BackendTarget {label}: Secret {ns}/{name} does not exist: create it in namespace {ns} with the client secret under key {key}"
                ),
            ));
        };
        let value = s
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
            .filter(|v| !v.is_empty());
        let Some(value) = value else {
            return Err(failure(
                "TargetCredentialFailed",
                format!(
                    "BackendTarget {label}: Secret {ns}/{name} has no key {key}: put the client secret under that key, or set spec.credential.clientSecretRef.key"
                ),
            ));
        };
        Ok((
            crate::azure::Secret::new(value),
            s.resource_version().unwrap_or_default(),
        ))
    }
}

/// Makes the ARM clients of targets: each at its subscription's endpoint
/// (`by_subscription`, lower-case ids, else `base`), with the request budget (`limits`) of
/// its principal in its subscription shared by the targets that have both, and its
/// requests counted in `metrics` under its name.
pub fn arm_clients(
    base: String,
    by_subscription: HashMap<String, String>,
    limits: Option<crate::backend::throttle::Limits>,
    metrics: crate::backend::throttle::ArmMetrics,
    instance: Option<String>,
) -> MakeBackend<crate::backend::ArmClient> {
    use crate::backend::throttle::Throttle;
    let budgets: Mutex<HashMap<String, Arc<Throttle>>> = Mutex::default();
    Arc::new(move |t: &Resolved| {
        let endpoint = by_subscription
            .get(&t.scope.subscription.to_ascii_lowercase())
            .unwrap_or(&base);
        let mut client = crate::backend::ArmClient::new(
            endpoint,
            &t.scope.subscription,
            &t.scope.resource_group,
            t.auth.clone(),
        )
        .with_metrics(metrics.for_target(&t.label));
        if let Some(i) = &instance {
            client = client.with_instance(i);
        }
        if let Some(limits) = limits {
            let throttle = budgets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(t.budget_key.clone())
                .or_insert_with(|| Arc::new(Throttle::new(limits)))
                .clone();
            client = client.with_throttle(throttle);
        }
        client
    })
}

/// ARM's budget is per principal and subscription: targets that share both share it.
fn budget_key(t: &BackendTarget) -> String {
    let c = &t.spec.credential;
    format!(
        "{}/{}/{:?}/{}",
        t.spec.tenant_id.to_ascii_lowercase(),
        t.spec.subscription_id.to_ascii_lowercase(),
        c.method,
        c.client_id
            .as_deref()
            .unwrap_or("system")
            .to_ascii_lowercase()
    )
}

/// A token of a service account of the target's namespace, for Entra ID's exchange.
struct ServiceAccountToken {
    client: Client,
    namespace: String,
    name: String,
}

impl Assertion for ServiceAccountToken {
    fn assertion(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, AuthError>> + Send + '_>>
    {
        Box::pin(async move {
            let (ns, name) = (&self.namespace, &self.name);
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: Some(vec![TOKEN_EXCHANGE_AUDIENCE.to_string()]),
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            };
            let answer = api
                .create_token_request(name, &PostParams::default(), &request)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 404 => AuthError(format!(
                        "service account {ns}/{name} does not exist: create it (kubectl create serviceaccount {name} -n {ns}), and federate the identity with subject system:serviceaccount:{ns}:{name}"
                    )),
                    kube::Error::Api(s) if s.code == 403 => AuthError(format!(
                        "the controller may not request a token of service account {ns}/{name}: grant it create on serviceaccounts/token (deploy/ RBAC): {}",
                        s.message
                    )),
                    e => AuthError(format!(
                        "requesting a token of service account {ns}/{name}: {e}"
                    )),
                })?;
            answer
                .status
                .and_then(|s| s.token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    AuthError(format!(
                        "the API server gave no token for service account {ns}/{name}"
                    ))
                })
        })
    }

    fn describe(&self) -> String {
        format!("service account {}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pkg(target: Option<&str>, resource_id: Option<&str>) -> AppAttachPackage {
        let mut p: AppAttachPackage = serde_json::from_value(json!({
            "apiVersion": "appattach.io/v1alpha1", "kind": "AppAttachPackage",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": {"location": "westeurope", "image": {"path": "\\\\fs\\s\\a.cim"},
                "package": {"type": "Msix", "name": "A", "publisher": "CN=A", "version": "1.0.0.0", "applications": [{"id": "App"}]}},
        }))
        .unwrap();
        p.spec.target = target.map(String::from);
        if let Some(id) = resource_id {
            p.status = Some(crate::resources::AppAttachPackageStatus {
                resource_id: Some(id.into()),
                ..Default::default()
            });
        }
        p
    }

    #[test]
    fn a_package_names_its_target_or_takes_the_default() {
        assert_eq!(wanted(&pkg(Some("eu"), None)), ("eu", true));
        assert_eq!(wanted(&pkg(None, None)), ("default", false));
    }

    #[test]
    fn a_package_held_in_another_subscription_is_not_moved() {
        let scope = Scope {
            subscription: "sub-b".into(),
            resource_group: "rg".into(),
        };
        let here = "/subscriptions/SUB-B/resourceGroups/RG/providers/Microsoft.DesktopVirtualization/appAttachPackages/x";
        assert_eq!(moved(&pkg(None, Some(here)), &scope, "ns/t"), None);
        assert_eq!(moved(&pkg(None, None), &scope, "ns/t"), None);
        let there = "/subscriptions/sub-a/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/appAttachPackages/x";
        let f = moved(&pkg(None, Some(there)), &scope, "ns/t").unwrap();
        assert_eq!(f.reason, "TargetChanged");
        assert!(
            f.message.contains("sub-a") && f.message.contains("ns/t"),
            "{}",
            f.message
        );
    }
}
