//! `HostPoolAssignment`: assigns one package to host pools, each in a rollout ring.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PackageRef;

/// Assigns one AppAttachPackage to host pools. Users of those host pools who are also
/// assigned the package (through a UserAssignment) get it at sign-in. Each host pool has a
/// ring: when the package's version changes, lower rings get the new version first.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "appattach.io",
    version = "v1alpha1",
    kind = "HostPoolAssignment",
    plural = "hostpoolassignments",
    shortname = "aapool",
    category = "appattach",
    namespaced,
    doc = "HostPoolAssignment: assigns one AppAttachPackage to host pools, each in a rollout ring; lower rings get a new version first.",
    status = "HostPoolAssignmentStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.packageRef.name"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolAssignmentSpec {
    /// The package to assign, in this namespace. Immutable.
    pub package_ref: PackageRef,

    /// Host pools that get the package, each at most once, each with its rollout ring.
    #[schemars(length(min = 1, max = 500))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub host_pools: Vec<HostPoolRef>,
}

/// One host pool and its ring.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolRef {
    /// Host pool name in the configured resource group, or its full ARM resource id
    /// (`/subscriptions/.../resourceGroups/.../providers/Microsoft.DesktopVirtualization/hostPools/NAME`).
    #[schemars(length(min = 1, max = 1024))]
    pub name: String,

    /// Rollout ring, 0 or more (default 0). Lower rings get a new version first; host pools
    /// of one ring switch together.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub ring: i32,

    /// RemoteApp application groups of this host pool that publish the package's
    /// applications. A user who signs in to the host pool only through a RemoteApp group
    /// gets the package only where its application is published there; a Desktop group
    /// needs nothing. The controller adds the applications (and removes them when the
    /// group, the host pool or the package goes), and never touches applications it did
    /// not make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub remote_app_groups: Vec<RemoteAppGroupRef>,
}

/// A RemoteApp application group that publishes the package's applications.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAppGroupRef {
    /// Application group name in the host pool's resource group, or its full ARM id. It
    /// must be a RemoteApp group of this host pool.
    #[schemars(length(min = 1, max = 1024))]
    pub name: String,

    /// The applications to publish, by their application id in the package manifest
    /// (`spec.package.applications[].id`). Empty (default): every application of the
    /// package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub applications: Vec<PublishedApplication>,
}

/// One application to publish, and how users see it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedApplication {
    /// The application id in the package manifest (`Application@Id`).
    #[schemars(length(min = 1, max = 64))]
    pub id: String,

    /// The name users see in their feed. Default: the application's display name in the
    /// package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 260))]
    pub display_name: Option<String>,

    /// Path of the icon file on the session hosts. Default: the icon in the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub icon_path: Option<String>,

    /// Index of the icon in `iconPath` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub icon_index: Option<i32>,
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolAssignmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (every host pool runs the package) and `Synced` (the last reconcile succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Per host pool: the version it runs and its rollout phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub host_pools: Vec<HostPoolStatus>,

    /// In memory only, never read or written: on the controller's cached copy, which keeps
    /// the conditions alone, the digest of the whole status it was cut from.
    #[serde(skip)]
    #[schemars(skip)]
    pub cached_digest: Option<u64>,
}

/// One host pool of the assignment, as the controller found it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolStatus {
    /// Host pool name as given in the spec.
    pub name: String,
    /// ARM resource id of the host pool, once found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Package version the host pool runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Rollout phase of the host pool, for example `Staging`, `Soaking`, `Done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The package's applications this controller published in the host pool's RemoteApp
    /// application groups, as the backend holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_applications: Option<i32>,
}
