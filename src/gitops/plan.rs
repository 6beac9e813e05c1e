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
use crate::arm::models::Application;
use crate::arm::models::{
    AppAttachPackage as ArmPackage, ApplicationGroupType, HostPool, MsixPackage,
};
use crate::backend::snapshot::{Picture, application_owner};
use crate::controller::build::{self, OWNER_TAG};
use crate::domain::entitlements::{self, AppGroup, AppGroupKind, Feature};
use crate::emulator::World;
use crate::resources::{AppAttachPackage, AppAttachPackageSpec, PackageMode};

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

/// How someone's access to an app changes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Gets the app, which they did not.
    Gains,
    /// No longer gets it.
    Loses,
    /// Gets another version of it.
    Changes,
}

impl Access {
    /// The word, as in the JSON: `gains`, `loses`, `changes`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Gains => "gains",
            Self::Loses => "loses",
            Self::Changes => "changes",
        }
    }

    /// `+`, `-` or `~`, as a diff marks them.
    pub fn sign(self) -> &'static str {
        match self {
            Self::Gains => "+",
            Self::Loses => "-",
            Self::Changes => "~",
        }
    }
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
    /// `gains`, `loses` or `changes` (another version).
    pub change: Access,
    /// The version before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The version after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
}

/// What the backend holds, read once: every later step works from it.
struct Held {
    /// The app attach packages of the resource group.
    packages: Vec<ArmPackage>,
    /// Role assignments of the Desktop Virtualization User role at each package, by
    /// lower-case package id.
    roles: BTreeMap<String, Vec<crate::backend::snapshot::Grant>>,
    /// The host pools of the resource group.
    pools: Vec<HostPool>,
    /// The MSIX packages of each host pool, by lower-case host pool id.
    msix: BTreeMap<String, Vec<MsixPackage>>,
}

impl Held {
    /// What the picture of the backend holds.
    fn of(p: &Picture) -> Self {
        Self {
            packages: p.packages.values().map(|b| (**b).clone()).collect(),
            roles: p
                .roles
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pools: p.host_pools.values().cloned().collect(),
            msix: p.msix.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    fn role_count(&self, package_id: &str) -> usize {
        self.roles
            .get(&package_id.to_ascii_lowercase())
            .map_or(0, Vec::len)
    }
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

/// Computes the plan of validated manifests against a backend. `directory`, when known,
/// expands groups to their members for the entitlement changes.
pub fn plan(
    picture: &Picture,
    against: &str,
    objects: &Objects,
    checks: &[PackageCheck],
    directory: Option<&World>,
) -> Plan {
    let held = Held::of(picture);
    let names = principal_names(objects);
    let mut packages = Vec::new();
    // The packages sign-in would see after the changes, replacing those of each object.
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut added: Vec<entitlements::Package> = Vec::new();
    let mut publishing: Vec<(String, Publishes)> = Vec::new();
    for check in checks {
        let (p, after) = plan_package(check, &names);
        if let Some(after) = after {
            replaced.extend(after.replaces);
            added.extend(after.packages);
            publishing.push((after.owner, after.publishes));
        }
        packages.push(p);
    }
    let published_after = published_after(picture, &publishing);
    let declared: BTreeSet<String> = objects.packages.iter().map(|p| key(&p.object)).collect();
    let namespaces: BTreeSet<String> = objects
        .packages
        .iter()
        .map(|p| p.object.namespace())
        .chain(
            objects
                .host_pool_assignments
                .iter()
                .map(|a| a.object.namespace()),
        )
        .chain(
            objects
                .user_assignments
                .iter()
                .map(|a| a.object.namespace()),
        )
        .map(Option::unwrap_or_default)
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
                role_assignments: held.role_count(&id),
            });
            replaced.insert(id.to_ascii_lowercase());
        }
    }
    let (entitlements, entitlements_of) = entitlement_changes(
        picture,
        &held,
        (&replaced, &added, &published_after),
        objects,
        directory,
        &names,
    );
    Plan {
        against: against.to_string(),
        packages,
        removals,
        entitlements,
        entitlements_of,
    }
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
/// The applications an object publishes in each application group (lower-case id).
type Publishes = Vec<(String, Vec<Application>)>;

#[derive(Default)]
struct After {
    replaces: Vec<String>,
    packages: Vec<entitlements::Package>,
    /// The object (`namespace/name`), and the applications it publishes afterwards in
    /// each application group it looks at (lower-case group id).
    owner: String,
    publishes: Publishes,
}

mod package;
use package::plan_package;

fn msix_gate(spec: &AppAttachPackageSpec) -> String {
    let batch = spec.rollout.max_unavailable_hosts;
    match &spec.rollout.maintenance_window {
        Some(w) => format!(
            "MSIX app attach cannot update in place: session hosts are drained, {batch} at a time, {:?} {} for {} ({})",
            w.day_of_week, w.start_time, w.duration, w.time_zone
        ),
        None => format!(
            "MSIX app attach cannot update in place: session hosts are drained, {batch} at a time, whenever their sessions end"
        ),
    }
}

fn gate(spec: &AppAttachPackageSpec) -> String {
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
    let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
        a.iter()
            .filter(|(k, _)| !b.contains_key(*k))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let parts: Vec<String> = [("add", only(&dp, &hp)), ("remove", only(&hp, &dp))]
        .into_iter()
        .filter(|(_, pools)| !pools.is_empty())
        .map(|(verb, pools)| format!("{verb} {}", pools.join(", ")))
        .collect();
    if !parts.is_empty() {
        out.push(format!("hostPoolReferences: {}", parts.join(", ")));
    }
    if !crate::arm::location::same(
        desired.location.as_deref().unwrap_or_default(),
        held.location.as_deref().unwrap_or_default(),
    ) {
        out.push(format!(
            "location: {} -> {}",
            held.location.as_deref().unwrap_or("-"),
            desired.location.as_deref().unwrap_or("-")
        ));
    }
    let tag = |p: &ArmPackage| owner(p).map_or("-", String::as_str).to_string();
    if tag(desired) != tag(held) {
        out.push(format!(
            "tags.{OWNER_TAG}: {} -> {}",
            tag(held),
            tag(desired)
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

/// The families published in each application group (lower-case id) the plans change:
/// what the group holds from others, and what each planned object publishes there.
fn published_after(
    picture: &Picture,
    publishing: &[(String, Publishes)],
) -> BTreeMap<String, BTreeSet<String>> {
    let planned: BTreeSet<&str> = publishing.iter().map(|(o, _)| o.as_str()).collect();
    let family = |a: &Application| {
        a.properties
            .msix_package_family_name
            .as_deref()
            .map(str::to_ascii_lowercase)
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (owner, groups) in publishing {
        for (group, apps) in groups {
            let at = out.entry(group.clone()).or_insert_with(|| {
                picture
                    .applications
                    .get(group)
                    .into_iter()
                    .flatten()
                    .filter(|a| application_owner(a).is_none_or(|o| !planned.contains(o)))
                    .filter_map(family)
                    .collect()
            });
            at.extend(
                apps.iter()
                    .filter(|a| application_owner(a) == Some(owner.as_str()))
                    .filter_map(family),
            );
        }
    }
    out
}

/// Host pools and their application groups as sign-in sees them: members are the
/// role's principals there; the families published are the picture's, or `published`'s
/// for the groups it names.
fn sign_in_views(
    picture: &Picture,
    held: &Held,
    published: Option<&BTreeMap<String, BTreeSet<String>>>,
) -> Vec<(String, entitlements::HostPool)> {
    let mut views = Vec::new();
    for pool in &held.pools {
        let Some(pool_id) = &pool.id else { continue };
        let mut app_groups = Vec::new();
        for g in picture.application_groups.iter().filter(|g| {
            g.properties
                .host_pool_arm_path
                .eq_ignore_ascii_case(pool_id)
        }) {
            let Some(gid) = &g.id else { continue };
            let gid = gid.to_ascii_lowercase();
            let members = picture
                .roles
                .get(&gid)
                .into_iter()
                .flatten()
                .map(|g| g.principal.to_string())
                .collect();
            let remote = g.properties.application_group_type == ApplicationGroupType::RemoteApp;
            let published_families = match published.and_then(|p| p.get(&gid)) {
                Some(families) => families.clone(),
                None => picture
                    .applications
                    .get(&gid)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.properties.msix_package_family_name.clone())
                    .map(|f| f.to_ascii_lowercase())
                    .collect(),
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
    views
}

/// Who gains and who loses what, per host pool: sign-in's rule before and after (the
/// packages `replaced` and `added`, and the applications published).
fn entitlement_changes(
    picture: &Picture,
    held: &Held,
    (replaced, added, published): (
        &BTreeSet<String>,
        &[entitlements::Package],
        &BTreeMap<String, BTreeSet<String>>,
    ),
    objects: &Objects,
    directory: Option<&World>,
    names: &BTreeMap<String, String>,
) -> (Vec<EntitlementChange>, String) {
    let views_before = sign_in_views(picture, held, None);
    let views_after = sign_in_views(picture, held, Some(published));
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
                .map(|g| g.principal.to_string())
                .collect(),
        });
    }
    for (pool, packages) in &held.msix {
        for m in packages {
            let Some(id) = &m.id else { continue };
            let p = &m.properties;
            before.push(entitlements::Package {
                id: id.clone(),
                feature: Feature::MsixAppAttach,
                family_name: p.package_family_name.clone().unwrap_or_default(),
                version: p.version.clone().unwrap_or_default(),
                image_path: p.image_path.clone().unwrap_or_default(),
                active: p.is_active == Some(true),
                host_pools: vec![pool.clone()],
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
        Some(world) => (world.users().collect(), "users"),
        None => {
            let ids: BTreeSet<&String> = before
                .iter()
                .chain(&after)
                .flat_map(|p| &p.principals)
                .collect();
            let principals = ids
                .into_iter()
                .map(|id| {
                    (
                        names.get(id).cloned().unwrap_or_else(|| id.clone()),
                        entitlements::User {
                            object_id: id.clone(),
                            groups: BTreeSet::new(),
                        },
                    )
                })
                .collect();
            (principals, "principals")
        }
    };
    // How to call an app: as the manifests do, else by its family name.
    let apps: BTreeMap<String, String> = objects
        .packages
        .iter()
        .map(|p| {
            let s = &p.object.spec.package;
            (
                build::identity(&p.object.spec).0.to_ascii_lowercase(),
                s.display_name.clone().unwrap_or_else(|| s.name.clone()),
            )
        })
        .collect();
    let mut changes = Vec::new();
    for (who, user) in &people {
        for ((pool, view), (_, view_after)) in views_before.iter().zip(&views_after) {
            // Family (lower case) -> (family as written, version).
            let versions = |view: &entitlements::HostPool,
                            pkgs: &[entitlements::Package]|
             -> BTreeMap<String, (String, String)> {
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
            let (b, a) = (versions(view, &before), versions(view_after, &after));
            let families: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for family in families {
                let (from, to) = (b.get(family), a.get(family));
                let (change, written) = match (from, to) {
                    (None, Some((w, _))) => (Access::Gains, w),
                    (Some((w, _)), None) => (Access::Loses, w),
                    (Some((_, x)), Some((w, y))) if x != y => (Access::Changes, w),
                    _ => continue,
                };
                changes.push(EntitlementChange {
                    who: who.clone(),
                    host_pool: pool.clone(),
                    package: apps.get(family).cloned().unwrap_or_else(|| written.clone()),
                    change,
                    from_version: from.map(|(_, v)| v.clone()),
                    to_version: to.map(|(_, v)| v.clone()),
                });
            }
        }
    }
    changes.sort();
    (changes, of.to_string())
}
