//! The plan of one package: the controller's own decisions, run pass after pass against
//! what the backend holds (every gate assumed to pass, every drained session to end), and
//! their writes shown in order. One derivation: what `plan` shows is what the controller
//! would write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;

use super::super::validate::PackageCheck;
use super::{After, Change, PackagePlan, Ring, RolloutPlan, Status, differences, gate, msix_gate};
use crate::backend::snapshot::application_name;
use crate::controller::Policy;
use crate::controller::build;
use crate::controller::decide::{self, Decision, Settings, Write, simulate::Sim};
use crate::controller::observe::{BackendView, Observation, key_of};
use crate::controller::validate::Severity;
use crate::domain::entitlements::{self, Feature};
use crate::domain::naming;
use crate::resources::{AppAttachPackageSpec, PackageMode, RolloutStatus, RolloutStep};

/// How many passes a plan follows at most (a rollout over many rings takes a few per ring).
const PASSES: usize = 500;

/// The plan of one package of the manifests, and what sign-in sees of it afterwards.
pub(super) fn plan_package(
    check: &PackageCheck,
    names: &BTreeMap<String, String>,
) -> (PackagePlan, Option<After>) {
    let pkg = check.package.object.as_ref();
    let mut out = PackagePlan {
        object: key_of(pkg),
        source: format!("{}:{}", check.package.doc.file, check.package.doc.line),
        backend_name: naming::backend_name(&pkg.namespace().unwrap_or_default(), &pkg.name_any()),
        mode: pkg.spec.mode,
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
        return (out, None);
    }
    let Some(obs) = &check.observed else {
        return (out, None);
    };
    let Some(start) = obs.backend.clone() else {
        return (out, None);
    };
    // Time is the simulation's: a long poll lets each pass jump to the end of a soak.
    let settings = Settings {
        rollout_poll: Duration::from_secs(3600),
    };
    let mut sim = Sim::new(writing(obs), settings);
    let passes = sim.run(PASSES);
    let shown = Shown {
        obs,
        names,
        display: pkg
            .spec
            .package
            .display_name
            .clone()
            .unwrap_or_else(|| pkg.spec.package.name.clone()),
    };
    out.changes = shown.changes(&start, &passes);
    summarize(&mut out, &pkg.spec, &start, &passes);
    let policy = Policy::of(pkg).unwrap_or(Policy::Manage);
    if (pkg.spec.suspend || policy == Policy::Skip) && !out.changes.is_empty() {
        out.status = Status::NotWritten;
        out.reason = Some(if pkg.spec.suspend {
            "Suspended: spec.suspend is true; nothing is written until it is false".into()
        } else {
            "Observed: reconcile policy skip; drift is reported, not corrected".into()
        });
        return (out, None);
    }
    let after = after(obs, &start, sim.view());
    (out, Some(after))
}

/// The observation as a controller that writes sees it: suspend and the skip policy are
/// shown as "not written", after the changes they hold back.
fn writing(obs: &Observation) -> Observation {
    let mut pkg = (*obs.package).clone();
    pkg.spec.suspend = false;
    if let Some(a) = pkg.metadata.annotations.as_mut() {
        a.remove(crate::controller::POLICY_ANNOTATION);
    }
    Observation {
        package: Arc::new(pkg),
        ..obs.clone()
    }
}

/// The plan's status, backend name and rollout, from the passes.
fn summarize(
    out: &mut PackagePlan,
    spec: &AppAttachPackageSpec,
    start: &BackendView,
    passes: &[Decision],
) {
    let rollout = passes
        .iter()
        .filter_map(|d| d.status.rollout.as_ref())
        .find(|r| r.phase.is_active());
    if let Some(r) = rollout {
        out.status = Status::Rollout;
        out.backend_name = r.target.backend_name.clone();
        out.rollout = Some(RolloutPlan {
            from: r
                .previous
                .first()
                .map(|p| p.version.clone())
                .unwrap_or_default(),
            to: r.target.version.clone(),
            rings: rings(start),
            gate: match spec.mode {
                PackageMode::AppAttach => gate(spec),
                PackageMode::MsixAppAttach => msix_gate(spec),
            },
        });
        return;
    }
    if let Some(name) = passes.last().and_then(|d| d.status.backend_name.clone()) {
        out.backend_name = name;
    }
    out.status = match out.changes.first() {
        None => Status::NoChange,
        Some(c)
            if c.action == "create"
                && !c.resource.starts_with("roleAssignments/")
                && !c.resource.starts_with("applicationGroups/") =>
        {
            Status::Create
        }
        Some(_) => Status::Update,
    };
}

/// The assigned host pools by ring, lowest first.
fn rings(v: &BackendView) -> Vec<Ring> {
    let mut rings: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for p in &v.pools {
        rings.entry(p.ring).or_default().push(p.name.clone());
    }
    rings
        .into_iter()
        .map(|(ring, host_pools)| Ring { ring, host_pools })
        .collect()
}

/// What the writes look like to a person.
struct Shown<'a> {
    obs: &'a Observation,
    names: &'a BTreeMap<String, String>,
    display: String,
}

impl Shown<'_> {
    /// Every pass's writes in order, each against the backend as it is when it is made.
    fn changes(&self, start: &BackendView, passes: &[Decision]) -> Vec<Change> {
        let mut view = start.clone();
        let mut out = vec![];
        for d in passes {
            let when = when(d);
            for w in &d.writes {
                if let Some(mut c) = self.change(&view, w) {
                    c.detail = format!("{when}{}", c.detail);
                    out.push(c);
                }
                decide::apply_write(&mut view, &self.obs.scope, w);
            }
        }
        out
    }

    /// How the manifests name a principal, else its object id.
    fn who(&self, object_id: &str) -> String {
        self.names
            .get(&object_id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| object_id.to_string())
    }

    /// A host pool's name as the assignment gives it, from its ARM id.
    fn pool_name(&self, id: &str) -> String {
        self.obs
            .backend
            .iter()
            .flat_map(|v| v.pools.iter().chain(&v.former))
            .find(|p| p.id.eq_ignore_ascii_case(id))
            .map_or_else(|| leaf(id).to_string(), |p| p.name.clone())
    }

    fn change(&self, view: &BackendView, w: &Write) -> Option<Change> {
        Some(match w {
            Write::PutPackage { name, body } => {
                let resource = format!("appAttachPackages/{name}");
                match view.packages.iter().find(|p| p.name == *name) {
                    Some(held) => Change::new(
                        "update",
                        resource,
                        differences(body, &held.package, &|id| self.pool_name(id)).join("; "),
                    ),
                    None => Change::new("create", resource, self.created(body)),
                }
            }
            Write::DeletePackage { name } => {
                let version = view
                    .packages
                    .iter()
                    .find(|p| p.name == *name)
                    .and_then(|p| p.package.properties.image.as_ref())
                    .and_then(|i| i.version.clone())
                    .unwrap_or_default();
                Change::new(
                    "delete",
                    format!("appAttachPackages/{name}"),
                    format!(
                        "{} {version}; its image stays listed while sessions use it",
                        self.display
                    ),
                )
            }
            Write::PutRole { scope, name, body } => Change::new(
                "create",
                format!("roleAssignments/{name}"),
                format!(
                    "Desktop Virtualization User for {} at appAttachPackages/{}",
                    self.who(&body.properties.principal_id),
                    leaf(scope)
                ),
            ),
            Write::DeleteRole { id } => {
                let role = view
                    .packages
                    .iter()
                    .flat_map(|p| &p.roles)
                    .find(|r| r.id.as_deref() == Some(id));
                Change::new(
                    "delete",
                    format!("roleAssignments/{}", leaf(id)),
                    format!(
                        "Desktop Virtualization User for {}",
                        role.map(|r| self.who(&r.properties.principal_id))
                            .unwrap_or_default()
                    ),
                )
            }
            _ => return self.pool_change(view, w),
        })
    }

    fn pool_change(&self, view: &BackendView, w: &Write) -> Option<Change> {
        Some(match w {
            Write::PutMsix {
                pool_id,
                full_name,
                body,
            } => {
                let resource = format!(
                    "hostPools/{}/msixPackages/{full_name}",
                    self.pool_name(pool_id)
                );
                let held = view
                    .pools
                    .iter()
                    .find(|p| p.id.eq_ignore_ascii_case(pool_id))
                    .and_then(|p| {
                        p.msix.iter().find(|m| {
                            m.name
                                .as_deref()
                                .is_some_and(|n| leaf(n).eq_ignore_ascii_case(full_name))
                        })
                    });
                let version = body.properties.version.clone().unwrap_or_default();
                let image = body.properties.image_path.clone().unwrap_or_default();
                match held {
                    Some(_) => Change::new(
                        "update",
                        resource,
                        format!("{} {version} from {image}", self.display),
                    ),
                    None => Change::new(
                        "create",
                        resource,
                        format!("{} {version} from {image}", self.display),
                    ),
                }
            }
            Write::DeleteMsix { pool_id, full_name } => Change::new(
                "delete",
                format!(
                    "hostPools/{}/msixPackages/{full_name}",
                    self.pool_name(pool_id)
                ),
                format!("{} {full_name}", self.display),
            ),
            Write::AllowNewSessions { host_id, allow } => Change::new(
                "update",
                format!("sessionHosts/{}", leaf(host_id)),
                if *allow {
                    "allowNewSession: true (undrained)".to_string()
                } else {
                    "allowNewSession: false (drained while the package is replaced)".to_string()
                },
            ),
            Write::SendMessage { session_id, .. } => Change::new(
                "notify",
                format!("userSessions/{}", leaf(session_id)),
                "a message about the update".into(),
            ),
            Write::PutApplication {
                group_id,
                name,
                body,
            } => {
                let group = leaf(group_id);
                let held = view
                    .app_groups
                    .iter()
                    .find(|g| g.id.eq_ignore_ascii_case(group_id))
                    .is_some_and(|g| {
                        g.applications
                            .iter()
                            .any(|a| application_name(a).eq_ignore_ascii_case(name))
                    });
                let p = &body.properties;
                Change::new(
                    if held { "update" } else { "create" },
                    format!("applicationGroups/{group}/applications/{name}"),
                    format!(
                        "publishes {} application {} as \"{}\" to the users of RemoteApp group {group}",
                        self.display,
                        p.msix_package_application_id.clone().unwrap_or_default(),
                        p.friendly_name.clone().unwrap_or_default()
                    ),
                )
            }
            Write::DeleteApplication { group_id, name } => Change::new(
                "delete",
                format!("applicationGroups/{}/applications/{name}", leaf(group_id)),
                format!(
                    "unpublishes {} from RemoteApp group {}",
                    self.display,
                    leaf(group_id)
                ),
            ),
            Write::LogOff { session_id } => Change::new(
                "delete",
                format!("userSessions/{}", leaf(session_id)),
                "logged off after the grace period".into(),
            ),
            _ => return None,
        })
    }

    fn created(&self, body: &crate::arm::models::AppAttachPackage) -> String {
        let image = body.properties.image.clone().unwrap_or_default();
        let pools: Vec<String> = body
            .properties
            .host_pool_references
            .iter()
            .flatten()
            .map(|id| self.pool_name(id))
            .collect();
        format!(
            "{} {} from {}, {}, {} host pool(s): {}",
            self.display,
            image.version.unwrap_or_default(),
            image.image_path.unwrap_or_default(),
            if image.is_active == Some(true) {
                "active"
            } else {
                "inactive"
            },
            pools.len(),
            pools.join(", ")
        )
    }
}

/// What a pass's writes are part of: a ring's switch, the end of a rollout, a rollback.
fn when(d: &Decision) -> String {
    let r: Option<&RolloutStatus> = d
        .intent
        .as_ref()
        .and_then(|i| i.rollout.as_ref())
        .or(d.status.rollout.as_ref());
    match r.map(|r| (r.step, r.ring, r)) {
        Some((RolloutStep::Switching, Some(ring), _)) => format!("ring {ring}: "),
        Some((RolloutStep::Finishing, _, r)) => {
            format!("once every host pool runs {}: ", r.target.version)
        }
        Some((RolloutStep::RollingBack, _, _)) => "rolling back: ".into(),
        _ => String::new(),
    }
}

fn leaf(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// What sign-in sees of the object before (the ids it replaces) and after.
fn after(obs: &Observation, start: &BackendView, end: &BackendView) -> After {
    let spec = &obs.package.spec;
    let key = obs.key();
    let (family, _) = build::identity(spec);
    match spec.mode {
        PackageMode::AppAttach => {
            let ours = |v: &BackendView| -> Vec<crate::controller::observe::HeldPackage> {
                v.packages
                    .iter()
                    .filter(|p| p.owner().is_none_or(|o| *o == key))
                    .cloned()
                    .collect()
            };
            After {
                owner: key.clone(),
                publishes: publishes(end),
                replaces: ours(start)
                    .iter()
                    .map(|p| obs.scope.package_id(&p.name).to_ascii_lowercase())
                    .collect(),
                packages: ours(end)
                    .into_iter()
                    .map(|p| p.sign_in(&obs.scope.package_id(&p.name), &family))
                    .collect(),
            }
        }
        PackageMode::MsixAppAttach => After {
            owner: key.clone(),
            publishes: publishes(end),
            replaces: msix_of(start, &family)
                .into_iter()
                .map(|(id, _)| id.to_ascii_lowercase())
                .collect(),
            packages: msix_of(end, &family)
                .into_iter()
                .map(|(id, (pool, m))| entitlements::Package {
                    id,
                    feature: Feature::MsixAppAttach,
                    family_name: family.clone(),
                    version: m.properties.version.clone().unwrap_or_default(),
                    image_path: m.properties.image_path.clone().unwrap_or_default(),
                    active: m.properties.is_active == Some(true),
                    host_pools: vec![pool],
                    principals: BTreeSet::new(),
                })
                .collect(),
        },
    }
}

/// The applications of each application group a view holds (lower-case group id).
fn publishes(v: &BackendView) -> Vec<(String, Vec<crate::arm::models::Application>)> {
    v.app_groups
        .iter()
        .map(|g| (g.id.to_ascii_lowercase(), g.applications.clone()))
        .collect()
}

/// The MSIX packages of a family under each host pool, by id, with the pool's id.
fn msix_of(
    v: &BackendView,
    family: &str,
) -> Vec<(String, (String, crate::arm::models::MsixPackage))> {
    v.pools
        .iter()
        .chain(&v.former)
        .flat_map(|p| {
            p.msix
                .iter()
                .filter(|m| {
                    m.properties
                        .package_family_name
                        .as_deref()
                        .is_some_and(|f| f.eq_ignore_ascii_case(family))
                })
                .map(|m| {
                    let full = leaf(m.name.as_deref().unwrap_or_default());
                    (
                        format!("{}/msixPackages/{full}", p.id),
                        (p.id.clone(), m.clone()),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
