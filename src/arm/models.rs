//! Request and response bodies, as the published schema definitions name them. Optional
//! fields are omitted when absent; unknown fields are ignored, as ARM does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The envelope every resource shares: id, name, type, location, tags, properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource<P> {
    /// Full ARM id (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name; `parent/child` for child resources (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resource type (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub resource_type: Option<String>,
    /// Azure region (required for tracked resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Resource tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Resource-specific properties.
    pub properties: P,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// The items of this page.
    pub value: Vec<T>,
    /// The URL of the next page, absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// `provisioningState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ProvisioningState {
    Succeeded,
    Provisioning,
    Failed,
    Canceled,
}

/// `failHealthCheckOnStagingFailure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum FailHealthCheckOnStagingFailure {
    Unhealthy,
    NeedsAssistance,
    DoNotFail,
}

/// `isPackageTimestamped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PackageTimestamped {
    Timestamped,
    NotTimestamped,
}

/// An app attach package.
pub type AppAttachPackage = Resource<AppAttachPackageProperties>;

/// `AppAttachPackageProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppAttachPackageProperties {
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// The package and its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<AppAttachPackageInfoProperties>,
    /// Ids of the host pools the package is assigned to; replaced whole on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pool_references: Option<Vec<String>>,
    /// Key Vault URL of the certificate, if any.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "keyVaultURL"
    )]
    pub key_vault_url: Option<String>,
    /// How staging failures affect the session host's health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_health_check_on_staging_failure: Option<FailHealthCheckOnStagingFailure>,
}

/// `AppAttachPackageInfoProperties`: the package inside its image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct AppAttachPackageInfoProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_relative_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_regular_registration: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_dependencies: Option<Vec<MsixPackageDependencies>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_applications: Option<Vec<MsixPackageApplications>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_package_timestamped: Option<PackageTimestamped>,
}

/// `MsixPackageApplications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MsixPackageApplications {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "appUserModelID"
    )]
    pub app_user_model_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_png: Option<String>,
}

/// `MsixPackageDependencies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MsixPackageDependencies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// The body of PATCH on an app attach package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppAttachPackagePatch {
    /// Tags to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Properties to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<AppAttachPackagePatchProperties>,
}

/// `AppAttachPackagePatchProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct AppAttachPackagePatchProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<AppAttachPackageInfoProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pool_references: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "keyVaultURL"
    )]
    pub key_vault_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_health_check_on_staging_failure: Option<FailHealthCheckOnStagingFailure>,
}

/// `hostPoolType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum HostPoolType {
    Personal,
    Pooled,
    #[serde(rename = "BYODesktop")]
    ByoDesktop,
}

/// `loadBalancerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum LoadBalancerType {
    BreadthFirst,
    DepthFirst,
    Persistent,
}

/// `preferredAppGroupType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PreferredAppGroupType {
    None,
    Desktop,
    RailApplications,
}

/// A host pool.
pub type HostPool = Resource<HostPoolProperties>;

/// `HostPoolProperties` (the fields app attach uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct HostPoolProperties {
    pub host_pool_type: HostPoolType,
    pub load_balancer_type: LoadBalancerType,
    pub preferred_app_group_type: PreferredAppGroupType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_rdp_property: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_environment: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "startVMOnConnect"
    )]
    pub start_vm_on_connect: Option<bool>,
    /// Read-only: the application groups of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_group_references: Option<Vec<String>>,
    /// Read-only: the app attach packages that reference the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_attach_package_references: Option<Vec<String>>,
}

/// An MSIX package under a host pool (MSIX app attach).
pub type MsixPackage = Resource<MsixPackageProperties>;

/// `MSIXPackageProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MsixPackageProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_relative_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_regular_registration: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_dependencies: Option<Vec<MsixPackageDependencies>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_applications: Option<Vec<MsixPackageApplications>>,
}

/// The body of PATCH on an MSIX package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MsixPackagePatch {
    /// Properties to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<MsixPackagePatchProperties>,
}

/// `MSIXPackagePatchProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct MsixPackagePatchProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_regular_registration: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `applicationGroupType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ApplicationGroupType {
    RemoteApp,
    Desktop,
}

/// An application group.
pub type ApplicationGroup = Resource<ApplicationGroupProperties>;

/// `ApplicationGroupProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ApplicationGroupProperties {
    pub host_pool_arm_path: String,
    pub application_group_type: ApplicationGroupType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_arm_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_in_feed: Option<bool>,
}

/// `applicationType` of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum RemoteApplicationType {
    InBuilt,
    MsixApplication,
}

/// `commandLineSetting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum CommandLineSetting {
    DoNotAllow,
    Allow,
    Require,
}

/// An application of a RemoteApp application group.
pub type Application = Resource<ApplicationProperties>;

/// `ApplicationProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ApplicationProperties {
    pub command_line_setting: CommandLineSetting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<RemoteApplicationType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msix_package_family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msix_package_application_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line_arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_in_portal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_index: Option<i32>,
}

/// A session host.
pub type SessionHost = Resource<SessionHostProperties>;

/// `SessionHostProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SessionHostProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heart_beat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_new_session: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// `Available`, `Unavailable`, `NeedsAssistance`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "sxSStackVersion"
    )]
    pub sxs_stack_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_host_health_check_results: Option<Vec<SessionHostHealthCheckReport>>,
}

impl SessionHostProperties {
    /// The host's last `AppAttachHealthCheck`: what it said of staging the images of its
    /// host pool's active packages.
    pub fn app_attach_health_check(&self) -> Option<&SessionHostHealthCheckReport> {
        self.session_host_health_check_results
            .iter()
            .flatten()
            .find(|c| c.health_check_name.as_deref() == Some("AppAttachHealthCheck"))
    }
}

/// `SessionHostHealthCheckReport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SessionHostHealthCheckReport {
    /// For example `AppAttachHealthCheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_name: Option<String>,
    /// `Unknown`, `HealthCheckSucceeded`, `HealthCheckFailed`, `SessionHostShutdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_failure_details: Option<SessionHostHealthCheckFailureDetails>,
}

/// `SessionHostHealthCheckFailureDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SessionHostHealthCheckFailureDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check_date_time: Option<String>,
}

/// The body of PATCH on a session host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionHostPatch {
    /// Properties to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<SessionHostPatchProperties>,
}

/// `SessionHostPatchProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SessionHostPatchProperties {
    /// False drains the host: no new sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_new_session: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// A user session.
pub type UserSession = Resource<UserSessionProperties>;

/// `UserSessionProperties`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct UserSessionProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    /// `RemoteApp` or `Desktop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// `Active`, `Disconnected`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_directory_user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
}

/// The body of sendMessage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_body: Option<String>,
}

/// Body of `hostPools/{hostPoolName}/importAppAttachPackageInfo` (`ImportPackageInfoRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ImportPackageInfoRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `ARM`, `ARM64`, `x86`, `x64`, `Neutral`, `x86a64` or `ALL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_architecture: Option<String>,
}

/// `principalType` of a role assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PrincipalType {
    User,
    Group,
    ServicePrincipal,
    ForeignGroup,
    Device,
}

/// A role assignment (`Microsoft.Authorization/roleAssignments`, 2022-04-01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// Full id: `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The assignment's name, a GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Microsoft.Authorization/roleAssignments`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub resource_type: Option<String>,
    /// The assignment.
    pub properties: RoleAssignmentProperties,
}

impl RoleAssignment {
    /// Whether it assigns the "Desktop Virtualization User" role, the one this operator
    /// writes and reads (membership of application groups, access to packages).
    pub fn is_desktop_virtualization_user(&self) -> bool {
        self.properties
            .role_definition_id
            .to_ascii_lowercase()
            .ends_with(super::DESKTOP_VIRTUALIZATION_USER_ROLE)
    }
}

/// `RoleAssignmentProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct RoleAssignmentProperties {
    /// `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
    pub role_definition_id: String,
    /// Object id of the user or group.
    pub principal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<PrincipalType>,
    /// Read-only: the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The condition that limits what the assignment grants (Azure ABAC), e.g.
    /// `@Resource[...] StringEquals '...'`; kept as read, so a writer never drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The version of `condition`'s language: `2.0`, the only one ARM accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_on: Option<String>,
}

/// The role definition id of `role` (a GUID) in `subscription`.
pub fn role_definition_id(subscription: &str, role: &str) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_assignment_read_and_written_back_keeps_its_condition() {
        let read = serde_json::json!({
            "id": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/n",
            "name": "n",
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/r",
                "principalId": "p",
                "principalType": "Group",
                "condition": "@Resource[Microsoft.DesktopVirtualization/appAttachPackages:name] StringEquals 'a'",
                "conditionVersion": "2.0"
            }
        });
        let model: RoleAssignment = serde_json::from_value(read.clone()).unwrap();
        assert_eq!(model.properties.condition_version.as_deref(), Some("2.0"));
        assert_eq!(serde_json::to_value(&model).unwrap(), read);
        let mut plain = read;
        let props = plain["properties"].as_object_mut().unwrap();
        props.remove("condition");
        props.remove("conditionVersion");
        let model: RoleAssignment = serde_json::from_value(plain.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&model).unwrap(),
            plain,
            "no nulls written"
        );
    }
}
