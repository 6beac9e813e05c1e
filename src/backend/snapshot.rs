//! One picture of the backend, shared by every pass: the resource group's host pools with
//! their session hosts and MSIX packages, its app attach packages, the Desktop
//! Virtualization User role assignments at and below it, its application groups with
//! their applications, the session hosts' virtual machines (see [`super::machines`]: the
//! one list a refresh may find refused and still succeed), and the directory where the
//! backend has one.
//!
//! It is read with ARM's list operations (every page), refreshed on a period, and kept
//! current by the controller's own writes, so a pass reads nothing per host pool: reads
//! grow with the estate's collections, never with packages × host pools. A refresh is all
//! or nothing: a list that fails midway, or one that never ends, leaves the last good
//! picture in place (with its age), so nothing is decided from a partial list.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Backend, BackendError};
use crate::arm::models::{
    AppAttachPackage, Application, ApplicationGroup, ApplicationGroupType, HostPool, MsixPackage,
    RoleAssignment, SessionHost,
};
use crate::domain::directory::Directory;

/// The tag that names the Kubernetes object owning a backend package.
const OWNER_TAG: &str = "appattach.io/owner";

/// How an application this controller published says so: ARM applications carry no tags,
/// so their description reads `appattach.io/owner=NAMESPACE/NAME`.
pub const APPLICATION_OWNER: &str = "appattach.io/owner=";

/// The object that published an application (`namespace/name`), when this controller did.
pub fn application_owner(app: &Application) -> Option<&str> {
    app.properties
        .description
        .as_deref()
        .and_then(|d| d.strip_prefix(APPLICATION_OWNER))
        .filter(|o| !o.is_empty())
}

/// The name of an application (its last segment: ARM spells it `group/app`).
pub fn application_name(app: &Application) -> &str {
    app.name
        .as_deref()
        .and_then(|n| n.rsplit('/').next())
        .unwrap_or_default()
}

/// What the backend held at the last refresh, kept current by the controller's writes.
#[derive(Debug, Clone, Default)]
pub struct Picture {
    /// Host pools, by lower-case id.
    pub host_pools: HashMap<String, HostPool>,
    /// Session hosts of each host pool (lower-case pool id).
    pub session_hosts: HashMap<String, Vec<SessionHost>>,
    /// MSIX packages of each host pool (lower-case pool id).
    pub msix: HashMap<String, Vec<MsixPackage>>,
    /// App attach packages, by lower-case name (boxed: the table holds a pointer a
    /// package, not a whole body; it is rebuilt as it grows).
    pub packages: HashMap<String, Box<AppAttachPackage>>,
    /// The names (lower case) of the packages each owner tag names: most own one.
    by_owner: HashMap<String, Vec<String>>,
    /// Desktop Virtualization User role assignments, by lower-case scope (as grants: the
    /// picture keeps what a pass needs of them, at a tenth of their bodies' memory).
    pub roles: HashMap<String, Vec<Grant>>,
    /// Application groups.
    pub application_groups: Vec<ApplicationGroup>,
    /// Applications of each RemoteApp application group (lower-case group id).
    pub applications: HashMap<String, Vec<Application>>,
    /// The groups (lower-case ids) holding applications each owner published.
    app_owners: HashMap<String, BTreeSet<String>>,
    /// Users and their groups, where the backend has a directory.
    pub directory: Option<std::sync::Arc<Directory>>,
    /// The session hosts' virtual machines (one list per resource group holding them).
    pub machines: super::machines::Machines,
}

impl Picture {
    /// The names (lower case) of the packages tagged with this owner.
    pub fn owned_by(&self, owner: &str) -> impl Iterator<Item = &String> {
        self.by_owner.get(owner).into_iter().flatten()
    }

    /// The application groups (lower-case ids) holding applications `owner` published.
    pub fn groups_with_applications_of(&self, owner: &str) -> impl Iterator<Item = &String> {
        self.app_owners.get(owner).into_iter().flatten()
    }

    /// Files an application under its group (and its owner, when it has one).
    pub fn put_application(&mut self, group_id: &str, app: Application) {
        let key = group_id.to_ascii_lowercase();
        let name = application_name(&app).to_ascii_lowercase();
        self.remove_application(&key, &name);
        if let Some(owner) = application_owner(&app) {
            self.app_owners
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
        self.applications.entry(key).or_default().push(app);
    }

    /// Forgets an application of a group (by name).
    pub fn remove_application(&mut self, group_id: &str, name: &str) {
        let key = group_id.to_ascii_lowercase();
        let Some(apps) = self.applications.get_mut(&key) else {
            return;
        };
        let gone: Vec<Application> = apps
            .extract_if(.., |a| application_name(a).eq_ignore_ascii_case(name))
            .collect();
        for owner in gone.iter().filter_map(application_owner) {
            let still = apps.iter().any(|a| application_owner(a) == Some(owner));
            if !still && let Some(groups) = self.app_owners.get_mut(owner) {
                groups.remove(&key);
                if groups.is_empty() {
                    self.app_owners.remove(owner);
                }
            }
        }
    }

    /// Files a package under its name and owner.
    pub fn put_package(&mut self, name: &str, package: AppAttachPackage) {
        let key = name.to_ascii_lowercase();
        self.remove_package(&key);
        if let Some(owner) = package.tags.as_ref().and_then(|t| t.get(OWNER_TAG)) {
            let names = self.by_owner.entry(owner.clone()).or_default();
            // Sorted, as a set would be.
            if let Err(at) = names.binary_search(&key) {
                names.insert(at, key.clone());
            }
        }
        let refs = package
            .properties
            .host_pool_references
            .clone()
            .unwrap_or_default();
        self.refer(package.id.as_deref().unwrap_or_default(), &refs);
        self.packages.insert(key, Box::new(package));
    }

    /// Forgets a package (by name).
    pub fn remove_package(&mut self, name: &str) {
        let key = name.to_ascii_lowercase();
        if let Some(old) = self.packages.remove(&key) {
            if let Some(owner) = old.tags.as_ref().and_then(|t| t.get(OWNER_TAG))
                && let Some(names) = self.by_owner.get_mut(owner)
            {
                names.retain(|n| *n != key);
                if names.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
            self.refer(old.id.as_deref().unwrap_or_default(), &[]);
        }
    }

    /// Keeps each host pool's `appAttachPackageReferences` as the backend does.
    fn refer(&mut self, package_id: &str, refs: &[String]) {
        if package_id.is_empty() {
            return;
        }
        for (id, pool) in &mut self.host_pools {
            let listed = pool
                .properties
                .app_attach_package_references
                .get_or_insert_default();
            listed.retain(|r| !r.eq_ignore_ascii_case(package_id));
            if refs.iter().any(|r| r.eq_ignore_ascii_case(id)) {
                listed.push(package_id.to_string());
            }
        }
    }

    /// Files a role assignment under its scope (Desktop Virtualization User only).
    pub fn put_role(&mut self, role: RoleAssignment) {
        if !role.is_desktop_virtualization_user() {
            return;
        }
        let Some(id) = role.id.as_deref() else {
            return;
        };
        let scope = role
            .properties
            .scope
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = id.rsplit('/').next().unwrap_or(id);
        let at = self.roles.entry(scope).or_default();
        at.retain(|g| !g.name.eq_ignore_ascii_case(name));
        at.push(Grant {
            name: name.into(),
            principal: role.properties.principal_id.to_ascii_lowercase().into(),
            kind: role.properties.principal_type,
        });
    }

    /// Forgets a role assignment (by id; its name, a GUID, is unique).
    pub fn remove_role(&mut self, id: &str) {
        let name = id.rsplit('/').next().unwrap_or(id);
        for at in self.roles.values_mut() {
            at.retain(|g| !g.name.eq_ignore_ascii_case(name));
        }
    }

    /// The Desktop Virtualization User role assignments at a scope, as ARM gives them
    /// (in `subscription`, for their role definition's id).
    pub fn roles_at(&self, scope: &str, subscription: &str) -> Vec<RoleAssignment> {
        self.roles
            .get(&scope.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .map(|g| g.assignment(scope, subscription))
            .collect()
    }

    /// Files an MSIX package under its host pool.
    pub fn put_msix(&mut self, pool_id: &str, package: MsixPackage) {
        let leaf = |m: &MsixPackage| {
            m.name
                .as_deref()
                .and_then(|n| n.rsplit('/').next())
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let at = self.msix.entry(pool_id.to_ascii_lowercase()).or_default();
        let name = leaf(&package);
        at.retain(|m| leaf(m) != name);
        at.push(package);
    }

    /// Forgets an MSIX package of a host pool.
    pub fn remove_msix(&mut self, pool_id: &str, full_name: &str) {
        if let Some(at) = self.msix.get_mut(&pool_id.to_ascii_lowercase()) {
            at.retain(|m| {
                !m.name
                    .as_deref()
                    .and_then(|n| n.rsplit('/').next())
                    .is_some_and(|n| n.eq_ignore_ascii_case(full_name))
            });
        }
    }

    /// Sets whether a session host takes new sessions.
    pub fn set_allow_new_session(&mut self, host_id: &str, allow: bool) {
        for hosts in self.session_hosts.values_mut() {
            for h in hosts.iter_mut() {
                if h.id
                    .as_deref()
                    .is_some_and(|i| i.eq_ignore_ascii_case(host_id))
                {
                    h.properties.allow_new_session = Some(allow);
                }
            }
        }
    }
}

/// A Desktop Virtualization User role assignment, as the picture keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its name (a GUID); its id is its scope's, followed by
    /// `/providers/Microsoft.Authorization/roleAssignments/{name}`. Not the whole id: the
    /// scope is the picture's key already (20,000 grants at the large bench).
    pub name: Box<str>,
    /// The principal's object id, lower case.
    pub principal: Box<str>,
    /// User or Group.
    pub kind: Option<crate::arm::models::PrincipalType>,
}

impl Grant {
    /// The assignment, as ARM gives it.
    pub fn assignment(&self, scope: &str, subscription: &str) -> RoleAssignment {
        RoleAssignment {
            id: Some(format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
                self.name
            )),
            name: Some(self.name.to_string()),
            resource_type: Some("Microsoft.Authorization/roleAssignments".into()),
            properties: crate::arm::models::RoleAssignmentProperties {
                role_definition_id: crate::arm::models::role_definition_id(
                    subscription,
                    crate::arm::DESKTOP_VIRTUALIZATION_USER_ROLE,
                ),
                principal_id: self.principal.to_string(),
                principal_type: self.kind,
                scope: Some(scope.to_string()),
                description: None,
                condition: None,
                condition_version: None,
                created_on: None,
                updated_on: None,
            },
        }
    }
}

/// How the snapshot stands.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// How old the picture is, since its last complete refresh; `None` before the first.
    pub age: Option<Duration>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<BackendError>,
    /// List and read calls the last complete refresh made (a list of several pages is
    /// one call and several requests).
    pub calls: u64,
}

/// The shared picture and its refreshes.
#[derive(Debug, Default)]
pub struct Snapshot {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    picture: Picture,
    refreshed: Option<Instant>,
    last_error: Option<BackendError>,
    calls: u64,
    /// Writes made since the refresh in flight began, re-applied on top of its result.
    journal: Option<Vec<Change>>,
    /// Host pools named by full id outside the resource group, read one by one.
    outside: BTreeSet<String>,
    /// When the controller last learnt each object from an answer of the backend (its
    /// own writes, and fresh reads), by [`Change::key`].
    learnt: HashMap<String, Instant>,
}

/// A host pool, its session hosts and its MSIX packages, as read together.
pub type PoolRead = (HostPool, Vec<SessionHost>, Vec<MsixPackage>);

/// A change the controller made, as the backend answered it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A package put (its answer).
    Package(String, AppAttachPackage),
    /// A package deleted.
    PackageGone(String),
    /// A role assignment put (its answer).
    Role(RoleAssignment),
    /// A role assignment deleted (by id).
    RoleGone(String),
    /// An MSIX package put under a host pool (its answer).
    Msix(String, MsixPackage),
    /// An MSIX package deleted from a host pool.
    MsixGone(String, String),
    /// A session host drained or undrained.
    Drain(String, bool),
    /// A host pool's session hosts, read fresh.
    Hosts(String, Vec<SessionHost>),
    /// A host pool read fresh (by id): the pool, its session hosts and its MSIX packages
    /// (`None`: the pool is gone).
    Pool(String, Option<Box<PoolRead>>),
    /// An application put in an application group (the group's id, the answer).
    Application(String, Application),
    /// An application deleted from an application group (the group's id, its name).
    ApplicationGone(String, String),
    /// Nothing the picture holds (a message sent, a session logged off).
    None,
}

impl Change {
    /// The object it is about, as [`Snapshot::learnt_at`] names them.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::Package(name, _) | Self::PackageGone(name) => Some(package_key(name)),
            Self::Msix(pool, m) => {
                let name = m
                    .name
                    .as_deref()
                    .and_then(|n| n.rsplit('/').next())
                    .unwrap_or_default();
                Some(msix_key(pool, name))
            }
            Self::MsixGone(pool, name) => Some(msix_key(pool, name)),
            Self::Application(group, a) => Some(application_key(group, application_name(a))),
            Self::ApplicationGone(group, name) => Some(application_key(group, name)),
            _ => None,
        }
    }

    fn apply(&self, p: &mut Picture) {
        match self {
            Self::Package(name, pkg) => p.put_package(name, pkg.clone()),
            Self::PackageGone(name) => p.remove_package(name),
            Self::Role(r) => p.put_role(r.clone()),
            Self::RoleGone(id) => p.remove_role(id),
            Self::Msix(pool, m) => p.put_msix(pool, m.clone()),
            Self::MsixGone(pool, name) => p.remove_msix(pool, name),
            Self::Drain(host, allow) => p.set_allow_new_session(host, *allow),
            Self::Application(group, a) => p.put_application(group, a.clone()),
            Self::ApplicationGone(group, name) => p.remove_application(group, name),
            Self::Hosts(pool, hosts) => {
                p.session_hosts
                    .insert(pool.to_ascii_lowercase(), hosts.clone());
            }
            Self::Pool(id, read) => {
                let key = id.to_ascii_lowercase();
                match read.as_deref() {
                    Some((pool, hosts, msix)) => {
                        p.host_pools.insert(key.clone(), pool.clone());
                        p.session_hosts.insert(key.clone(), hosts.clone());
                        p.msix.insert(key, msix.clone());
                    }
                    None => {
                        p.host_pools.remove(&key);
                        p.session_hosts.remove(&key);
                        p.msix.remove(&key);
                    }
                }
            }
            Self::None => {}
        }
    }
}

/// The key of an app attach package, for [`Snapshot::learnt_at`].
pub fn package_key(name: &str) -> String {
    format!("package/{}", name.to_ascii_lowercase())
}

/// The key of an application of an application group, for [`Snapshot::learnt_at`].
pub fn application_key(group_id: &str, name: &str) -> String {
    format!(
        "application/{}/{}",
        group_id.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    )
}

/// The key of an MSIX package of a host pool, for [`Snapshot::learnt_at`].
pub fn msix_key(pool_id: &str, full_name: &str) -> String {
    format!(
        "msix/{}/{}",
        pool_id.to_ascii_lowercase(),
        full_name.to_ascii_lowercase()
    )
}

impl Snapshot {
    /// When the picture last learnt the object `key` names: its last complete refresh, or
    /// a later answer of the backend about it. `None` before the first refresh.
    pub fn learnt_at(&self, key: &str) -> Option<Instant> {
        let s = self.read();
        let told = s.learnt.get(key).copied();
        match (s.refreshed, told) {
            (Some(r), Some(t)) => Some(r.max(t)),
            (r, t) => r.or(t),
        }
    }

    /// An empty snapshot, before its first refresh.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads from the picture under its lock.
    pub fn with<T>(&self, f: impl FnOnce(&Picture) -> T) -> T {
        f(&self.read().picture)
    }

    /// Whether a complete refresh has been done.
    pub fn is_ready(&self) -> bool {
        self.read().refreshed.is_some()
    }

    /// How the snapshot stands.
    pub fn health(&self) -> Health {
        let s = self.read();
        Health {
            age: s.refreshed.map(|t| t.elapsed()),
            last_error: s.last_error.clone(),
            calls: s.calls,
        }
    }

    /// Records a change the controller made (or read fresh): the picture follows it at once,
    /// and a refresh in flight re-applies it to what it read.
    pub fn record(&self, change: Change) {
        let mut s = self.write();
        if let Some(key) = change.key() {
            s.learnt.insert(key, Instant::now());
        }
        change.apply(&mut s.picture);
        if let Some(journal) = s.journal.as_mut() {
            journal.push(change);
        }
    }

    /// Asks future refreshes to read a host pool outside the resource group (named by id).
    pub fn watch_outside(&self, pool_id: &str) {
        self.write().outside.insert(pool_id.to_ascii_lowercase());
    }

    /// Refreshes the whole picture from list calls. All or nothing: on an error the last
    /// good picture stays, and the error is kept for `health`. Returns the owners whose
    /// packages (or their role assignments) changed since the last picture.
    pub async fn refresh<B: Backend>(&self, backend: &B) -> Result<BTreeSet<String>, BackendError> {
        let outside = {
            let mut s = self.write();
            s.journal = Some(Vec::new());
            s.outside.clone()
        };
        let (result, calls) = read_all(backend, &outside).await;
        let mut s = self.write();
        let journal = s.journal.take().unwrap_or_default();
        match result {
            Ok(mut fresh) => {
                for change in &journal {
                    change.apply(&mut fresh);
                }
                let changed = changed_owners(&s.picture, &fresh);
                s.picture = fresh;
                s.refreshed = Some(Instant::now());
                // What the refresh read is as new as what was learnt before it.
                s.learnt.clear();
                s.last_error = None;
                s.calls = calls;
                Ok(changed)
            }
            Err(e) => {
                s.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// Reads every collection; counts the calls.
async fn read_all<B: Backend>(
    b: &B,
    outside: &BTreeSet<String>,
) -> (Result<Picture, BackendError>, u64) {
    let mut reads = 0u64;
    let result = async {
        let mut p = Picture::default();
        let mut pools = b.list_host_pools().await?;
        reads += 1;
        for id in outside {
            if let Some(pool) = b.get_host_pool(id).await? {
                pools.push(pool);
            }
            reads += 1;
        }
        for pool in pools {
            let Some(id) = pool.id.clone() else { continue };
            p.session_hosts
                .insert(id.to_ascii_lowercase(), b.list_session_hosts(&id).await?);
            p.msix
                .insert(id.to_ascii_lowercase(), b.list_msix_packages(&id).await?);
            reads += 2;
            p.host_pools.insert(id.to_ascii_lowercase(), pool);
        }
        for pkg in b.list_packages().await? {
            let name = pkg.name.clone().unwrap_or_default();
            p.put_package(&name, pkg);
        }
        reads += 1;
        for role in b.list_role_assignments_in_resource_group().await? {
            p.put_role(role);
        }
        reads += 1;
        p.application_groups = b.list_application_groups().await?;
        reads += 1;
        for g in p.application_groups.clone() {
            let Some(id) = &g.id else { continue };
            if g.properties.application_group_type == ApplicationGroupType::RemoteApp {
                p.applications.entry(id.to_ascii_lowercase()).or_default();
                for app in b.list_applications(id).await? {
                    p.put_application(id, app);
                }
                reads += 1;
            }
        }
        let (machines, calls) = super::machines::read(b, p.session_hosts.values().flatten()).await;
        reads += calls;
        p.machines = machines?;
        p.directory = b.directory().await?.map(std::sync::Arc::new);
        Ok(p)
    }
    .await;
    (result, reads)
}

/// The owners whose packages, or the role assignments at them, differ between two
/// pictures: their objects need a pass (drift made in the portal is corrected this way).
fn changed_owners(old: &Picture, new: &Picture) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let owner = |p: &AppAttachPackage| p.tags.as_ref().and_then(|t| t.get(OWNER_TAG)).cloned();
    let roles_of = |pic: &Picture, p: &AppAttachPackage| {
        let scope = p.id.clone().unwrap_or_default().to_ascii_lowercase();
        pic.roles.get(&scope).cloned().unwrap_or_default()
    };
    for (name, p) in &new.packages {
        let before = old.packages.get(name);
        if before != Some(p) || before.is_some_and(|b| roles_of(old, b) != roles_of(new, p)) {
            out.extend(owner(p));
            out.extend(before.and_then(|b| owner(b)));
        }
    }
    for (name, p) in &old.packages {
        if !new.packages.contains_key(name) {
            out.extend(owner(p));
        }
    }
    // Applications an owner published, changed or removed behind its back.
    let owners: BTreeSet<&String> = old.app_owners.keys().chain(new.app_owners.keys()).collect();
    for o in owners {
        if published(old, o) != published(new, o) {
            out.insert(o.clone());
        }
    }
    // An application group whose members or applications changed changes who gets the
    // packages of its host pool, and a session host that starts or stops failing to stage
    // (or is shut down, or starts) changes what its pool's packages report: they report it.
    for pool in changed_group_pools(old, new)
        .into_iter()
        .chain(changed_host_health(old, new))
    {
        let refs = new
            .host_pools
            .get(&pool)
            .or_else(|| old.host_pools.get(&pool))
            .and_then(|p| p.properties.app_attach_package_references.clone())
            .unwrap_or_default();
        for id in refs {
            let name = id
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            out.extend(new.packages.get(&name).and_then(|p| owner(p)));
        }
    }
    out
}

/// The host pools (lower-case ids) whose session hosts' status or app attach health check
/// (result and message, not its time: a check that says the same again changes nothing)
/// differ between two pictures.
fn changed_host_health(old: &Picture, new: &Picture) -> BTreeSet<String> {
    let health =
        |p: &Picture, pool: &str| -> Vec<(Option<String>, Option<String>, Option<String>)> {
            p.session_hosts
                .get(pool)
                .into_iter()
                .flatten()
                .map(|h| {
                    let check = h.properties.app_attach_health_check();
                    (
                        h.properties.status.clone(),
                        check.and_then(|c| c.health_check_result.clone()),
                        check
                            .and_then(|c| c.additional_failure_details.as_ref())
                            .and_then(|d| d.message.clone()),
                    )
                })
                .collect()
        };
    // Each pool once: a pool in both pictures is compared once, not twice.
    let pools: BTreeSet<&String> = old
        .session_hosts
        .keys()
        .chain(new.session_hosts.keys())
        .collect();
    pools
        .into_iter()
        .filter(|pool| health(old, pool) != health(new, pool))
        .cloned()
        .collect()
}

/// The applications `owner` published, by group, sorted.
fn published<'a>(p: &'a Picture, owner: &str) -> Vec<(&'a String, &'a Application)> {
    let mut out: Vec<(&String, &Application)> = p
        .groups_with_applications_of(owner)
        .flat_map(|g| {
            p.applications
                .get(g)
                .into_iter()
                .flatten()
                .filter(|a| application_owner(a) == Some(owner))
                .map(move |a| (g, a))
        })
        .collect();
    out.sort_by(|a, b| (a.0, application_name(a.1)).cmp(&(b.0, application_name(b.1))));
    out
}

/// The host pools (lower-case ids) of the application groups whose kind, members or
/// applications differ between two pictures.
fn changed_group_pools(old: &Picture, new: &Picture) -> BTreeSet<String> {
    let groups = |p: &Picture| -> HashMap<String, (String, ApplicationGroupType)> {
        p.application_groups
            .iter()
            .filter_map(|g| {
                Some((
                    g.id.as_deref()?.to_ascii_lowercase(),
                    (
                        g.properties.host_pool_arm_path.to_ascii_lowercase(),
                        g.properties.application_group_type,
                    ),
                ))
            })
            .collect()
    };
    let (before, after) = (groups(old), groups(new));
    let members = |p: &Picture, g: &str| -> BTreeSet<Box<str>> {
        p.roles
            .get(g)
            .into_iter()
            .flatten()
            .map(|r| r.principal.clone())
            .collect()
    };
    let families = |p: &Picture, g: &str| -> BTreeSet<String> {
        p.applications
            .get(g)
            .into_iter()
            .flatten()
            .filter_map(|a| a.properties.msix_package_family_name.clone())
            .map(|f| f.to_ascii_lowercase())
            .collect()
    };
    let mut out = BTreeSet::new();
    for id in before.keys().chain(after.keys()) {
        let (b, a) = (before.get(id), after.get(id));
        if b != a || members(old, id) != members(new, id) || families(old, id) != families(new, id)
        {
            out.extend(b.into_iter().chain(a).map(|(pool, _)| pool.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DesktopVirtualization";

    fn app(group: &str, name: &str, owner: Option<&str>, family: &str) -> Application {
        serde_json::from_value(json!({
            "name": format!("{group}/{name}"),
            "properties": {"commandLineSetting": "DoNotAllow", "applicationType": "MsixApplication",
                           "msixPackageFamilyName": family, "msixPackageApplicationId": "App",
                           "description": owner.map(|o| format!("{APPLICATION_OWNER}{o}"))}
        }))
        .unwrap()
    }

    /// A picture with host pool `hp` running package `pkg` (owned by `ns/pkg`) and a
    /// RemoteApp group `ag` of it.
    fn picture() -> Picture {
        let mut p = Picture::default();
        let pool: HostPool = serde_json::from_value(json!({
            "id": format!("{RG}/hostPools/hp"), "name": "hp", "location": "westeurope",
            "properties": {"hostPoolType": "Pooled", "loadBalancerType": "BreadthFirst",
                           "preferredAppGroupType": "Desktop"}
        }))
        .unwrap();
        p.host_pools
            .insert(format!("{RG}/hostPools/hp").to_ascii_lowercase(), pool);
        let pkg: AppAttachPackage = serde_json::from_value(json!({
            "id": format!("{RG}/appAttachPackages/pkg"), "name": "pkg", "location": "westeurope",
            "tags": {OWNER_TAG: "ns/pkg"},
            "properties": {"hostPoolReferences": [format!("{RG}/hostPools/hp")]}
        }))
        .unwrap();
        p.put_package("pkg", pkg);
        p.application_groups = vec![
            serde_json::from_value(json!({
                "id": format!("{RG}/applicationGroups/ag"), "name": "ag", "location": "westeurope",
                "properties": {"applicationGroupType": "RemoteApp",
                               "hostPoolArmPath": format!("{RG}/hostPools/hp")}
            }))
            .unwrap(),
        ];
        p
    }

    fn group() -> String {
        format!("{RG}/applicationGroups/ag").to_ascii_lowercase()
    }

    #[test]
    fn applications_are_filed_by_owner_and_forgotten_by_name() {
        let mut p = picture();
        p.put_application(&group(), app("ag", "aa-1", Some("ns/a"), "F"));
        p.put_application(&group(), app("ag", "aa-2", Some("ns/a"), "G"));
        p.put_application(&group(), app("ag", "byhand", None, "F"));
        assert_eq!(
            p.groups_with_applications_of("ns/a").collect::<Vec<_>>(),
            vec![&group()]
        );
        // Put again: replaced, not added.
        p.put_application(&group(), app("ag", "AA-1", Some("ns/a"), "F"));
        assert_eq!(p.applications[&group()].len(), 3);
        p.remove_application(&group(), "aa-1");
        assert_eq!(p.groups_with_applications_of("ns/a").count(), 1);
        p.remove_application(&group(), "aa-2");
        assert_eq!(p.groups_with_applications_of("ns/a").count(), 0);
        assert_eq!(
            p.applications[&group()].len(),
            1,
            "the one made by hand stays"
        );
    }

    #[test]
    fn a_refresh_that_finds_an_application_removed_or_a_member_added_wakes_its_owners() {
        let mut old = picture();
        old.put_application(&group(), app("ag", "aa-1", Some("ns/a"), "F"));
        // The application ns/a published was deleted in the portal.
        let new = picture();
        let changed = changed_owners(&old, &new);
        assert!(changed.contains("ns/a"), "{changed:?}");
        // Someone joined the RemoteApp group of hp: who gets the packages of hp changes.
        let mut joined = picture();
        joined.put_role(
            serde_json::from_value(json!({
                "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/r1", group()),
                "name": "r1",
                "properties": {
                    "roleDefinitionId": crate::arm::models::role_definition_id("s", crate::arm::DESKTOP_VIRTUALIZATION_USER_ROLE),
                    "principalId": "u1", "scope": group()
                }
            }))
            .unwrap(),
        );
        let changed = changed_owners(&picture(), &joined);
        assert_eq!(changed, BTreeSet::from(["ns/pkg".to_string()]));
        // Nothing changed: nobody is woken.
        assert!(changed_owners(&picture(), &picture()).is_empty());
    }

    #[test]
    fn a_session_host_that_starts_failing_to_stage_wakes_the_owners_on_its_pool() {
        let with_host = |result: &str, message: Option<&str>, at: &str, status: &str| {
            let mut p = picture();
            let host: SessionHost = serde_json::from_value(json!({
                "id": format!("{RG}/hostPools/hp/sessionHosts/h-0"), "name": "hp/h-0",
                "properties": {"status": status, "sessionHostHealthCheckResults": [{
                    "healthCheckName": "AppAttachHealthCheck", "healthCheckResult": result,
                    "additionalFailureDetails": {"message": message, "lastHealthCheckDateTime": at}}]}
            }))
            .unwrap();
            p.session_hosts.insert(
                format!("{RG}/hostPools/hp").to_ascii_lowercase(),
                vec![host],
            );
            p
        };
        let good = with_host(
            "HealthCheckSucceeded",
            None,
            "2026-01-01T00:00:00Z",
            "Available",
        );
        let failing = with_host(
            "HealthCheckFailed",
            Some("cannot stage x.vhdx"),
            "2026-01-01T00:01:00Z",
            "Available",
        );
        let owners = BTreeSet::from(["ns/pkg".to_string()]);
        assert_eq!(changed_owners(&good, &failing), owners);
        assert_eq!(changed_owners(&failing, &good), owners);
        let off = with_host(
            "HealthCheckSucceeded",
            None,
            "2026-01-01T00:00:00Z",
            "Shutdown",
        );
        assert_eq!(changed_owners(&good, &off), owners);
        // The same report again, later: nothing to say anew.
        let again = with_host(
            "HealthCheckSucceeded",
            None,
            "2026-01-01T00:05:00Z",
            "Available",
        );
        assert!(changed_owners(&good, &again).is_empty());
    }
}
