//! Observe: one step reads everything a pass needs, once. The package and the assignments
//! that point at it come from the watch caches (or, for `appattach validate` and `plan`,
//! from manifests); the backend's side of them from the backend; the rollout record from
//! the package's status; the time from the clock. Nothing here decides anything.
//!
//! The backend is read per pass, as little as the pass needs: each assigned host pool, its
//! session hosts and MSIX packages, the backend packages this object owns (found by the
//! names it gives them and by the host pools' references) with their role assignments,
//! and user sessions while a rollout or a retained image needs them. [`BackendView`] is
//! the seam where a snapshot shared by every pass can take the place of these reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use super::build::OWNER_TAG;
use crate::arm::Scope;
use crate::arm::models::{
    AppAttachPackage as ArmPackage, HostPool, MsixPackage, RoleAssignment, SessionHost, UserSession,
};
use crate::backend::{Backend, BackendError};
use crate::domain::directory::Directory;
use crate::domain::naming;
use crate::resources::{AppAttachPackage, HostPoolAssignment, PackageMode, UserAssignment};

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
    /// The directory, where the backend has one and sessions were read.
    pub directory: Option<Directory>,
    /// Whether the pools' user sessions were read.
    pub sessions_read: bool,
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
}

/// Reads what one pass over `pkg` needs from `backend`. Without a backend (`appattach
/// validate` with no world), nothing is read and the host pools are not looked at.
pub async fn observe<B: Backend>(
    backend: Option<&B>,
    package: Arc<AppAttachPackage>,
    inputs: Inputs,
    now: Timestamp,
) -> Result<Observation, BackendError> {
    let view = match backend {
        Some(b) if !package.spec.suspend => Some(read(b, &package, &inputs).await?),
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

async fn read<B: Backend>(
    b: &B,
    pkg: &AppAttachPackage,
    inputs: &Inputs,
) -> Result<BackendView, BackendError> {
    let mut view = BackendView::default();
    read_pools(b, &inputs.host_pool_assignments, &mut view).await?;
    let deleting = pkg.metadata.deletion_timestamp.is_some();
    if pkg.spec.mode == PackageMode::MsixAppAttach || deleting {
        read_former_pools(b, pkg, &mut view).await?;
    }
    if pkg.spec.mode == PackageMode::AppAttach {
        read_packages(b, pkg, &mut view).await?;
    }
    if needs_sessions(pkg) {
        for p in view.pools.iter_mut().chain(view.former.iter_mut()) {
            p.sessions = b.list_user_sessions(&p.id).await?;
        }
        view.directory = b.directory().await?;
        view.sessions_read = true;
    }
    Ok(view)
}

/// Each assigned host pool once: the pool, its session hosts and MSIX packages.
async fn read_pools<B: Backend>(
    b: &B,
    hpas: &[Arc<HostPoolAssignment>],
    view: &mut BackendView,
) -> Result<(), BackendError> {
    let mut seen = BTreeSet::new();
    for a in hpas {
        for (i, hp) in a.spec.host_pools.iter().enumerate() {
            let id = b.host_pool_id(&hp.name);
            if !seen.insert(id.to_ascii_lowercase()) {
                continue;
            }
            let field = format!(
                "HostPoolAssignment/{} spec.hostPools[{i}].name",
                a.name_any()
            );
            let Some(pool) = b.get_host_pool(&id).await? else {
                view.missing.push(MissingPool {
                    name: hp.name.clone(),
                    field,
                });
                continue;
            };
            view.pools.push(PoolView {
                name: hp.name.clone(),
                field,
                id: pool.id.clone().unwrap_or(id.clone()),
                ring: hp.ring,
                hosts: b.list_session_hosts(&id).await?,
                msix: b.list_msix_packages(&id).await?,
                sessions: vec![],
                pool,
            });
        }
    }
    Ok(())
}

/// The host pools the status lists that are not assigned any more, with their MSIX
/// packages (one the backend no longer has is skipped).
async fn read_former_pools<B: Backend>(
    b: &B,
    pkg: &AppAttachPackage,
    view: &mut BackendView,
) -> Result<(), BackendError> {
    let assigned: BTreeSet<String> = view
        .pools
        .iter()
        .map(|p| p.name.to_ascii_lowercase())
        .collect();
    let recorded = pkg.status.iter().flat_map(|s| &s.host_pools);
    for row in recorded.filter(|r| !assigned.contains(&r.name.to_ascii_lowercase())) {
        let id = b.host_pool_id(&row.name);
        let Some(pool) = b.get_host_pool(&id).await? else {
            continue;
        };
        view.former.push(PoolView {
            name: row.name.clone(),
            field: String::new(),
            id: pool.id.clone().unwrap_or(id.clone()),
            ring: row.ring,
            hosts: b.list_session_hosts(&id).await?,
            msix: b.list_msix_packages(&id).await?,
            sessions: vec![],
            pool,
        });
    }
    Ok(())
}

/// The names this object's backend packages may have: the one it maps to, the one its
/// status names, each version's of the rollout recorded, and every package an assigned
/// host pool references under a name of this object's (which finds them without a status).
fn candidate_names(pkg: &AppAttachPackage, view: &BackendView) -> Vec<String> {
    let (ns, name) = (pkg.namespace().unwrap_or_default(), pkg.name_any());
    let home = naming::backend_name(&ns, &name);
    let status = pkg.status.clone().unwrap_or_default();
    let mut names = vec![home.clone()];
    names.extend(status.backend_name.clone());
    if let Some(r) = &status.rollout {
        names.extend(
            std::iter::once(&r.target)
                .chain(&r.previous)
                .map(|v| v.backend_name.clone()),
        );
    }
    let referenced = view
        .pools
        .iter()
        .flat_map(|p| {
            p.pool
                .properties
                .app_attach_package_references
                .iter()
                .flatten()
        })
        .filter_map(|id| id.rsplit('/').next())
        .filter(|leaf| leaf.starts_with(&home));
    names.extend(referenced.map(str::to_string));
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

/// The backend packages this object owns (tagged with its key), and an untagged one under
/// a name of its own, each with its role assignments.
async fn read_packages<B: Backend>(
    b: &B,
    pkg: &AppAttachPackage,
    view: &mut BackendView,
) -> Result<(), BackendError> {
    let key = key_of(pkg);
    for name in candidate_names(pkg, view) {
        let Some(package) = b.get_package(&name).await? else {
            continue;
        };
        let owner = package.tags.as_ref().and_then(|t| t.get(OWNER_TAG));
        if owner.is_some_and(|o| *o != key) {
            // Another object's: reported by the ownership check when it is the name this
            // object maps to, never touched.
            view.packages.push(HeldPackage {
                name,
                package,
                roles: vec![],
            });
            continue;
        }
        let roles = b.list_role_assignments(&b.package_id(&name)).await?;
        view.packages.push(HeldPackage {
            name,
            package,
            roles,
        });
    }
    Ok(())
}
