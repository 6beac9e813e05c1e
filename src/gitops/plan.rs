//! `appattach plan`: what applying the manifests would change, computed with the
//! controller's own build step against what the backend holds, like `terraform plan`.
//! Per package: the backend package created, changed or removed (its host-pool references
//! and fields), the role assignments made and removed, the rollout that would start and
//! its rings; and for people: who gains or loses which app on which host pool. It only
//! reads the backend.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use super::validate::{Objects, PackageCheck};
use crate::arm::models::{AppAttachPackage as ArmPackage, RoleAssignment};
use crate::backend::{ArmClient, Backend, BackendError};
use crate::controller::build::{self, OWNER_TAG};
use crate::controller::validate::Severity;
use crate::controller::{Policy, msix_body};
use crate::domain::entitlements::{self, AppGroup, AppGroupKind, Feature};
use crate::domain::naming;
use crate::emulator::world::Directory;
use crate::resources::{AppAttachPackage, PackageMode, PackageState};

/// What applying the manifests would do.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// What the plan was computed against.
    pub against: String,
    /// Per AppAttachPackage of the manifests.
    pub packages: Vec<PackagePlan>,
    /// Backend packages of this controller whose object is gone from the manifests.
    pub removals: Vec<Removal>,
    /// Who gains or loses which app on which host pool.
    pub entitlements: Vec<EntitlementChange>,
    /// `users` when a directory expanded groups to their members; `principals` when the
    /// changes are given per assigned user or group (Azure: the directory is not read).
    pub entitlements_of: String,
}

impl Plan {
    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty()
            && self.entitlements.is_empty()
            && self.packages.iter().all(|p| p.changes.is_empty())
    }

    /// Whether some package would not be reconciled as it is.
    pub fn has_errors(&self) -> bool {
        self.packages
            .iter()
            .any(|p| p.status == Status::NotReconciled)
    }
}

/// What happens to one package.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum Status {
    /// Made in the backend.
    Create,
    /// Changed in place.
    Update,
    /// A version change, ring by ring.
    Rollout,
    /// The backend already matches.
    NoChange,
    /// The controller would refuse it (`Ready=False`): nothing is written.
    NotReconciled,
    /// `spec.suspend` or the reconcile policy `skip`: the changes shown are not written.
    NotWritten,
}

/// The plan of one AppAttachPackage.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PackagePlan {
    /// `namespace/name`.
    pub object: String,
    /// Where it is declared (`file:line`).
    pub source: String,
    /// Its name in the backend.
    pub backend_name: String,
    /// `AppAttach` or `MsixAppAttach`.
    pub mode: PackageMode,
    /// What happens.
    pub status: Status,
    /// Why, when it is not reconciled or not written (`Reason: message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The backend writes, in order.
    pub changes: Vec<Change>,
    /// The rollout that would start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPlan>,
}

/// One backend write.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The resource, e.g. `appAttachPackages/avd-apps-expenses`.
    pub resource: String,
    /// What is written.
    pub detail: String,
}

impl Change {
    fn new(action: &str, resource: String, detail: String) -> Self {
        Self {
            action: action.into(),
            resource,
            detail,
        }
    }
}

/// A version change's way through the rings.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlan {
    /// The version the host pools run now.
    pub from: String,
    /// The version they move to.
    pub to: String,
    /// The rings, lowest first.
    pub rings: Vec<Ring>,
    /// What gates each ring (staging, soak, failure policy).
    pub gate: String,
}

/// One ring of a rollout.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ring {
    /// Ring number.
    pub ring: i32,
    /// Its host pools.
    pub host_pools: Vec<String>,
}

/// A backend package whose object left the manifests.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// `namespace/name` of the object that owned it.
    pub object: String,
    /// The backend package.
    pub backend_name: String,
    /// Its version.
    pub version: String,
    /// Role assignments removed with it.
    pub role_assignments: usize,
}

/// One person's (or principal's) change on one host pool.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct EntitlementChange {
    /// UPN of the user, or `Group NAME` / `User NAME` per principal.
    pub who: String,
    /// Host pool name.
    pub host_pool: String,
    /// The app (package display name or family name).
    pub package: String,
    /// `gains`, `loses` or `changes`.
    pub change: String,
    /// The version before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The version after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
}

/// What the backend holds, read once.
struct Backend0 {
    packages: Vec<ArmPackage>,
    /// Role assignments of the Desktop Virtualization User role at each package, by
    /// lower-case package id.
    roles: BTreeMap<String, Vec<RoleAssignment>>,
}

fn owner(p: &ArmPackage) -> Option<&String> {
    p.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
}

fn version(p: &ArmPackage) -> String {
    p.properties
        .image
        .as_ref()
        .and_then(|i| i.version.clone())
        .unwrap_or_default()
}

fn leaf(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn is_dvu(r: &RoleAssignment) -> bool {
    r.properties
        .role_definition_id
        .to_ascii_lowercase()
        .ends_with(crate::arm::DESKTOP_VIRTUALIZATION_USER_ROLE)
}

/// Computes the plan of validated manifests against a backend. `directory`, when known,
/// expands groups to their members for the entitlement changes.
pub async fn plan(
    client: &ArmClient,
    against: &str,
    objects: &Objects,
    checks: &[PackageCheck],
    directory: Option<&Directory>,
) -> Result<Plan, BackendError> {
    let mut held = Backend0 {
        packages: client.list_packages().await?,
        roles: BTreeMap::new(),
    };
    for p in &held.packages {
        if let Some(id) = &p.id {
            let roles = client.list_role_assignments(id).await?;
            held.roles.insert(
                id.to_ascii_lowercase(),
                roles.into_iter().filter(is_dvu).collect(),
            );
        }
    }
    let names = principal_names(objects);
    let mut packages = Vec::new();
    // The packages sign-in would see after the changes, replacing those of each object.
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut added: Vec<entitlements::Package> = Vec::new();
    for check in checks {
        let (p, after) = plan_package(client, &held, check, &names).await?;
        if let Some(after) = after {
            replaced.extend(after.replaces);
            added.extend(after.packages);
        }
        packages.push(p);
    }
    let declared: BTreeSet<String> = objects.packages.iter().map(|p| key(&p.object)).collect();
    let namespaces: BTreeSet<String> = objects
        .packages
        .iter()
        .chain(std::iter::empty())
        .map(|p| p.object.namespace().unwrap_or_default())
        .chain(
            objects
                .host_pool_assignments
                .iter()
                .map(|a| a.object.namespace().unwrap_or_default()),
        )
        .chain(
            objects
                .user_assignments
                .iter()
                .map(|a| a.object.namespace().unwrap_or_default()),
        )
        .collect();
    let mut removals = Vec::new();
    for p in &held.packages {
        let Some(o) = owner(p) else { continue };
        let ns = o.split_once('/').map(|(ns, _)| ns).unwrap_or_default();
        if namespaces.contains(ns) && !declared.contains(o) {
            let id = p.id.clone().unwrap_or_default();
            removals.push(Removal {
                object: o.clone(),
                backend_name: leaf(&id).to_string(),
                version: version(p),
                role_assignments: held.roles.get(&id.to_ascii_lowercase()).map_or(0, Vec::len),
            });
            replaced.insert(id.to_ascii_lowercase());
        }
    }
    let (entitlements, entitlements_of) =
        entitlement_changes(client, &held, &replaced, &added, objects, directory, &names).await?;
    Ok(Plan {
        against: against.to_string(),
        packages,
        removals,
        entitlements,
        entitlements_of,
    })
}

fn key(p: &AppAttachPackage) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// How the manifests name each principal (by lower-case object id): `Group Finance`.
fn principal_names(objects: &Objects) -> BTreeMap<String, String> {
    objects
        .user_assignments
        .iter()
        .flat_map(|a| &a.object.spec.principals)
        .filter_map(|p| {
            Some((
                p.object_id.as_ref()?.to_ascii_lowercase(),
                format!("{:?} {}", p.kind, p.name),
            ))
        })
        .collect()
}

/// What sign-in sees of one object after the change: the backend package ids it replaces
/// and the packages that take their place.
struct After {
    replaces: Vec<String>,
    packages: Vec<entitlements::Package>,
}

async fn plan_package(
    client: &ArmClient,
    held: &Backend0,
    check: &PackageCheck,
    names: &BTreeMap<String, String>,
) -> Result<(PackagePlan, Option<After>), BackendError> {
    let pkg = &check.package.object;
    let spec = &pkg.spec;
    let ns = pkg.namespace().unwrap_or_default();
    let object = key(pkg);
    let home = naming::backend_name(&ns, &pkg.name_any());
    let mut out = PackagePlan {
        object: object.clone(),
        source: format!("{}:{}", check.package.doc.file, check.package.doc.line),
        backend_name: home.clone(),
        mode: spec.mode,
        status: Status::NoChange,
        reason: None,
        changes: vec![],
        rollout: None,
    };
    if let Some(e) = check
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error)
    {
        out.status = Status::NotReconciled;
        out.reason = Some(format!("{}: {}", e.reason, e.message));
        return Ok((out, None));
    }
    let Some(obs) = &check.observed else {
        return Ok((out, None));
    };
    let who = |oid: &str| names.get(oid).cloned().unwrap_or_else(|| oid.to_string());
    let pool_name = |id: &str| {
        obs.pool_ids
            .iter()
            .find(|(_, i, _)| i.eq_ignore_ascii_case(id))
            .map_or_else(|| leaf(id).to_string(), |(n, _, _)| n.clone())
    };
    let pool_ids: Vec<String> = obs.pool_ids.iter().map(|(_, id, _)| id.clone()).collect();
    let rings = rings_of(obs);
    let (family, full) = build::identity(spec);
    let display = spec
        .package
        .display_name
        .clone()
        .unwrap_or_else(|| spec.package.name.clone());
    let active = spec.state == PackageState::Active;
    let mut after = After {
        replaces: vec![],
        packages: vec![],
    };
    match spec.mode {
        PackageMode::AppAttach => {
            let owned: Vec<&ArmPackage> = held
                .packages
                .iter()
                .filter(|p| owner(p) == Some(&object))
                .collect();
            // Adopted in place: a package made elsewhere, under the name this maps to.
            let adopted: Vec<&ArmPackage> = held
                .packages
                .iter()
                .filter(|p| owner(p).is_none() && p.id.as_deref().is_some_and(|i| leaf(i) == home))
                .collect();
            let current: Vec<&ArmPackage> = if owned.is_empty() { adopted } else { owned };
            after.replaces = current
                .iter()
                .filter_map(|p| p.id.as_ref().map(|i| i.to_ascii_lowercase()))
                .collect();
            let at_version = current
                .iter()
                .find(|p| version(p) == spec.package.version)
                .copied();
            let target = match (at_version, current.first()) {
                (Some(p), _) => p.id.as_deref().map(leaf).unwrap_or(&home).to_string(),
                (None, Some(_)) => {
                    naming::versioned_backend_name(&ns, &pkg.name_any(), &spec.package.version)
                }
                (None, None) => home.clone(),
            };
            out.backend_name = target.clone();
            let target_id = client.package_id(&target);
            let desired = build::build(
                spec,
                &object,
                client.subscription(),
                &target_id,
                &pool_ids,
                &obs.principals,
            );
            let resource = format!("appAttachPackages/{target}");
            let observed_roles = held
                .roles
                .get(&target_id.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default();
            match at_version {
                None => {
                    out.status = Status::Create;
                    out.changes.push(Change::new(
                        "create",
                        resource.clone(),
                        format!(
                            "{display} {} from {}, {}, {} host pool(s): {}",
                            spec.package.version,
                            spec.image.path,
                            if active { "active" } else { "inactive" },
                            pool_ids.len(),
                            pool_ids
                                .iter()
                                .map(|i| pool_name(i))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                Some(p) if build::package_differs(&desired.package, p) => {
                    out.status = Status::Update;
                    out.changes.push(Change::new(
                        "update",
                        resource.clone(),
                        differences(&desired.package, p, &pool_name).join("; "),
                    ));
                }
                Some(_) => {}
            }
            let (create, delete) = build::role_changes(&desired.roles, &observed_roles);
            for name in create {
                let r = &desired.roles[&name];
                out.changes.push(Change::new(
                    "create",
                    format!("roleAssignments/{name}"),
                    format!(
                        "Desktop Virtualization User for {} at {resource}",
                        who(&r.properties.principal_id)
                    ),
                ));
            }
            for id in delete {
                let principal = observed_roles
                    .iter()
                    .find(|r| r.id.as_deref() == Some(&id))
                    .map(|r| who(&r.properties.principal_id.to_ascii_lowercase()))
                    .unwrap_or_default();
                out.changes.push(Change::new(
                    "delete",
                    format!("roleAssignments/{}", leaf(&id)),
                    format!("Desktop Virtualization User for {principal} at {resource}"),
                ));
            }
            if out.status == Status::NoChange && !out.changes.is_empty() {
                out.status = Status::Update; // role assignments only
            }
            // A version change: the new version beside the old, ring by ring.
            let others: Vec<&&ArmPackage> = current
                .iter()
                .filter(|p| p.id.as_deref().map(leaf) != Some(target.as_str()))
                .collect();
            if let Some(from) = others.first() {
                out.status = Status::Rollout;
                for ring in &rings {
                    out.changes.push(Change::new(
                        "update",
                        format!("appAttachPackages/{target}"),
                        format!(
                            "ring {}: host pool(s) {} switch to {} once the ring before has staged it and soaked",
                            ring.ring,
                            ring.host_pools.join(", "),
                            spec.package.version
                        ),
                    ));
                }
                for old in &others {
                    let id = old.id.clone().unwrap_or_default();
                    let roles = held.roles.get(&id.to_ascii_lowercase()).map_or(0, Vec::len);
                    out.changes.push(Change::new(
                        "delete",
                        format!("appAttachPackages/{}", leaf(&id)),
                        format!(
                            "{} {} and its {roles} role assignment(s), once every host pool runs {}; its image stays listed while sessions use it",
                            display,
                            version(old),
                            spec.package.version
                        ),
                    ));
                }
                out.rollout = Some(RolloutPlan {
                    from: version(from),
                    to: spec.package.version.clone(),
                    rings,
                    gate: gate(spec),
                });
            }
            after.packages.push(entitlements::Package {
                id: target_id,
                feature: Feature::AppAttach,
                family_name: family.clone(),
                version: spec.package.version.clone(),
                image_path: spec.image.path.clone(),
                active,
                host_pools: pool_ids.clone(),
                principals: obs.principals.iter().map(|p| p.object_id.clone()).collect(),
            });
        }
        PackageMode::MsixAppAttach => {
            let desired = build::build(spec, &object, client.subscription(), "", &[], &[]);
            let body = msix_body(&desired);
            for (name, id, _) in &obs.pool_ids {
                let on_pool = client.list_msix_packages(id).await?;
                let same_family: Vec<_> = on_pool
                    .iter()
                    .filter(|m| {
                        m.properties
                            .package_family_name
                            .as_deref()
                            .is_some_and(|f| f.eq_ignore_ascii_case(&family))
                    })
                    .collect();
                let resource = format!("hostPools/{name}/msixPackages/{full}");
                let exact = same_family
                    .iter()
                    .find(|m| m.id.as_deref().map(leaf) == Some(full.as_str()));
                match exact {
                    Some(m) => {
                        let mut held_props = m.properties.clone();
                        held_props.last_updated = None;
                        if held_props != body.properties {
                            out.status = Status::Update;
                            out.changes.push(Change::new(
                                "update",
                                resource,
                                json_differences(
                                    &serde_json::to_value(&body.properties).unwrap_or_default(),
                                    &serde_json::to_value(&held_props).unwrap_or_default(),
                                    "",
                                )
                                .join("; "),
                            ));
                        }
                    }
                    None => {
                        out.changes.push(Change::new(
                            "create",
                            resource,
                            format!(
                                "{display} {} from {}",
                                spec.package.version, spec.image.path
                            ),
                        ));
                        if out.status == Status::NoChange {
                            out.status = Status::Create;
                        }
                    }
                }
                for old in same_family
                    .iter()
                    .filter(|m| m.id.as_deref().map(leaf) != Some(full.as_str()))
                {
                    let old_version = old.properties.version.clone().unwrap_or_default();
                    out.changes.push(Change::new(
                        "delete",
                        format!(
                            "hostPools/{name}/msixPackages/{}",
                            old.id.as_deref().map(leaf).unwrap_or_default()
                        ),
                        format!(
                            "{display} {old_version}, replaced by {} while its session hosts are drained ({} at a time, inside the maintenance window)",
                            spec.package.version, spec.rollout.max_unavailable_hosts
                        ),
                    ));
                    out.status = Status::Rollout;
                    if out.rollout.is_none() {
                        out.rollout = Some(RolloutPlan {
                            from: old_version,
                            to: spec.package.version.clone(),
                            rings: rings.clone(),
                            gate: match &spec.rollout.maintenance_window {
                                Some(w) => format!(
                                    "MSIX app attach cannot update in place: session hosts are drained, {} at a time, {} {} for {} ({})",
                                    spec.rollout.max_unavailable_hosts,
                                    serde_json::to_value(w.day_of_week)
                                        .ok()
                                        .and_then(|v| v.as_str().map(String::from))
                                        .unwrap_or_default(),
                                    w.start_time,
                                    w.duration,
                                    w.time_zone
                                ),
                                None => format!(
                                    "MSIX app attach cannot update in place: session hosts are drained, {} at a time, whenever their sessions end",
                                    spec.rollout.max_unavailable_hosts
                                ),
                            },
                        });
                    }
                }
                after.replaces.extend(
                    same_family
                        .iter()
                        .filter_map(|m| m.id.as_ref().map(|i| i.to_ascii_lowercase())),
                );
                after.packages.push(entitlements::Package {
                    id: format!("{id}/msixPackages/{full}"),
                    feature: Feature::MsixAppAttach,
                    family_name: family.clone(),
                    version: spec.package.version.clone(),
                    image_path: spec.image.path.clone(),
                    active,
                    host_pools: vec![id.clone()],
                    principals: BTreeSet::new(),
                });
            }
        }
    }
    let policy = Policy::of(pkg.as_ref()).unwrap_or(Policy::Manage);
    if (spec.suspend || policy == Policy::Skip) && !out.changes.is_empty() {
        out.status = Status::NotWritten;
        out.reason = Some(if spec.suspend {
            "Suspended: spec.suspend is true; nothing is written until it is false".into()
        } else {
            "Observed: reconcile policy skip; drift is reported, not corrected".into()
        });
        return Ok((out, None));
    }
    Ok((out, Some(after)))
}

fn rings_of(obs: &crate::controller::Observed) -> Vec<Ring> {
    let mut by_ring: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (name, _, ring) in &obs.pool_ids {
        by_ring.entry(*ring).or_default().push(name.clone());
    }
    by_ring
        .into_iter()
        .map(|(ring, host_pools)| Ring { ring, host_pools })
        .collect()
}

fn gate(spec: &crate::resources::AppAttachPackageSpec) -> String {
    let r = &spec.rollout;
    format!(
        "each ring: every session host stages the new image (at most {} failure(s)), then {} soak; on failure: {:?}{}",
        r.max_staging_failures,
        r.soak,
        r.on_failure,
        if r.paused {
            "; spec.rollout.paused holds it before the first ring"
        } else {
            ""
        }
    )
}

/// The fields in which the backend's package differs from the desired one.
fn differences(
    desired: &ArmPackage,
    held: &ArmPackage,
    pool_name: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let d = &desired.properties;
    let h = &held.properties;
    let lower = |v: &Option<Vec<String>>| -> BTreeMap<String, String> {
        v.iter()
            .flatten()
            .map(|s| (s.to_ascii_lowercase(), pool_name(s)))
            .collect()
    };
    let (dp, hp) = (
        lower(&d.host_pool_references),
        lower(&h.host_pool_references),
    );
    let add: Vec<&String> = dp
        .iter()
        .filter(|(k, _)| !hp.contains_key(*k))
        .map(|(_, v)| v)
        .collect();
    let remove: Vec<&String> = hp
        .iter()
        .filter(|(k, _)| !dp.contains_key(*k))
        .map(|(_, v)| v)
        .collect();
    if !add.is_empty() || !remove.is_empty() {
        let mut parts = Vec::new();
        if !add.is_empty() {
            parts.push(format!(
                "add {}",
                add.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !remove.is_empty() {
            parts.push(format!(
                "remove {}",
                remove
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.push(format!("hostPoolReferences: {}", parts.join(", ")));
    }
    if !desired
        .location
        .as_deref()
        .unwrap_or_default()
        .eq_ignore_ascii_case(held.location.as_deref().unwrap_or_default())
    {
        out.push(format!(
            "location: {} -> {}",
            held.location.as_deref().unwrap_or("-"),
            desired.location.as_deref().unwrap_or("-")
        ));
    }
    if desired.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
        != held.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
    {
        out.push(format!(
            "tags.{OWNER_TAG}: {} -> {}",
            held.tags
                .as_ref()
                .and_then(|t| t.get(OWNER_TAG))
                .map_or("-", String::as_str),
            desired
                .tags
                .as_ref()
                .and_then(|t| t.get(OWNER_TAG))
                .map_or("-", String::as_str)
        ));
    }
    if d.fail_health_check_on_staging_failure != h.fail_health_check_on_staging_failure {
        out.push(format!(
            "failHealthCheckOnStagingFailure: {:?} -> {:?}",
            h.fail_health_check_on_staging_failure, d.fail_health_check_on_staging_failure
        ));
    }
    let image = |i: &Option<crate::arm::models::AppAttachPackageInfoProperties>| {
        let mut v = serde_json::to_value(i).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("lastUpdated");
        }
        v
    };
    out.extend(json_differences(
        &image(&d.image),
        &image(&h.image),
        "image.",
    ));
    out
}

/// `field: held -> desired` for each top-level field that differs.
fn json_differences(desired: &Value, held: &Value, prefix: &str) -> Vec<String> {
    let empty = serde_json::Map::new();
    let d = desired.as_object().unwrap_or(&empty);
    let h = held.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = d.keys().chain(h.keys()).collect();
    let show = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    keys.into_iter()
        .filter(|k| d.get(*k).unwrap_or(&Value::Null) != h.get(*k).unwrap_or(&Value::Null))
        .map(|k| format!("{prefix}{k}: {} -> {}", show(h.get(k)), show(d.get(k))))
        .collect()
}

/// Who gains and who loses what, per host pool: sign-in's rule before and after.
async fn entitlement_changes(
    client: &ArmClient,
    held: &Backend0,
    replaced: &BTreeSet<String>,
    added: &[entitlements::Package],
    objects: &Objects,
    directory: Option<&Directory>,
    names: &BTreeMap<String, String>,
) -> Result<(Vec<EntitlementChange>, String), BackendError> {
    // Host pools and their application groups.
    let pools = client.list_host_pools().await?;
    let groups = client.list_application_groups().await?;
    let mut views = Vec::new();
    for pool in &pools {
        let Some(pool_id) = &pool.id else { continue };
        let mut app_groups = Vec::new();
        for g in groups.iter().filter(|g| {
            g.properties
                .host_pool_arm_path
                .eq_ignore_ascii_case(pool_id)
        }) {
            let Some(gid) = &g.id else { continue };
            let members = client
                .list_role_assignments(gid)
                .await?
                .into_iter()
                .filter(is_dvu)
                .map(|r| r.properties.principal_id.to_ascii_lowercase())
                .collect();
            let remote = g.properties.application_group_type
                == crate::arm::models::ApplicationGroupType::RemoteApp;
            let published_families = if remote {
                client
                    .list_applications(gid)
                    .await?
                    .into_iter()
                    .filter_map(|a| a.properties.msix_package_family_name)
                    .map(|f| f.to_ascii_lowercase())
                    .collect()
            } else {
                BTreeSet::new()
            };
            app_groups.push(AppGroup {
                kind: if remote {
                    AppGroupKind::RemoteApp
                } else {
                    AppGroupKind::Desktop
                },
                members,
                published_families,
            });
        }
        views.push((
            pool.name
                .clone()
                .unwrap_or_else(|| leaf(pool_id).to_string()),
            entitlements::HostPool {
                id: pool_id.clone(),
                app_groups,
            },
        ));
    }
    // The packages sign-in sees now, and after.
    let mut before = Vec::new();
    for p in &held.packages {
        let Some(id) = &p.id else { continue };
        let image = p.properties.image.clone().unwrap_or_default();
        before.push(entitlements::Package {
            id: id.clone(),
            feature: Feature::AppAttach,
            family_name: image.package_family_name.unwrap_or_default(),
            version: image.version.unwrap_or_default(),
            image_path: image.image_path.unwrap_or_default(),
            active: image.is_active == Some(true),
            host_pools: p
                .properties
                .host_pool_references
                .clone()
                .unwrap_or_default(),
            principals: held
                .roles
                .get(&id.to_ascii_lowercase())
                .into_iter()
                .flatten()
                .map(|r| r.properties.principal_id.to_ascii_lowercase())
                .collect(),
        });
    }
    for (_, view) in &views {
        for m in client.list_msix_packages(&view.id).await? {
            let Some(id) = m.id else { continue };
            before.push(entitlements::Package {
                id,
                feature: Feature::MsixAppAttach,
                family_name: m.properties.package_family_name.unwrap_or_default(),
                version: m.properties.version.unwrap_or_default(),
                image_path: m.properties.image_path.unwrap_or_default(),
                active: m.properties.is_active == Some(true),
                host_pools: vec![view.id.clone()],
                principals: BTreeSet::new(),
            });
        }
    }
    let after: Vec<entitlements::Package> = before
        .iter()
        .filter(|p| !replaced.contains(&p.id.to_ascii_lowercase()))
        .cloned()
        .chain(added.iter().cloned())
        .collect();
    // Who: the directory's users, or each principal on its own.
    let (people, of): (Vec<(String, entitlements::User)>, &str) = match directory {
        Some(d) => {
            let group_ids: BTreeMap<String, String> = d
                .groups
                .iter()
                .map(|g| {
                    (
                        g.name.to_ascii_lowercase(),
                        g.object_id.to_ascii_lowercase(),
                    )
                })
                .collect();
            let users = d
                .users
                .iter()
                .map(|u| {
                    (
                        u.upn.clone(),
                        entitlements::User {
                            object_id: u.object_id.to_ascii_lowercase(),
                            groups: u
                                .groups
                                .iter()
                                .filter_map(|g| group_ids.get(&g.to_ascii_lowercase()).cloned())
                                .collect(),
                        },
                    )
                })
                .collect();
            (users, "users")
        }
        None => {
            let ids: BTreeSet<String> = before
                .iter()
                .chain(&after)
                .flat_map(|p| p.principals.iter().cloned())
                .collect();
            let principals = ids
                .into_iter()
                .map(|id| {
                    (
                        names.get(&id).cloned().unwrap_or_else(|| id.clone()),
                        entitlements::User {
                            object_id: id,
                            groups: BTreeSet::new(),
                        },
                    )
                })
                .collect();
            (principals, "principals")
        }
    };
    // How to call an app: as the manifests do, else by its family name.
    let mut apps: BTreeMap<String, String> = BTreeMap::new();
    for p in &objects.packages {
        let (family, _) = build::identity(&p.object.spec);
        let s = &p.object.spec.package;
        apps.insert(
            family.to_ascii_lowercase(),
            s.display_name.clone().unwrap_or_else(|| s.name.clone()),
        );
    }
    let app = |family: &str| {
        apps.get(&family.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| family.to_string())
    };
    let mut changes = Vec::new();
    for (who, user) in &people {
        for (pool, view) in &views {
            let versions = |pkgs: &[entitlements::Package]| -> BTreeMap<String, (String, String)> {
                entitlements::entitled(user, view, pkgs)
                    .into_iter()
                    .map(|e| {
                        (
                            e.family_name.to_ascii_lowercase(),
                            (e.family_name, e.version),
                        )
                    })
                    .collect()
            };
            let (b, a) = (versions(&before), versions(&after));
            for (family, (name, v)) in &a {
                match b.get(family) {
                    None => changes.push(EntitlementChange {
                        who: who.clone(),
                        host_pool: pool.clone(),
                        package: app(name),
                        change: "gains".into(),
                        from_version: None,
                        to_version: Some(v.clone()),
                    }),
                    Some((_, old)) if old != v => changes.push(EntitlementChange {
                        who: who.clone(),
                        host_pool: pool.clone(),
                        package: app(name),
                        change: "changes".into(),
                        from_version: Some(old.clone()),
                        to_version: Some(v.clone()),
                    }),
                    Some(_) => {}
                }
            }
            for (family, (name, v)) in &b {
                if !a.contains_key(family) {
                    changes.push(EntitlementChange {
                        who: who.clone(),
                        host_pool: pool.clone(),
                        package: app(name),
                        change: "loses".into(),
                        from_version: Some(v.clone()),
                        to_version: None,
                    });
                }
            }
        }
    }
    changes.sort();
    Ok((changes, of.to_string()))
}
