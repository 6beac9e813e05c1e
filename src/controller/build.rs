//! The desired backend state of one package, and its difference from what the backend
//! holds. Pure: the reconciler reads, calls these, and writes only the difference.

use std::collections::{BTreeMap, BTreeSet};

use crate::arm::models::{
    AppAttachPackage, AppAttachPackageInfoProperties, AppAttachPackageProperties,
    FailHealthCheckOnStagingFailure, MsixPackageApplications, MsixPackageDependencies,
    PackageTimestamped, PrincipalType, RoleAssignment, RoleAssignmentProperties,
    role_definition_id,
};
use crate::arm::{self, models::Resource};
use crate::domain::naming;
use crate::resources::{
    AppAttachPackageSpec, HealthCheckOnStagingFailure, PackageState, Registration,
};

/// The tag that names the Kubernetes object owning a backend package (`namespace/name`).
pub const OWNER_TAG: &str = "appattach.io/owner";

/// A principal to assign: its object id and kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Principal {
    /// Directory object id.
    pub object_id: String,
    /// User or Group.
    pub kind: PrincipalType,
}

/// What the backend should hold for one package.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The app attach package resource.
    pub package: AppAttachPackage,
    /// Role assignments at the package's scope, by name.
    pub roles: BTreeMap<String, RoleAssignment>,
}

/// The package's identity strings, derived where the spec leaves them out.
pub fn identity(spec: &AppAttachPackageSpec) -> (String, String) {
    let p = &spec.package;
    let arch = serde_json::to_value(p.architecture)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let family = p
        .family_name
        .clone()
        .unwrap_or_else(|| naming::family_name(&p.name, &p.publisher));
    let full = p
        .full_name
        .clone()
        .unwrap_or_else(|| naming::full_name(&p.name, &p.version, &arch, &p.publisher));
    (family, full)
}

/// Builds the desired state: `owner` is `namespace/name`; `package_id` the backend id;
/// `pool_ids` the assigned host pools; `principals` the assigned users and groups.
pub fn build(
    spec: &AppAttachPackageSpec,
    owner: &str,
    subscription: &str,
    package_id: &str,
    pool_ids: &[String],
    principals: &[Principal],
) -> Desired {
    let mut refs: Vec<String> = pool_ids.to_vec();
    refs.sort_by_key(|r| r.to_ascii_lowercase());
    refs.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    let package = Resource {
        id: None,
        name: None,
        resource_type: None,
        location: Some(spec.location.clone()),
        tags: Some(BTreeMap::from([(OWNER_TAG.to_string(), owner.to_string())])),
        properties: AppAttachPackageProperties {
            provisioning_state: None,
            image: Some(image(spec)),
            host_pool_references: Some(refs),
            key_vault_url: None,
            fail_health_check_on_staging_failure: Some(
                match spec.health_check_on_staging_failure {
                    HealthCheckOnStagingFailure::NeedsAssistance => {
                        FailHealthCheckOnStagingFailure::NeedsAssistance
                    }
                    HealthCheckOnStagingFailure::Unhealthy => {
                        FailHealthCheckOnStagingFailure::Unhealthy
                    }
                    HealthCheckOnStagingFailure::DoNotFail => {
                        FailHealthCheckOnStagingFailure::DoNotFail
                    }
                },
            ),
        },
    };
    Desired {
        package,
        roles: roles(owner, subscription, package_id, principals),
    }
}

/// What the package resource says of its image and package.
fn image(spec: &AppAttachPackageSpec) -> AppAttachPackageInfoProperties {
    let p = &spec.package;
    let (family, full) = identity(spec);
    AppAttachPackageInfoProperties {
        package_alias: Some(p.name.to_ascii_lowercase().replace('.', "")),
        image_path: Some(spec.image.path.clone()),
        package_name: Some(p.name.clone()),
        package_family_name: Some(family),
        package_full_name: Some(full),
        display_name: Some(p.display_name.clone().unwrap_or_else(|| p.name.clone())),
        package_relative_path: p.relative_path.clone(),
        is_regular_registration: Some(spec.registration == Registration::LogonBlocking),
        is_active: Some(spec.state == PackageState::Active),
        package_dependencies: Some(
            p.dependencies
                .iter()
                .map(|d| MsixPackageDependencies {
                    dependency_name: Some(d.name.clone()),
                    publisher: Some(d.publisher.clone()),
                    min_version: Some(d.min_version.clone()),
                })
                .collect(),
        ),
        version: Some(p.version.clone()),
        last_updated: None,
        package_applications: Some(
            p.applications
                .iter()
                .map(|a| MsixPackageApplications {
                    app_id: Some(a.id.clone()),
                    friendly_name: a.display_name.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        certificate_name: spec.certificate.as_ref().map(|c| c.subject.clone()),
        certificate_expiry: spec.certificate.as_ref().map(|c| c.expiry.clone()),
        is_package_timestamped: spec.certificate.as_ref().map(|c| {
            if c.timestamped {
                PackageTimestamped::Timestamped
            } else {
                PackageTimestamped::NotTimestamped
            }
        }),
    }
}

/// One "Desktop Virtualization User" role assignment per principal at the package's
/// scope, by its deterministic name.
fn roles(
    owner: &str,
    subscription: &str,
    package_id: &str,
    principals: &[Principal],
) -> BTreeMap<String, RoleAssignment> {
    let role = role_definition_id(subscription, arm::DESKTOP_VIRTUALIZATION_USER_ROLE);
    principals
        .iter()
        .map(|pr| {
            let name = arm::role_assignment_name(
                package_id,
                &pr.object_id,
                arm::DESKTOP_VIRTUALIZATION_USER_ROLE,
            );
            let body = RoleAssignment {
                id: None,
                name: None,
                resource_type: None,
                properties: RoleAssignmentProperties {
                    role_definition_id: role.clone(),
                    principal_id: pr.object_id.to_ascii_lowercase(),
                    principal_type: Some(pr.kind),
                    scope: None,
                    description: Some(format!("app attach: {owner}")),
                    condition: None,
                    condition_version: None,
                    created_on: None,
                    updated_on: None,
                },
            };
            (name, body)
        })
        .collect()
}

/// Whether the backend's package differs from the desired one in anything we set.
pub fn package_differs(desired: &AppAttachPackage, observed: &AppAttachPackage) -> bool {
    let lower_set = |v: &Option<Vec<String>>| -> BTreeSet<String> {
        v.iter().flatten().map(|s| s.to_ascii_lowercase()).collect()
    };
    let strip = |i: &Option<AppAttachPackageInfoProperties>| {
        i.clone().map(|mut i| {
            i.last_updated = None;
            i
        })
    };
    let (d, o) = (&desired.properties, &observed.properties);
    !crate::arm::location::same(
        desired.location.as_deref().unwrap_or_default(),
        observed.location.as_deref().unwrap_or_default(),
    ) || desired.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
        != observed.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
        || lower_set(&d.host_pool_references) != lower_set(&o.host_pool_references)
        || d.fail_health_check_on_staging_failure != o.fail_health_check_on_staging_failure
        || strip(&d.image) != strip(&o.image)
}

/// Role assignments to create (names) and to delete (full ids), given those observed at
/// the package's scope. Only Desktop Virtualization User assignments are ours to remove.
/// An assignment of the role to a wanted principal under another name (made in the
/// portal, or by an earlier tool) is adopted: kept, and not made again.
pub fn role_changes(
    desired: &BTreeMap<String, RoleAssignment>,
    observed: &[RoleAssignment],
) -> (Vec<String>, Vec<String>) {
    let ours: Vec<&RoleAssignment> = observed
        .iter()
        .filter(|r| r.is_desktop_virtualization_user())
        .collect();
    let held: BTreeSet<String> = ours
        .iter()
        .map(|r| r.properties.principal_id.to_ascii_lowercase())
        .collect();
    let wanted: BTreeSet<String> = desired
        .values()
        .map(|r| r.properties.principal_id.to_ascii_lowercase())
        .collect();
    let create = desired
        .iter()
        .filter(|(_, r)| !held.contains(&r.properties.principal_id.to_ascii_lowercase()))
        .map(|(n, _)| n.clone())
        .collect();
    let delete = ours
        .iter()
        .filter(|r| !wanted.contains(&r.properties.principal_id.to_ascii_lowercase()))
        .filter_map(|r| r.id.clone())
        .collect();
    (create, delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AppAttachPackageSpec {
        serde_yaml_ng::from_str(
            r#"
location: westeurope
image: {path: '\\fs\apps\a.cim'}
package:
  type: Msix
  name: Contoso.Expenses
  publisher: CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, S=Washington, C=US
  version: 2.4.1.0
  applications: [{id: App, displayName: Expenses}]
registration: LogonBlocking
"#,
        )
        .unwrap()
    }

    fn principals() -> Vec<Principal> {
        vec![
            Principal {
                object_id: "6F1C2D3E-4A5B-4C6D-8E7F-90A1B2C3D4E5".into(),
                kind: PrincipalType::Group,
            },
            Principal {
                object_id: "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f".into(),
                kind: PrincipalType::User,
            },
        ]
    }

    #[test]
    fn the_desired_package_carries_identity_state_and_pools() {
        let d = build(
            &spec(),
            "ns/expenses",
            "sub",
            "/pkg",
            &["/b".into(), "/A".into(), "/a".into()],
            &principals(),
        );
        let image = d.package.properties.image.clone().unwrap();
        assert_eq!(
            image.package_family_name.as_deref(),
            Some("Contoso.Expenses_8wekyb3d8bbwe")
        );
        assert_eq!(
            image.package_full_name.as_deref(),
            Some("Contoso.Expenses_2.4.1.0_x64__8wekyb3d8bbwe")
        );
        assert_eq!(image.is_regular_registration, Some(true));
        assert_eq!(image.is_active, Some(true));
        assert_eq!(
            d.package.properties.host_pool_references,
            Some(vec!["/A".to_string(), "/b".to_string()])
        );
        assert_eq!(d.package.tags.as_ref().unwrap()[OWNER_TAG], "ns/expenses");
        assert_eq!(d.roles.len(), 2);
        assert!(
            d.roles.values().all(
                |r| r.properties.principal_id == r.properties.principal_id.to_ascii_lowercase()
            )
        );
    }

    #[test]
    fn the_same_input_builds_the_same_names() {
        let a = build(&spec(), "ns/e", "sub", "/pkg", &[], &principals());
        let b = build(&spec(), "ns/e", "sub", "/pkg", &[], &principals());
        assert_eq!(a, b);
    }

    #[test]
    fn server_fields_and_reference_order_are_not_differences() {
        let d = build(
            &spec(),
            "ns/e",
            "sub",
            "/pkg",
            &["/a".into(), "/b".into()],
            &[],
        )
        .package;
        let mut observed = d.clone();
        observed.properties.provisioning_state =
            Some(crate::arm::models::ProvisioningState::Succeeded);
        observed.properties.image.as_mut().unwrap().last_updated =
            Some("2026-01-01T00:00:00Z".into());
        observed.properties.host_pool_references = Some(vec!["/B".into(), "/A".into()]);
        assert!(!package_differs(&d, &observed));
        observed.properties.image.as_mut().unwrap().is_active = Some(false);
        assert!(package_differs(&d, &observed));
    }

    #[test]
    fn a_location_arm_normalized_is_not_a_difference() {
        let mut spaced = spec();
        spaced.location = "West Europe".into();
        let d = build(&spaced, "ns/e", "sub", "/pkg", &[], &[]).package;
        let mut observed = d.clone();
        observed.location = Some("westeurope".into());
        assert!(!package_differs(&d, &observed), "ARM stores westeurope");
        observed.location = Some("northeurope".into());
        assert!(package_differs(&d, &observed));
    }

    #[test]
    fn role_changes_add_what_is_missing_and_remove_what_is_not_desired() {
        let d = build(&spec(), "ns/e", "sub", "/pkg", &[], &principals());
        let (create, delete) = role_changes(&d.roles, &[]);
        assert_eq!(create.len(), 2);
        assert!(delete.is_empty());
        let mut observed: Vec<RoleAssignment> = d
            .roles
            .iter()
            .map(|(n, r)| RoleAssignment {
                id: Some(format!(
                    "/pkg/providers/Microsoft.Authorization/roleAssignments/{n}"
                )),
                name: Some(n.clone()),
                ..r.clone()
            })
            .collect();
        // Someone else's assignment of the role to a wanted principal is adopted.
        let mut adopted = observed[0].clone();
        adopted.name = Some("00000000-0000-4000-8000-000000000002".into());
        adopted.id = Some("/pkg/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000002".into());
        let (create, delete) = role_changes(&d.roles, &[adopted, observed[1].clone()]);
        assert!(
            create.is_empty() && delete.is_empty(),
            "{create:?} {delete:?}"
        );
        // One for a principal no longer assigned goes.
        let mut stale = observed[0].clone();
        stale.properties.principal_id = "0badc0de-0000-4000-8000-000000000000".into();
        stale.name = Some("00000000-0000-4000-8000-000000000001".into());
        stale.id = Some("/pkg/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000001".into());
        observed.push(stale);
        let (create, delete) = role_changes(&d.roles, &observed);
        assert!(create.is_empty());
        assert_eq!(
            delete,
            [
                "/pkg/providers/Microsoft.Authorization/roleAssignments/00000000-0000-4000-8000-000000000001"
            ]
        );
    }
}
