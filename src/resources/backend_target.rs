//! `BackendTarget`: where a namespace's packages go in Azure, and as whom.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GUID, as Entra ID and ARM spell tenant, subscription and client ids.
const GUID: &str = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The name of the namespace's default target: the one a package that names none uses.
pub const DEFAULT_TARGET: &str = "default";

/// The service account whose token a workload identity target exchanges, when it names
/// none.
pub const DEFAULT_WORKLOAD_SERVICE_ACCOUNT: &str = "appattach-workload";

/// The key of the client secret in its Secret, when the target names none.
pub const DEFAULT_SECRET_KEY: &str = "AZURE_CLIENT_SECRET";

/// Where the packages of this namespace go in Azure (tenant, subscription, resource
/// group) and the identity the controller acts as there. The one named `default` serves
/// every package of the namespace that names no other in `spec.target`; with none, the
/// operator's own flags do (unless it runs with `--require-backend-target`). A target
/// serves its own namespace only: its Secret and its service account are read there.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "appattach.io",
    version = "v1alpha1",
    kind = "BackendTarget",
    plural = "backendtargets",
    shortname = "aatarget",
    category = "appattach",
    namespaced,
    doc = "BackendTarget: the Azure tenant, subscription and resource group this namespace's packages go to, and the identity the controller acts as there. The one named default serves packages that name no other.",
    printcolumn = r#"{"name":"Subscription","type":"string","jsonPath":".spec.subscriptionId"}"#,
    printcolumn = r#"{"name":"ResourceGroup","type":"string","jsonPath":".spec.resourceGroup"}"#,
    printcolumn = r#"{"name":"Credential","type":"string","jsonPath":".spec.credential.method"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Tenant","type":"string","priority":1,"jsonPath":".spec.tenantId"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTargetSpec {
    /// Directory (tenant) id of Entra ID that the subscription trusts.
    #[schemars(regex(pattern = GUID))]
    pub tenant_id: String,

    /// Subscription id of the host pools and of the packages this target writes.
    #[schemars(regex(pattern = GUID))]
    pub subscription_id: String,

    /// Resource group the packages are written to, and where host pools given by name
    /// are found (a host pool elsewhere is given by its full ARM id).
    #[schemars(length(min = 1, max = 90), regex(pattern = r"^[-\w\._\(\)]+$"))]
    pub resource_group: String,

    /// How the controller signs in to Entra ID for this target.
    pub credential: TargetCredential,
}

/// How the controller signs in for a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.method == 'ManagedIdentity' || has(self.clientId)"
).message(
    "spec.credential.clientId is required for WorkloadIdentity and ClientSecret: the application (client) id of the identity"
).field_path(".clientId"))]
#[x_kube(validation = Rule::new(
    "(self.method == 'ClientSecret') == has(self.clientSecretRef)"
).message(
    "spec.credential.clientSecretRef is required with method ClientSecret, and only with it"
).field_path(".clientSecretRef"))]
#[x_kube(validation = Rule::new(
    "self.method == 'WorkloadIdentity' || !has(self.serviceAccountName)"
).message(
    "spec.credential.serviceAccountName is for method WorkloadIdentity only"
).field_path(".serviceAccountName"))]
pub struct TargetCredential {
    /// `WorkloadIdentity`: the controller requests a token of a service account of this
    /// namespace (audience `api://AzureADTokenExchange`) and exchanges it with Entra ID;
    /// the identity's federated credential must name that service account
    /// (`system:serviceaccount:<namespace>:<serviceAccountName>`). `ClientSecret`: an
    /// application's secret, from a Secret of this namespace. `ManagedIdentity`: the
    /// managed identity of the controller's node, allowed only in the namespaces the
    /// operator lists in `--managed-identity-namespaces`.
    pub method: CredentialMethod,

    /// Application (client) id of the identity; for ManagedIdentity, the user-assigned
    /// identity's (the system-assigned one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GUID))]
    pub client_id: Option<String>,

    /// WorkloadIdentity: the service account of this namespace whose token is exchanged
    /// (default `appattach-workload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// ClientSecret: the Secret of this namespace, and its key, that holds the client
    /// secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
}

/// How the controller signs in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CredentialMethod {
    /// A service account token of the namespace, exchanged with Entra ID.
    WorkloadIdentity,
    /// An application's client secret, from a Secret of the namespace.
    ClientSecret,
    /// The managed identity of the controller's node.
    ManagedIdentity,
}

/// A key of a Secret in the target's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the target's namespace (a Secret of another namespace
    /// cannot be named).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret's data (default `AZURE_CLIENT_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

impl TargetCredential {
    /// The service account a workload identity target exchanges.
    pub fn service_account(&self) -> &str {
        self.service_account_name
            .as_deref()
            .unwrap_or(DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
    }
}

impl SecretKeyRef {
    /// The key of the client secret.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_SECRET_KEY)
    }
}
