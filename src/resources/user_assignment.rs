//! `UserAssignment`: assigns one package to users and groups.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PackageRef;

/// A directory object id: a GUID.
const GUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Assigns one AppAttachPackage to users and groups. A user gets the package on a host pool
/// at sign-in when the package is Active and assigned to that host pool, the user can sign
/// in to the host pool, and the package is assigned to the user or to one of the user's
/// groups. The controller writes one "Desktop Virtualization User" role assignment per
/// principal at the package's scope.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "appattach.io",
    version = "v1alpha1",
    kind = "UserAssignment",
    plural = "userassignments",
    shortname = "aauser",
    category = "appattach",
    namespaced,
    doc = "UserAssignment: assigns one AppAttachPackage to users and groups of the directory.",
    status = "UserAssignmentStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.packageRef.name"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignmentSpec {
    /// The package to assign, in this namespace. Immutable.
    pub package_ref: PackageRef,

    /// Users and groups that get the package, each at most once (by kind and name).
    #[schemars(length(min = 1, max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "name"]))]
    pub principals: Vec<PrincipalRef>,
}

/// A user or group of the directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalRef {
    /// `User` or `Group`.
    pub kind: PrincipalKind,

    /// User principal name (`alice@contoso.com`) or group name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,

    /// Directory object id (a GUID) of the user or group. Required by the Azure backend,
    /// which assigns roles by object id; the emulator can resolve it from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub object_id: Option<String>,
}

/// Kind of principal.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum PrincipalKind {
    /// A user account.
    User,
    /// A group; its members get the package.
    Group,
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (every principal holds its role assignment) and `Synced` (the last reconcile
    /// succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The principals as resolved in the directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<ResolvedPrincipal>,

    /// In memory only, never read or written: on the controller's cached copy, which keeps
    /// the conditions alone, the digest of the whole status it was cut from.
    #[serde(skip)]
    #[schemars(skip)]
    pub cached_digest: Option<u64>,
}

/// A principal of the assignment, as resolved in the directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPrincipal {
    /// `User` or `Group`.
    pub kind: PrincipalKind,
    /// Name as given in the spec.
    pub name: String,
    /// Directory object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Name (a GUID) of the role assignment written for this principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_assignment: Option<String>,
}
