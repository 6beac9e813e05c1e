//! The kinds of `appattach.io/v1alpha1`: what an administrator applies (three), and where
//! a namespace's packages go (`BackendTarget`).
//!
//! The Rust types are the source of truth: `appattach crd` prints the CRDs generated
//! from them, and `crds/` holds that output. Every field carries a doc comment, which is
//! what `kubectl explain` prints. Rules the API server can check live here, in the schema
//! and in CEL (`x-kubernetes-validations`), so a bad manifest is refused at apply time.

mod backend_target;
mod common;
mod host_pool_assignment;
mod package;
mod user_assignment;

pub use backend_target::{
    BackendTarget, BackendTargetSpec, CredentialMethod, DEFAULT_SECRET_KEY, DEFAULT_TARGET,
    DEFAULT_WORKLOAD_SERVICE_ACCOUNT, SecretKeyRef, TargetCredential,
};
pub use common::{PackageRef, condition};
pub use host_pool_assignment::{
    HostPoolAssignment, HostPoolAssignmentSpec, HostPoolAssignmentStatus, HostPoolRef,
    HostPoolStatus, PublishedApplication, RemoteAppGroupRef,
};
pub use package::{
    AppAttachPackage, AppAttachPackageSpec, AppAttachPackageStatus, Application, Architecture,
    CertificateRootSpec, CertificateSpec, HealthCheckOnStagingFailure, HostPoolRollout,
    ImageFormat, ImageSpec, MaintenanceWindow, PackageDependency, PackageMode, PackageSpec,
    PackageState, PackageType, PoolPhase, Registration, RetainedImage, RolloutFailurePolicy,
    RolloutPhase, RolloutRecord, RolloutResult, RolloutSpec, RolloutStatus, RolloutStep,
    VersionRef, Weekday,
};
pub use user_assignment::{
    PrincipalKind, PrincipalRef, ResolvedPrincipal, UserAssignment, UserAssignmentSpec,
    UserAssignmentStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind.
pub const GROUP: &str = "appattach.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The category that `kubectl get appattach` lists.
pub const CATEGORY: &str = "appattach";

/// The API resource of one of the three kinds, by its kind name, for dynamic clients.
pub fn api_resource(kind: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: format!("{}s", kind.to_ascii_lowercase()),
    }
}

/// The command that installs the CRDs, run from the repository root: what the
/// controller tells a user whose cluster lacks them, and what the README says.
pub const INSTALL_CRDS: &str = "kubectl apply --server-side -f crds/";

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        AppAttachPackage::crd(),
        HostPoolAssignment::crd(),
        UserAssignment::crd(),
        BackendTarget::crd(),
    ]
    .into_iter()
    .map(without_nullable)
    .collect()
}

/// Drops `nullable: true`, which the schema generator puts on every `Option` field. Our
/// optional fields are omitted when absent, never sent as null; a schema that accepted null
/// would let `format: null` through to CEL rules that expect a string or nothing.
fn without_nullable(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("nullable");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
    strip(&mut json);
    serde_json::from_value(json).expect("a CRD without nullable is still a CRD")
}

/// The CRDs as one multi-document YAML stream: what `appattach crd` prints and
/// `crds/appattach.io.yaml` holds.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crds_match_the_types() {
        let checked_in = include_str!("../../crds/appattach.io.yaml");
        assert!(
            checked_in == crds_yaml().unwrap(),
            "crds/appattach.io.yaml is stale: run `cargo run -- crd > crds/appattach.io.yaml`"
        );
    }

    /// `kubectl explain` prints descriptions; a field without one is a gap in the docs.
    #[test]
    fn every_field_has_a_description() {
        fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (name, sub) in props {
                    let sub_path = format!("{path}.{name}");
                    let generated = path.is_empty()
                        && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
                    if sub.get("description").is_none() && !generated {
                        missing.push(sub_path.clone());
                    }
                    walk(&sub_path, sub, missing);
                }
            }
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        for crd in crds() {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            walk(
                &crd.spec.names.kind,
                &schema["openAPIV3Schema"],
                &mut missing,
            );
        }
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }

    #[test]
    fn no_schema_accepts_null() {
        let yaml = crds_yaml().unwrap();
        assert!(!yaml.contains("nullable"), "a field accepts null");
    }

    #[test]
    fn image_format_is_inferred_from_the_extension() {
        assert_eq!(
            ImageFormat::from_path(r"\\fs\s\a.cim"),
            Some(ImageFormat::CimFS)
        );
        assert_eq!(
            ImageFormat::from_path(r"\\fs\s\a.VHDX"),
            Some(ImageFormat::Vhdx)
        );
        assert_eq!(
            ImageFormat::from_path(r"\\fs\s\a.vhd"),
            Some(ImageFormat::Vhd)
        );
        assert_eq!(ImageFormat::from_path(r"\\fs\s\a.vhd.zip"), None);
    }
}
