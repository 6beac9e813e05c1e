//! Observe: one step reads everything a pass needs, once. The package and the assignments
//! that point at it come from the watch caches (or, for `appattach validate` and `plan`,
//! from manifests); the backend's side of them from the backend; the rollout record from
//! the package's status; the time from the clock. Nothing here decides anything.
//!
//! The backend's side comes from the snapshot shared by every pass
//! ([`crate::backend::snapshot`]): the assigned host pools with their session hosts (and
//! what their virtual machines say of their OS) and MSIX packages, the backend packages this object owns (by their owner tag) with their
//! role assignments, the directory. A pass reads the backend itself only for what must be
//! fresh: user sessions while a rollout or a retained image needs them, the session hosts
//! of the ring a rollout's gate watches.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use std::time::Duration;

use super::build::OWNER_TAG;
use crate::arm::Scope;
use crate::arm::models::{
    AppAttachPackage as ArmPackage, Application, ApplicationGroupType, HostPool, MsixPackage,
    RoleAssignment, SessionHost, UserSession,
};
use crate::backend::snapshot::{Change, Health, Picture, Snapshot};
use crate::backend::{Backend, BackendError};
use crate::domain::directory::Directory;
use crate::domain::entitlements;
use crate::domain::host_os::VmRead;
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage, HostPoolAssignment, PackageMode, RolloutStep, UserAssignment,
};

/// What a pass over one package looks at besides the package itself: the controller takes
/// it from its watch caches, `appattach plan` and `validate` from manifests.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The live HostPoolAssignments that point at the package.
    pub host_pool_assignments: Vec<Arc<HostPoolAssignment>>,
    /// The live UserAssignments that point at the package.
    pub user_assignments: Vec<Arc<UserAssignment>>,
    /// Packages with the same package full name (the package itself may be among them),
    /// each with the HostPoolAssignments that point at it.
    pub same_full_name: Vec<(Arc<AppAttachPackage>, Vec<Arc<HostPoolAssignment>>)>,
    /// The roots the session hosts trust, when they are declared (`--trusted-roots`).
    pub trust: Option<Arc<TrustView>>,
}

/// The roots the session hosts trust, as declared (a ConfigMap of PEM certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustView {
    /// The certificates read, as (subject, SHA-1 thumbprint).
    Roots {
        /// Where they were declared: `ConfigMap appattach-system/appattach-trusted-roots`.
        source: String,
        /// Each certificate's subject and thumbprint.
        roots: Vec<(String, String)>,
    },
    /// The declaration could not be read.
    Unavailable {
        /// Where it should be.
        source: String,
        /// Why it could not be read, and what to do.
        why: String,
    },
}

impl TrustView {
    /// The view of a declaration read from `source`: its certificates, or why not.
    pub fn of(source: String, read: Result<crate::inspect::trust::TrustedRoots, String>) -> Self {
        match read {
            Ok(roots) => TrustView::Roots {
                source,
                roots: roots
                    .names()
                    .map(|n| (n.subject.clone(), n.thumbprint.clone()))
                    .collect(),
            },
            Err(why) => TrustView::Unavailable { source, why },
        }
    }
}

/// Everything one pass knows.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The package, as fresh as the pass could read it.
    pub package: Arc<AppAttachPackage>,
    /// Its assignments and the packages that share its full name.
    pub inputs: Inputs,
    /// The backend's side; `None` when it was not read (suspended, or `validate` without a
    /// backend).
    pub backend: Option<BackendView>,
    /// Where the backend's resources live, to spell their ids.
    pub scope: Scope,
    /// The time of the pass.
    pub now: Timestamp,
}

impl Observation {
    /// `namespace/name`: the owner tag of its backend packages.
    pub fn key(&self) -> String {
        key_of(&self.package)
    }

    /// The package's status, or an empty one.
    pub fn status(&self) -> crate::resources::AppAttachPackageStatus {
        self.package.status.clone().unwrap_or_default()
    }
}

/// `namespace/name` of a package.
pub fn key_of(pkg: &AppAttachPackage) -> String {
    format!("{}/{}", pkg.namespace().unwrap_or_default(), pkg.name_any())
}

/// What the backend holds of one package and its host pools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendView {
    /// The assigned host pools that exist, each once, in the order the assignments give.
    pub pools: Vec<PoolView>,
    /// The assigned host pools the backend does not have.
    pub missing: Vec<MissingPool>,
    /// MSIX app attach: host pools the status lists that are no longer assigned, with
    /// their MSIX packages, so that ours can be removed from them.
    pub former: Vec<PoolView>,
    /// App attach: the backend packages this object owns, and an untagged one under the
    /// name it maps to (which it may adopt).
    pub packages: Vec<HeldPackage>,
    /// The application groups of the assigned (and formerly assigned) host pools, the
    /// ones the assignments name, and the ones holding applications this object
    /// published: who signs in where, and what is published there.
    pub app_groups: Vec<GroupView>,
    /// The directory, where the backend has one.
    pub directory: Option<std::sync::Arc<Directory>>,
    /// Whether the pools' user sessions were read.
    pub sessions_read: bool,
    /// Why the picture is too old to act on, when it is: the decision writes nothing.
    pub stale: Option<String>,
    /// What is known of the virtual machines the pools' session hosts name, by lower-case
    /// VM id.
    pub machines: std::collections::BTreeMap<String, VmRead>,
}

impl BackendView {
    /// What is known of the virtual machine a session host names.
    pub fn vm_read(&self, host: &SessionHost) -> VmRead {
        match host
            .properties
            .resource_id
            .as_deref()
            .filter(|id| crate::arm::compute::vm_resource_group(id).is_some())
        {
            None => VmRead::NoVm,
            Some(id) => self
                .machines
                .get(&id.to_ascii_lowercase())
                .cloned()
                .unwrap_or(VmRead::NotReadYet),
        }
    }
}

/// One host pool, as the backend has it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    /// The name (or id) the assignment gives.
    pub name: String,
    /// Where it is given: `HostPoolAssignment/NAME spec.hostPools[i].name`.
    pub field: String,
    /// ARM id, as the backend spells it.
    pub id: String,
    /// Ring from the assignment.
    pub ring: i32,
    /// The host pool resource.
    pub pool: HostPool,
    /// Its session hosts.
    pub hosts: Vec<SessionHost>,
    /// Its MSIX packages.
    pub msix: Vec<MsixPackage>,
    /// Its user sessions (when read).
    pub sessions: Vec<UserSession>,
}

/// An application group, as sign-in and publishing see it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    /// ARM id, as the backend spells it.
    pub id: String,
    /// Its host pool's id (`hostPoolArmPath`).
    pub pool_id: String,
    /// Desktop or RemoteApp.
    pub kind: ApplicationGroupType,
    /// Object ids (lower case) with a Desktop Virtualization User role assignment at it.
    pub members: BTreeSet<String>,
    /// Its applications (RemoteApp groups).
    pub applications: Vec<Application>,
}

impl GroupView {
    /// Its name.
    pub fn name(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or(&self.id)
    }
}

/// An assigned host pool the backend does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPool {
    /// The name the assignment gives.
    pub name: String,
    /// Where it is given.
    pub field: String,
}

/// An app attach package in the backend, with its role assignments.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPackage {
    /// Its name.
    pub name: String,
    /// The resource.
    pub package: ArmPackage,
    /// Role assignments at its scope.
    pub roles: Vec<RoleAssignment>,
}

impl HeldPackage {
    /// The owner tag, if any.
    pub fn owner(&self) -> Option<&String> {
        self.package.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
    }

    /// The package as sign-in sees it (its id is `id`; its family `family` where the
    /// backend does not say).
    pub fn sign_in(&self, id: &str, family: &str) -> entitlements::Package {
        let image = self.package.properties.image.clone().unwrap_or_default();
        entitlements::Package {
            id: id.to_string(),
            feature: entitlements::Feature::AppAttach,
            family_name: image
                .package_family_name
                .unwrap_or_else(|| family.to_string()),
            version: image.version.unwrap_or_default(),
            image_path: image.image_path.unwrap_or_default(),
            active: image.is_active == Some(true),
            host_pools: self
                .package
                .properties
                .host_pool_references
                .clone()
                .unwrap_or_default(),
            principals: self
                .roles
                .iter()
                .filter(|r| r.is_desktop_virtualization_user())
                .map(|r| r.properties.principal_id.to_ascii_lowercase())
                .collect(),
        }
    }
}

/// Reads what one pass over `pkg` needs: the backend's side from the shared `snapshot`,
/// and, fresh from `backend`, only what a pass must see as it is now: the user sessions
/// while a rollout runs or images are retained, the session hosts of the ring whose gate
/// is watched, and a host pool outside the resource group the snapshot does not hold yet.
/// Without a backend (`appattach validate` with no world), nothing is read. A snapshot
/// older than `max_age` is marked stale: the decision then writes nothing.
pub async fn observe<B: Backend>(
    snapshot: &Snapshot,
    backend: Option<&B>,
    package: Arc<AppAttachPackage>,
    inputs: Inputs,
    now: Timestamp,
    max_age: Duration,
) -> Result<Observation, BackendError> {
    let view = match backend {
        Some(b) if !package.spec.suspend => {
            Some(read(snapshot, b, &package, &inputs, max_age).await?)
        }
        _ => None,
    };
    Ok(Observation {
        scope: backend.map(|b| b.scope().clone()).unwrap_or_default(),
        package,
        inputs,
        backend: view,
        now,
    })
}

/// Whether a pass needs the user sessions: while a rollout runs, while old images are
/// retained, and when the package is deleted.
fn needs_sessions(pkg: &AppAttachPackage) -> bool {
    pkg.metadata.deletion_timestamp.is_some()
        || pkg.status.as_ref().is_some_and(|s| {
            !s.retained_images.is_empty() || s.rollout.as_ref().is_some_and(|r| r.phase.is_active())
        })
}

/// The ring whose gate a running rollout watches (or whose session hosts it drains).
fn gated_ring(pkg: &AppAttachPackage) -> Option<i32> {
    let r = pkg.status.as_ref()?.rollout.as_ref()?;
    let watched = matches!(
        r.step,
        RolloutStep::Switching | RolloutStep::Staging | RolloutStep::Soaking
    );
    (r.phase.is_active() && watched).then_some(r.ring).flatten()
}

async fn read<B: Backend>(
    snapshot: &Snapshot,
    b: &B,
    pkg: &AppAttachPackage,
    inputs: &Inputs,
    max_age: Duration,
) -> Result<BackendView, BackendError> {
    let (mut view, outside) = snapshot.with(|p| from_picture(p, b.scope(), pkg, inputs));
    for (name, field, ring, id) in outside {
        read_outside(snapshot, b, &mut view, (name, field, ring, id)).await?;
    }
    if let Some(ring) = gated_ring(pkg) {
        for p in view.pools.iter_mut().filter(|p| p.ring == ring) {
            p.hosts = b.list_session_hosts(&p.id).await?;
            snapshot.record(Change::Hosts(p.id.clone(), p.hosts.clone()));
        }
    }
    if needs_sessions(pkg) {
        for p in view.pools.iter_mut().chain(view.former.iter_mut()) {
            p.sessions = b.list_user_sessions(&p.id).await?;
        }
        view.sessions_read = true;
    }
    view.machines = snapshot.with(|p| machines_of(p, &view.pools));
    let health = snapshot.health();
    if health.age.is_some_and(|a| a > max_age) {
        view.stale = Some(stale_reason(&health));
    }
    Ok(view)
}

/// What the picture knows of the VMs the pools' session hosts name.
fn machines_of(p: &Picture, pools: &[PoolView]) -> std::collections::BTreeMap<String, VmRead> {
    pools
        .iter()
        .flat_map(|pool| &pool.hosts)
        .filter_map(|h| {
            let id = h.properties.resource_id.as_deref()?;
            Some((id.to_ascii_lowercase(), p.machines.read_of(h)))
        })
        .collect()
}

/// Why writes wait on a snapshot too old to act on.
fn stale_reason(h: &Health) -> String {
    let age = h
        .age
        .map(|a| humantime::format_duration(Duration::from_secs(a.as_secs())).to_string());
    format!(
        "the controller's picture of the backend is {} old{}; nothing is written until it is refreshed",
        age.unwrap_or_else(|| "of unknown age".into()),
        h.last_error
            .as_ref()
            .map(|e| format!(" (its last refresh failed: {e})"))
            .unwrap_or_default()
    )
}

/// A host pool named by full id outside the resource group: read now, and watched by the
/// snapshot from its next refresh.
async fn read_outside<B: Backend>(
    snapshot: &Snapshot,
    b: &B,
    view: &mut BackendView,
    (name, field, ring, id): (String, String, i32, String),
) -> Result<(), BackendError> {
    snapshot.watch_outside(&id);
    let Some(pool) = b.get_host_pool(&id).await? else {
        view.missing.push(MissingPool { name, field });
        return Ok(());
    };
    view.pools.push(PoolView {
        name,
        field,
        id: pool.id.clone().unwrap_or(id.clone()),
        ring,
        hosts: b.list_session_hosts(&id).await?,
        msix: b.list_msix_packages(&id).await?,
        sessions: vec![],
        pool,
    });
    Ok(())
}

/// A host pool of the picture, as a pass sees it.
fn pool_view(
    p: &Picture,
    pool: &HostPool,
    id: &str,
    name: &str,
    field: String,
    ring: i32,
) -> PoolView {
    let key = id.to_ascii_lowercase();
    PoolView {
        name: name.to_string(),
        field,
        id: pool.id.clone().unwrap_or_else(|| id.to_string()),
        ring,
        pool: pool.clone(),
        hosts: p.session_hosts.get(&key).cloned().unwrap_or_default(),
        msix: p.msix.get(&key).cloned().unwrap_or_default(),
        sessions: vec![],
    }
}

type Outside = Vec<(String, String, i32, String)>;

/// The view of one package from the picture: its assigned pools (each once; a pool of
/// the resource group the picture lacks is missing, one outside it is read on its own),
/// the pools its status lists that are no longer assigned, and the backend packages it
/// owns (and the one under the name it maps to, for the ownership check).
fn from_picture(
    p: &Picture,
    scope: &Scope,
    pkg: &AppAttachPackage,
    inputs: &Inputs,
) -> (BackendView, Outside) {
    let mut view = BackendView::default();
    let mut outside = vec![];
    let mut seen = BTreeSet::new();
    let rg = scope
        .host_pool_id("x")
        .trim_end_matches('x')
        .to_ascii_lowercase();
    for a in &inputs.host_pool_assignments {
        for (i, hp) in a.spec.host_pools.iter().enumerate() {
            let id = scope.host_pool_id(&hp.name);
            if !seen.insert(id.to_ascii_lowercase()) {
                continue;
            }
            let field = format!(
                "HostPoolAssignment/{} spec.hostPools[{i}].name",
                a.name_any()
            );
            match p.host_pools.get(&id.to_ascii_lowercase()) {
                Some(pool) => view
                    .pools
                    .push(pool_view(p, pool, &id, &hp.name, field, hp.ring)),
                None if !id.to_ascii_lowercase().starts_with(&rg) => {
                    outside.push((hp.name.clone(), field, hp.ring, id))
                }
                None => view.missing.push(MissingPool {
                    name: hp.name.clone(),
                    field,
                }),
            }
        }
    }
    let recorded = pkg.status.iter().flat_map(|s| &s.host_pools);
    for row in
        recorded.filter(|r| !seen.contains(&scope.host_pool_id(&r.name).to_ascii_lowercase()))
    {
        let id = scope.host_pool_id(&row.name);
        if let Some(pool) = p.host_pools.get(&id.to_ascii_lowercase()) {
            view.former
                .push(pool_view(p, pool, &id, &row.name, String::new(), row.ring));
        }
    }
    if pkg.spec.mode == PackageMode::AppAttach {
        view.packages = held_packages(p, scope, pkg);
    }
    view.app_groups = app_groups(p, scope, pkg, inputs, &view);
    view.directory.clone_from(&p.directory);
    (view, outside)
}

/// The application groups a pass looks at: those of its host pools (assigned or formerly
/// assigned), those its assignments name, and those holding applications it published.
fn app_groups(
    p: &Picture,
    scope: &Scope,
    pkg: &AppAttachPackage,
    inputs: &Inputs,
    view: &BackendView,
) -> Vec<GroupView> {
    let mut wanted: BTreeSet<String> = p
        .groups_with_applications_of(&key_of(pkg))
        .cloned()
        .collect();
    wanted.extend(
        inputs
            .host_pool_assignments
            .iter()
            .flat_map(|a| &a.spec.host_pools)
            .flat_map(|h| &h.remote_app_groups)
            .map(|g| scope.application_group_id(&g.name).to_ascii_lowercase()),
    );
    let pools: BTreeSet<String> = view
        .pools
        .iter()
        .chain(&view.former)
        .map(|v| v.id.to_ascii_lowercase())
        .collect();
    p.application_groups
        .iter()
        .filter_map(|g| {
            let id = g.id.as_deref()?;
            let key = id.to_ascii_lowercase();
            let pool = g.properties.host_pool_arm_path.to_ascii_lowercase();
            (pools.contains(&pool) || wanted.contains(&key)).then(|| GroupView {
                id: id.to_string(),
                pool_id: g.properties.host_pool_arm_path.clone(),
                kind: g.properties.application_group_type,
                members: p
                    .roles
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .map(|r| r.principal.to_string())
                    .collect(),
                applications: p.applications.get(&key).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// The backend packages this object owns (by its owner tag: found whatever their names,
/// with or without a status), and the one under the name it maps to.
fn held_packages(p: &Picture, scope: &Scope, pkg: &AppAttachPackage) -> Vec<HeldPackage> {
    let key = key_of(pkg);
    let home = naming::backend_name(&pkg.namespace().unwrap_or_default(), &pkg.name_any());
    let mut names: Vec<&String> = p.owned_by(&key).collect();
    let home_key = home.to_ascii_lowercase();
    if !names.contains(&&home_key) && p.packages.contains_key(&home_key) {
        names.push(&home_key);
    }
    names
        .into_iter()
        .filter_map(|n| {
            let package = (**p.packages.get(n)?).clone();
            let id = scope.package_id(n).to_ascii_lowercase();
            Some(HeldPackage {
                name: package.name.clone().unwrap_or_else(|| n.clone()),
                roles: p.roles_at(&id, &scope.subscription),
                package,
            })
        })
        .collect()
}
