//! MSIX and Appx packages and bundles (ZIP/OPC): the manifest's identity, applications,
//! dependencies and target device families, and the signature.

use serde::Serialize;

use super::signature::SignatureFacts;

/// Facts of one package, from its `AppxManifest.xml` (and its signature, when read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFacts {
    /// Identity Name.
    pub name: String,
    /// Identity Publisher.
    pub publisher: String,
    /// Identity Version.
    pub version: String,
    /// Identity ProcessorArchitecture (`neutral` when absent).
    pub architecture: String,
    /// Identity ResourceId (empty when absent).
    pub resource_id: String,
    /// Publisher id: 13 Crockford base32 characters.
    pub publisher_id: String,
    /// `Name_PublisherId`.
    pub family_name: String,
    /// `Name_Version_Arch_ResourceId_PublisherId`.
    pub full_name: String,
    /// Properties DisplayName.
    pub display_name: Option<String>,
    /// Properties PublisherDisplayName.
    pub publisher_display_name: Option<String>,
    /// Applications.
    pub applications: Vec<AppFacts>,
    /// PackageDependency elements.
    pub dependencies: Vec<DependencyFacts>,
    /// TargetDeviceFamily elements.
    pub target_device_families: Vec<DeviceFamily>,
    /// The signature, when the package has one.
    pub signature: Option<SignatureFacts>,
}

/// One application of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFacts {
    /// Application Id.
    pub id: String,
    /// VisualElements DisplayName.
    pub display_name: Option<String>,
    /// `PackageFamilyName!Id`.
    pub app_user_model_id: String,
}

/// One dependency of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyFacts {
    /// Name.
    pub name: String,
    /// Publisher.
    pub publisher: String,
    /// MinVersion.
    pub min_version: String,
}

/// One TargetDeviceFamily.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFamily {
    /// Name, e.g. `Windows.Desktop`.
    pub name: String,
    /// MinVersion.
    pub min_version: String,
    /// MaxVersionTested.
    pub max_version_tested: Option<String>,
}
