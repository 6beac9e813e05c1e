//! `AppAttachPackage`: one application package in one disk image, and how it reaches users.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Go-style duration, as `kubectl` and Flux write them: `30s`, `5m`, `1h30m`.
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// One MSIX or Appx application package in one disk image on an SMB share, and how it
/// reaches users. The controller reconciles it into an `appAttachPackages` resource of the
/// AVD management backend (or, in `MsixAppAttach` mode, into `msixPackages` under each
/// assigned host pool). HostPoolAssignment and UserAssignment objects say where and to whom.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "appattach.io",
    version = "v1alpha1",
    kind = "AppAttachPackage",
    plural = "appattachpackages",
    shortname = "aap",
    category = "appattach",
    namespaced,
    doc = "AppAttachPackage: one MSIX or Appx application package in one disk image on an SMB share, and how it reaches users. HostPoolAssignment and UserAssignment objects say where and to whom.",
    status = "AppAttachPackageStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.package.version"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","priority":1,"jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Current","type":"string","priority":1,"jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","priority":1,"jsonPath":".status.backendName"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.mode != 'MsixAppAttach' || self.__package__.type in ['Msix', 'MsixBundle']"
).message(
    "spec.package.type: Appx and AppxBundle packages need spec.mode AppAttach; MsixAppAttach supports only Msix and MsixBundle"
).field_path(".package.type"))]
#[x_kube(validation = Rule::new(
    "self.image.path == oldSelf.image.path || self.__package__.version != oldSelf.__package__.version"
).message(
    "spec.package.version must change when spec.image.path changes: the service refuses an in-place update to a new image with the same version"
).field_path(".package.version"))]
#[x_kube(validation = Rule::new(
    "self.__package__.version == oldSelf.__package__.version || self.image.path != oldSelf.image.path"
).message(
    "spec.image.path must change when spec.package.version changes: a new version comes in a new image"
).field_path(".image.path"))]
pub struct AppAttachPackageSpec {
    /// Which AVD feature delivers the package. `AppAttach` (default): the package is its
    /// own backend resource, assigned to host pools and to users or groups. `MsixAppAttach`:
    /// the legacy feature; the package is added under each host pool and reaches every user
    /// of the pool's application groups. A host pool never mixes the two.
    #[serde(default)]
    pub mode: PackageMode,

    /// Azure region of the package, for example `westeurope`. Every assigned host pool
    /// must be in the same region.
    #[schemars(length(min = 1, max = 64))]
    pub location: String,

    /// The disk image on the SMB share that holds the expanded package.
    pub image: ImageSpec,

    /// The package inside the image: identity, version and applications.
    /// `appattach inspect` fills this from the package or the image.
    pub package: PackageSpec,

    /// The code-signing certificate of the package. An expired certificate on a package
    /// that is not timestamped makes the package not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSpec>,

    /// How applications are registered at sign-in. `OnDemand` (default, recommended):
    /// partial registration at sign-in, full registration when the user starts the app.
    /// `LogonBlocking`: full registration during sign-in, which lengthens it.
    #[serde(default)]
    pub registration: Registration,

    /// `Active` (default) packages reach users at sign-in; `Inactive` ones are ignored.
    #[serde(default)]
    pub state: PackageState,

    /// How a session host reports its health when staging this package fails:
    /// `NeedsAssistance` (default), `Unhealthy` or `DoNotFail`.
    #[serde(default)]
    pub health_check_on_staging_failure: HealthCheckOnStagingFailure,

    /// How a version change moves across the assigned host pools, ring by ring.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Stop reconciling this object: nothing is written to the backend until it is false
    /// again. The status says so.
    #[serde(default)]
    pub suspend: bool,

    /// The BackendTarget of this namespace the package goes to (its Azure tenant,
    /// subscription, resource group and identity). Absent: the namespace's target named
    /// `default`, else the operator's own. A package whose backend objects are in one
    /// target is not moved to another: delete it, then create it with the new target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub target: Option<String>,
}

/// Which AVD feature delivers the package.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PackageMode {
    /// App attach: the package is its own backend resource, assigned to host pools and users.
    #[default]
    AppAttach,
    /// MSIX app attach (legacy): the package lives under each host pool.
    MsixAppAttach,
}

/// The disk image holding the expanded package.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.format) || (self.format == 'CimFS' && self.path.lowerAscii().endsWith('.cim')) || (self.format == 'VHDX' && self.path.lowerAscii().endsWith('.vhdx')) || (self.format == 'VHD' && self.path.lowerAscii().endsWith('.vhd'))"
).message(
    "spec.image.format must agree with the extension of spec.image.path (CimFS: .cim, VHDX: .vhdx, VHD: .vhd); fix one of them, or omit format to infer it from the path"
).field_path(".format"))]
pub struct ImageSpec {
    /// UNC path of the image on the SMB share, for example
    /// `\\fs.contoso.com\appattach\MyApp_1.0.0.0.cim`. The extension names the format:
    /// `.cim` (CimFS, with its `objectid_*` and `region_*` files beside it), `.vhdx` or `.vhd`.
    #[schemars(length(min = 5, max = 1024))]
    #[x_kube(validation = Rule::new(
        r"self.matches(r'^\\\\[^\\/]+\\[^\\/]+\\.+$')"
    ).message(
        r"spec.image.path must be a UNC path to a file on an SMB share, like \\server\share\folder\app.cim"
    ))]
    #[x_kube(validation = Rule::new(
        "self.lowerAscii().endsWith('.cim') || self.lowerAscii().endsWith('.vhdx') || self.lowerAscii().endsWith('.vhd')"
    ).message(
        "spec.image.path must end in .cim (CimFS), .vhdx or .vhd: these are the disk image formats app attach mounts"
    ))]
    pub path: String,

    /// Disk image format: `CimFS`, `VHDX` or `VHD`. Inferred from the path's extension
    /// when absent. CimFS is recommended on Windows 11 session hosts; VHD is not recommended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
}

/// Disk image format: `CimFS`, `VHDX` or `VHD`. Inferred from the path's extension when
/// absent. CimFS is recommended on Windows 11 session hosts; VHD is not recommended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImageFormat {
    /// Composite Image File System: a `.cim` file plus `objectid_*` and `region_*` files.
    CimFS,
    /// A `.vhdx` virtual disk.
    #[serde(rename = "VHDX")]
    Vhdx,
    /// A `.vhd` virtual disk (not recommended).
    #[serde(rename = "VHD")]
    Vhd,
}

impl ImageFormat {
    /// The format an image path's extension names, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".cim") {
            Some(Self::CimFS)
        } else if lower.ends_with(".vhdx") {
            Some(Self::Vhdx)
        } else if lower.ends_with(".vhd") {
            Some(Self::Vhd)
        } else {
            None
        }
    }
}

/// The application package inside the image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageSpec {
    /// Package type: `Msix`, `MsixBundle`, `Appx` or `AppxBundle`. Appx and AppxBundle are
    /// supported by app attach only, not by MSIX app attach.
    #[serde(rename = "type")]
    pub package_type: PackageType,

    /// Package name from the manifest's Identity, for example `Contoso.MyApp`. Immutable:
    /// another name is another package.
    #[schemars(length(min = 3, max = 50), regex(pattern = r"^[-.A-Za-z0-9]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.package.name is immutable: a package with another name is another AppAttachPackage"
    ))]
    pub name: String,

    /// Publisher distinguished name from the manifest's Identity, for example
    /// `CN=Contoso, O=Contoso, C=US`. Immutable.
    #[schemars(length(min = 3, max = 8192))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.package.publisher is immutable: a package from another publisher is another AppAttachPackage"
    ))]
    pub publisher: String,

    /// Package version: four dot-separated integers, each 0 to 65535, for example `1.2.3.0`.
    /// Changing it (with a new image) starts a rollout; it may go higher or lower.
    #[schemars(length(min = 7, max = 23))]
    #[x_kube(validation = Rule::new(
        r"self.matches('^[0-9]{1,5}[.][0-9]{1,5}[.][0-9]{1,5}[.][0-9]{1,5}$') && self.split('.').all(p, int(p) <= 65535)"
    ).message(
        "spec.package.version must be four dot-separated integers, each 0 to 65535, like 1.2.3.0"
    ))]
    pub version: String,

    /// Processor architecture from the manifest's Identity: `x64` (default), `x86`,
    /// `arm64`, `arm` or `neutral`. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.package.architecture is immutable: a package for another architecture is another AppAttachPackage"
    ))]
    pub architecture: Architecture,

    /// Package family name (`Name_PublisherId`). Derived from name and publisher when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub family_name: Option<String>,

    /// Package full name (`Name_Version_Architecture_ResourceId_PublisherId`). Derived from
    /// name, version, architecture and publisher when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub full_name: Option<String>,

    /// Display name shown to administrators. Defaults to the package name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub display_name: Option<String>,

    /// Path of the package inside the image, for example
    /// `\Contoso.MyApp_1.2.3.0_x64__8wekyb3d8bbwe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub relative_path: Option<String>,

    /// Applications of the package (the manifest's Applications).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub applications: Vec<Application>,

    /// Packages this package depends on (the manifest's Dependencies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub dependencies: Vec<PackageDependency>,
}

/// Application package type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PackageType {
    /// `.msix`
    Msix,
    /// `.msixbundle`
    MsixBundle,
    /// `.appx` (app attach only)
    Appx,
    /// `.appxbundle` (app attach only)
    AppxBundle,
}

/// Processor architecture, spelled as in the MSIX manifest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// 64-bit x86.
    #[default]
    X64,
    /// 32-bit x86.
    X86,
    /// 64-bit ARM.
    Arm64,
    /// 32-bit ARM.
    Arm,
    /// Any architecture (typical of bundles).
    Neutral,
}

/// One application of the package.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Application id from the manifest, for example `App`.
    #[schemars(length(min = 1, max = 64))]
    pub id: String,

    /// Name shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub display_name: Option<String>,
}

/// A dependency of the package.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageDependency {
    /// Name of the package depended on, for example `Microsoft.VCLibs.140.00`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Publisher distinguished name of the package depended on.
    #[schemars(length(min = 1, max = 8192))]
    pub publisher: String,
    /// Lowest version accepted, four dot-separated integers.
    #[schemars(
        length(min = 7, max = 23),
        regex(pattern = r"^[0-9]{1,5}(\.[0-9]{1,5}){3}$")
    )]
    pub min_version: String,
}

/// The package's code-signing certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Certificate subject, for example `CN=Contoso`.
    #[schemars(length(min = 1, max = 8192))]
    pub subject: String,
    /// When the certificate expires (RFC 3339). Within 30 days gives a Warning; past it, a
    /// package that is not timestamped is not Ready.
    #[schemars(regex(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
    ))]
    pub expiry: String,
    /// Whether the package signature is timestamped, so that it outlasts the certificate.
    #[serde(default)]
    pub timestamped: bool,
    /// SHA-1 thumbprint of the signing certificate, 40 hex digits, as certmgr shows it
    /// (`appattach inspect` fills it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{40}$"))]
    pub thumbprint: Option<String>,
    /// The root certificate the signer's chain leads to, which the session hosts must
    /// trust (`appattach inspect` fills it). When the controller is given the roots the
    /// hosts trust, a package whose root is not among them is not Ready
    /// (`CertificateUntrusted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<CertificateRootSpec>,
}

/// The root of a package's certificate chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRootSpec {
    /// Subject of the root, for example `CN=Contoso Root CA, O=Contoso`.
    #[schemars(length(min = 1, max = 8192))]
    pub subject: String,
    /// SHA-1 thumbprint of the root, 40 hex digits, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{40}$"))]
    pub thumbprint: Option<String>,
}

/// How applications are registered at sign-in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Registration {
    /// Partial registration at sign-in; full registration when the user starts the app.
    #[default]
    OnDemand,
    /// Full registration during sign-in.
    LogonBlocking,
}

/// Whether the package reaches users.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PackageState {
    /// The package is added at sign-in.
    #[default]
    Active,
    /// The package is ignored at sign-in.
    Inactive,
}

/// What a session host's health check reports when staging the package fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HealthCheckOnStagingFailure {
    /// The session host needs assistance.
    #[default]
    NeedsAssistance,
    /// The session host is unhealthy and takes no new sessions.
    Unhealthy,
    /// Staging failures do not fail the health check.
    DoNotFail,
}

/// How a version change moves across the assigned host pools. Rings come from the
/// HostPoolAssignments: lower rings get a new version first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Session hosts of a ring that may fail staging the new image before the ring's
    /// step fails. Default 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub max_staging_failures: i32,

    /// How long a ring runs the new version, staged and healthy, before the next ring
    /// starts. A Go duration such as `30s`, `5m` or `1h`. Default `5m`.
    #[serde(default = "default_soak")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub soak: String,

    /// What a failed gate does: `Rollback` (default) switches the rings back and marks the
    /// version failed; `Pause` holds the rollout for a person.
    #[serde(default)]
    pub on_failure: RolloutFailurePolicy,

    /// Hold the rollout between steps until this is false again.
    #[serde(default)]
    pub paused: bool,

    /// Send users in sessions on switched host pools a message saying which app changes at
    /// their next sign-in.
    #[serde(default)]
    pub notify_users: bool,

    /// For urgent fixes: after this Go duration, sessions still on the old image are logged
    /// off. Absent: sessions keep the old version until they end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub session_grace_period: Option<String>,

    /// For `MsixAppAttach`, which cannot update in place: the weekly window in which
    /// session hosts may be drained to replace the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,

    /// For `MsixAppAttach`: how many session hosts of a host pool may be drained at once.
    /// Default 1.
    #[serde(default = "default_max_unavailable_hosts")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_unavailable_hosts: i32,
}

fn default_soak() -> String {
    "5m".to_string()
}

fn default_max_unavailable_hosts() -> i32 {
    1
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_staging_failures: 0,
            soak: default_soak(),
            on_failure: RolloutFailurePolicy::default(),
            paused: false,
            notify_users: false,
            session_grace_period: None,
            maintenance_window: None,
            max_unavailable_hosts: default_max_unavailable_hosts(),
        }
    }
}

/// What a failed rollout gate does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutFailurePolicy {
    /// Switch every ring back to the previous version and mark the new one failed.
    #[default]
    Rollback,
    /// Hold where it is until a person resumes or undoes the rollout.
    Pause,
}

/// A weekly maintenance window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// Day of the week the window opens.
    pub day_of_week: Weekday,
    /// Local time the window opens, `HH:MM` (24-hour).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start_time: String,
    /// How long the window stays open, a Go duration such as `4h`.
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub duration: String,
    /// IANA time zone of `startTime`, for example `Europe/Amsterdam` or `UTC`.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

/// Day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(missing_docs)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppAttachPackageStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (the backend matches the spec), `Synced` (the last reconcile succeeded),
    /// `Progressing` (a rollout runs), and specific ones such as `CertificateValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Name of the package in the backend, mapped from namespace and name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_name: Option<String>,

    /// ARM resource id of the backend package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,

    /// The version every assigned host pool runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,

    /// The image of the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image_path: Option<String>,

    /// The version a rollout moves toward, while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,

    /// Rollout progress per assigned host pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub host_pools: Vec<HostPoolRollout>,

    /// Images of earlier versions kept because sessions that signed in with them are alive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained_images: Vec<RetainedImage>,

    /// The current or last rollout: where it stands, so a restarted controller resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,

    /// Earlier rollouts, newest first (at most ten): what `rollout history` prints and
    /// `rollout undo` goes back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutRecord>,

    /// Number of host pools the package is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pool_count: Option<i32>,

    /// Number of principals (users and groups) the package is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_count: Option<i32>,

    /// Number of those principals that get the package at sign-in on at least one
    /// assigned host pool, by the sign-in rule, from the application groups the backend
    /// holds (and its directory, where it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached_principal_count: Option<i32>,

    /// Number of session hosts that stage the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_host_count: Option<i32>,

    /// Open handles each file of the image needs on the share: one per session host per
    /// image. Azure Files allows 2,000 per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_handles_per_file: Option<i32>,
}

/// Rollout progress on one host pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPoolRollout {
    /// Host pool name.
    pub name: String,
    /// Ring of the host pool.
    pub ring: i32,
    /// Version the host pool runs: the version of the backend package that references it,
    /// as the backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where this host pool stands: `Ready`, `Pending` (the backend does not give it the
    /// version the spec asks for yet), `Switching`, `Staging`, `Soaking`, `Done`,
    /// `RolledBack`, `Drifted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PoolPhase>,
    /// When the host pool last switched version (RFC 3339): sessions that started before
    /// it run the version it had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<String>,
    /// The version the host pool ran before it switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Session hosts that reported staging the version since the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_hosts: Option<i32>,
    /// Session hosts that reported failing to stage it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hosts: Option<i32>,
    /// Live sessions that started before the switch, on the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version_sessions: Option<i32>,
}

/// One version of the package in the backend: its own app attach package.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionRef {
    /// Package version.
    pub version: String,
    /// UNC path of its image.
    pub image_path: String,
    /// Name of its app attach package in the backend.
    pub backend_name: String,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Counts rollouts of this object, from 1.
    pub revision: i64,
    /// The version the rollout moves to.
    pub target: VersionRef,
    /// The versions it moves from: the one every host pool ran first, then any rollout
    /// target it superseded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<VersionRef>,
    /// `Progressing`, `Paused`, `Held` (a failed gate waits for a person), `RollingBack`,
    /// `Complete`, `Failed`, `Reverted`.
    pub phase: RolloutPhase,
    /// The step in progress: `Pending`, `Switching`, `Staging`, `Soaking`, `Finishing`,
    /// `RollingBack`, `Done`.
    pub step: RolloutStep,
    /// The ring the step works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<i32>,
    /// When the step started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// When the rollout started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// What the rollout is doing or why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The generation whose version failed: it is not tried again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    /// Sessions sent a message about the change (`spec.rollout.notifyUsers`). Counted
    /// when the messages are recorded, before they are sent: a message is sent at most
    /// once, and one whose sending failed is still counted.
    #[serde(default)]
    pub notified_sessions: i32,
    /// Sessions logged off after `spec.rollout.sessionGracePeriod`, counted as
    /// `notifiedSessions` is: recorded before they are logged off, at most once.
    #[serde(default)]
    pub logged_off_sessions: i32,
    /// Host pools (lower case) whose sessions this rollout has messaged: recorded before
    /// the messages go out, so a restarted controller never sends them twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified_pools: Vec<String>,
    /// Host pools (lower case) whose old sessions this rollout has logged off, recorded
    /// before the log-offs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logged_off_pools: Vec<String>,
    /// MSIX app attach: session hosts this rollout drained, to be undrained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drained_hosts: Vec<String>,
    /// MSIX app attach: session hosts of the current ring already drained and undrained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cycled_hosts: Vec<String>,
}

/// One rollout in the history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// The rollout's revision.
    pub revision: i64,
    /// The version rolled out.
    pub version: String,
    /// Its image.
    pub image_path: String,
    /// `spec.package.relativePath` of that version, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_path: Option<String>,
    /// `spec.package.fullName` of that version, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The version it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The image of the version it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image_path: Option<String>,
    /// `Complete`, `Failed`, `Reverted`, `Superseded`.
    pub result: RolloutResult,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it ended so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An image of an earlier version, kept while sessions use it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetainedImage {
    /// UNC path of the image: do not delete it from the share while sessions use it.
    pub path: String,
    /// Package version in the image.
    pub version: String,
    /// Live sessions that may use this image: sessions on the host pools that ran it,
    /// started before they switched, of users the package is assigned to. An upper bound:
    /// ARM does not say which package a session runs, and without a directory every
    /// member of an assigned group counts.
    pub sessions: i32,
    /// When the image stopped serving new sign-ins (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Where a rollout stands (`status.rollout.phase`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// Moving ring by ring.
    Progressing,
    /// `spec.rollout.paused` holds it between steps.
    Paused,
    /// A gate failed with `onFailure: Pause`: waiting for a person (or for the hosts to
    /// stage after all).
    Held,
    /// Moving every host pool back to the previous version.
    RollingBack,
    /// Every host pool runs the target version.
    Complete,
    /// The target failed its gate and was rolled back.
    Failed,
    /// The spec went back to the previous version mid-rollout; rolled back.
    Reverted,
}

impl RolloutPhase {
    /// Whether a rollout in this phase still has work to do.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Progressing | Self::Paused | Self::Held | Self::RollingBack
        )
    }

    /// The name, as the CRD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progressing => "Progressing",
            Self::Paused => "Paused",
            Self::Held => "Held",
            Self::RollingBack => "RollingBack",
            Self::Complete => "Complete",
            Self::Failed => "Failed",
            Self::Reverted => "Reverted",
        }
    }
}

/// The step a rollout is in (`status.rollout.step`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutStep {
    /// Recorded; no host pool switched yet.
    Pending,
    /// A ring's host pools are moving to the target (backend writes in flight; in MSIX
    /// app attach mode, batches of session hosts are drained and the package replaced).
    Switching,
    /// Waiting for the ring's session hosts to stage the target.
    Staging,
    /// The ring staged; waiting for `spec.rollout.soak` to pass.
    Soaking,
    /// Removing the previous versions from the backend.
    Finishing,
    /// Moving every host pool back (backend writes in flight).
    RollingBack,
    /// Nothing more to do.
    Done,
}

impl RolloutStep {
    /// The name, as the CRD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Switching => "Switching",
            Self::Staging => "Staging",
            Self::Soaking => "Soaking",
            Self::Finishing => "Finishing",
            Self::RollingBack => "RollingBack",
            Self::Done => "Done",
        }
    }
}

/// How a rollout ended (`status.history[].result`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutResult {
    /// Every host pool ran the version.
    Complete,
    /// Its gate failed; rolled back.
    Failed,
    /// The spec went back mid-rollout; rolled back.
    Reverted,
    /// A newer version replaced it mid-rollout.
    Superseded,
}

impl RolloutResult {
    /// The name, as the CRD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "Complete",
            Self::Failed => "Failed",
            Self::Reverted => "Reverted",
            Self::Superseded => "Superseded",
        }
    }
}

/// Where a host pool stands: `Ready` (it runs the spec's version), `Pending` (not yet: its
/// ring has not switched, or the backend does not give it the package; see the package's
/// conditions), `Switching`, `Staging`, `Soaking`, `Done` (it runs the target; later rings
/// still move), `RolledBack`, `Drifted` (policy skip: the backend differs), `Removing` (no
/// longer assigned; the package is being removed from it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PoolPhase {
    /// It runs the version the spec asks for.
    Ready,
    /// It does not run the spec's version yet: its ring has not switched, or the backend
    /// does not reference the package from it (see the package's conditions).
    Pending,
    /// Its ring is switching to the target.
    Switching,
    /// It switched; its session hosts are staging the target.
    Staging,
    /// It staged; its ring soaks.
    Soaking,
    /// It runs the target; later rings are still moving.
    Done,
    /// It went back to the previous version when the rollout was rolled back.
    RolledBack,
    /// Reconcile policy `skip`: the backend differs from the spec here.
    Drifted,
    /// No longer assigned: the package is being removed from it.
    Removing,
}

impl PoolPhase {
    /// The name, as the CRD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Pending => "Pending",
            Self::Switching => "Switching",
            Self::Staging => "Staging",
            Self::Soaking => "Soaking",
            Self::Done => "Done",
            Self::RolledBack => "RolledBack",
            Self::Drifted => "Drifted",
            Self::Removing => "Removing",
        }
    }
}
