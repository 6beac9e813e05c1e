//! Ready means reachable: whether each assigned user and group gets the package at
//! sign-in on at least one assigned host pool, by the seed's rule
//! ([`crate::domain::entitlements`]), from what the backend holds once the pass's writes
//! are done: the host pools' application groups (Desktop, and RemoteApp with what is
//! published in them), the role assignments, and the directory where the backend has one.
//!
//! A principal who gets it nowhere is a Warning (`Degraded`) naming the principal, each
//! host pool and why, and the fix. Where the backend has no directory (Azure: the
//! controller does not read Microsoft Graph), a user's groups are not known: a principal
//! that no application group names directly is counted as not known, never reported.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::super::observe::{BackendView, GroupView};
use super::super::validate::{Finding, Severity};
use super::{Subject, report};
use crate::arm::models::{ApplicationGroupType, PrincipalType};
use crate::domain::directory::Directory;
use crate::domain::entitlements::{
    self, AppGroup, AppGroupKind, Feature, HostPool, Package, User, can_sign_in,
};
use crate::resources::{PackageMode, PackageState};

/// The reason of the warning for a principal who gets the package nowhere.
pub const NOT_REACHED: &str = "PrincipalNotReached";

/// At most this many principals are named one by one; the rest are counted.
const NAMED: usize = 5;

/// What sign-in gives the assigned principals.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reach {
    /// Principals who get the package on at least one assigned host pool.
    pub reached: usize,
    /// Principals whose groups the backend cannot tell (no directory).
    pub unknown: usize,
    /// A warning per principal who gets it nowhere (the first [`NAMED`], then a count).
    pub findings: Vec<Finding>,
}

/// Whether a principal gets the package.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Reached,
    Unknown,
    /// Not reached: why, per host pool.
    Not(Vec<String>),
}

/// The reach of an active app attach package with assigned principals, from `after`.
pub(crate) fn reach(s: &Subject<'_>, after: &BackendView) -> Option<Reach> {
    if s.spec.mode != PackageMode::AppAttach
        || s.spec.state != PackageState::Active
        || s.principals.is_empty()
    {
        return None;
    }
    let packages = ours(s, after);
    let pools: Vec<(String, HostPool)> = after
        .pools
        .iter()
        .map(|p| (p.name.clone(), sign_in_pool(&p.id, &after.app_groups)))
        .collect();
    let names = principal_names(s);
    let display = s
        .spec
        .package
        .display_name
        .clone()
        .unwrap_or_else(|| s.obs.package.name_any());
    let dir = after.directory.as_deref();
    let mut out = Reach::default();
    let mut not = vec![];
    for p in &s.principals {
        match verdict(
            p.object_id.as_str(),
            Some(p.kind),
            (&pools, &after.app_groups),
            &packages,
            dir,
        ) {
            Verdict::Reached => out.reached += 1,
            Verdict::Unknown => out.unknown += 1,
            Verdict::Not(why) => not.push((p, why)),
        }
    }
    for (p, why) in not.iter().take(NAMED) {
        let (kind, name) = names
            .get(&p.object_id)
            .cloned()
            .unwrap_or_else(|| (format!("{:?}", p.kind), p.object_id.clone()));
        let whom = if name.eq_ignore_ascii_case(&p.object_id) {
            format!("{kind} {name}")
        } else {
            format!("{kind} {name} ({})", p.object_id)
        };
        let whom_to_add = match p.kind {
            PrincipalType::Group => "the group",
            _ => "them",
        };
        let message = if pools.is_empty() {
            format!(
                "{whom} gets {display} on no host pool: no host pool is assigned; assign one with a HostPoolAssignment"
            )
        } else {
            format!(
                "{whom} gets {display} on no assigned host pool ({}); add {whom_to_add} to a Desktop application group of one of these host pools, or publish the application in the RemoteApp group used to sign in (HostPoolAssignment spec.hostPools[].remoteAppGroups)",
                why.join("; ")
            )
        };
        out.findings.push(Finding {
            severity: Severity::Warning,
            reason: NOT_REACHED,
            message,
        });
    }
    if not.len() > NAMED {
        out.findings.push(Finding {
            severity: Severity::Warning,
            reason: NOT_REACHED,
            message: format!(
                "and {} more assigned principal(s) get {display} on no assigned host pool",
                not.len() - NAMED
            ),
        });
    }
    Some(out)
}

/// This object's backend packages in `after`, as sign-in sees them.
fn ours(s: &Subject<'_>, after: &BackendView) -> Vec<Package> {
    let held = report::holdings(s, after, None);
    after
        .packages
        .iter()
        .filter(|p| held.version(&p.name).is_some())
        .map(|p| p.sign_in(&s.obs.scope.package_id(&p.name), ""))
        .collect()
}

/// A host pool and its application groups, as sign-in sees them.
pub(crate) fn sign_in_pool(pool_id: &str, groups: &[GroupView]) -> HostPool {
    HostPool {
        id: pool_id.to_string(),
        app_groups: groups
            .iter()
            .filter(|g| g.pool_id.eq_ignore_ascii_case(pool_id))
            .map(|g| AppGroup {
                kind: match g.kind {
                    ApplicationGroupType::RemoteApp => AppGroupKind::RemoteApp,
                    _ => AppGroupKind::Desktop,
                },
                members: g.members.clone(),
                published_families: g
                    .applications
                    .iter()
                    .filter_map(|a| a.properties.msix_package_family_name.as_deref())
                    .map(str::to_ascii_lowercase)
                    .collect(),
            })
            .collect(),
    }
}

/// The kind and name each assigned principal has in the UserAssignments, by object id.
fn principal_names(s: &Subject<'_>) -> BTreeMap<String, (String, String)> {
    s.obs
        .inputs
        .user_assignments
        .iter()
        .flat_map(|a| &a.spec.principals)
        .filter_map(|p| {
            Some((
                p.object_id.as_deref()?.to_ascii_lowercase(),
                (format!("{:?}", p.kind), p.name.clone()),
            ))
        })
        .collect()
}

fn gets(user: &User, pools: &[(String, HostPool)], packages: &[Package]) -> bool {
    pools
        .iter()
        .any(|(_, pool)| !entitlements::entitled(user, pool, packages).is_empty())
}

fn verdict(
    id: &str,
    kind: Option<PrincipalType>,
    (pools, groups): (&[(String, HostPool)], &[GroupView]),
    packages: &[Package],
    dir: Option<&Directory>,
) -> Verdict {
    let is_group = kind == Some(PrincipalType::Group);
    let user = User {
        object_id: id.to_string(),
        groups: if is_group {
            BTreeSet::new()
        } else {
            dir.and_then(|d| d.groups_of(id)).unwrap_or_default()
        },
    };
    if gets(&user, pools, packages) {
        return Verdict::Reached;
    }
    let Some(dir) = dir else {
        return Verdict::Unknown;
    };
    let mut why: Vec<String> = pools
        .iter()
        .map(|(name, pool)| format!("{name}: {}", why_not(&user, pool, groups, packages)))
        .collect();
    if is_group {
        // Its members may sign in through groups of their own.
        let members = dir.members_of(id);
        let missing = members
            .iter()
            .filter(|m| {
                let u = User {
                    object_id: m.to_string(),
                    groups: dir.groups_of(m).unwrap_or_default(),
                };
                !gets(&u, pools, packages)
            })
            .count();
        if !members.is_empty() && missing == 0 {
            return Verdict::Reached;
        }
        if !members.is_empty() {
            why.push(format!(
                "{missing} of its {} member(s) get it nowhere",
                members.len()
            ));
        }
    }
    Verdict::Not(why)
}

/// Why a user does not get the package on a host pool.
fn why_not(user: &User, pool: &HostPool, groups: &[GroupView], packages: &[Package]) -> String {
    if !packages.iter().any(|p| {
        p.active
            && p.host_pools
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&pool.id))
    }) {
        return "the package is not active on it".into();
    }
    if !can_sign_in(user, pool) {
        return "cannot sign in to it: no application group of it has them as a member".into();
    }
    let assigned = packages.iter().any(|p| {
        p.feature == Feature::AppAttach
            && std::iter::once(&user.object_id)
                .chain(&user.groups)
                .any(|i| p.principals.contains(i))
    });
    if !assigned {
        return "the package is not assigned to them in the backend yet".into();
    }
    let is_member = |g: &GroupView| {
        std::iter::once(&user.object_id)
            .chain(&user.groups)
            .any(|i| g.members.contains(i))
    };
    let remote: Vec<&str> = groups
        .iter()
        .filter(|g| g.pool_id.eq_ignore_ascii_case(&pool.id))
        .filter(|g| g.kind == ApplicationGroupType::RemoteApp && is_member(g))
        .map(GroupView::name)
        .collect();
    format!(
        "signs in only through RemoteApp application group {}, where the application is not published",
        remote.join(", ")
    )
}
