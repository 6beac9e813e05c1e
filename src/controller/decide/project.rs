//! What the backend holds once writes are done: a backend view with the writes applied,
//! as the backend applies them. The decision reports from it, and the simulator (for
//! tests and `appattach plan`) runs passes on it.

use super::super::observe::{BackendView, HeldPackage, PoolView};
use super::Write;
use crate::arm::Scope;
use crate::arm::models::{AppAttachPackage as ArmPackage, RoleAssignment};
use crate::backend::snapshot::application_name;

/// `view` with `writes` applied in order.
pub fn project(view: &BackendView, scope: &Scope, writes: &[Write]) -> BackendView {
    let mut v = view.clone();
    for w in writes {
        apply(&mut v, scope, w);
    }
    v
}

fn pools_mut(v: &mut BackendView) -> impl Iterator<Item = &mut PoolView> {
    v.pools.iter_mut().chain(v.former.iter_mut())
}

/// Applies one write.
pub fn apply(v: &mut BackendView, scope: &Scope, w: &Write) {
    match w {
        Write::PutPackage { name, body } => put_package(v, scope, name, body),
        Write::DeletePackage { name } => {
            v.packages.retain(|p| p.name != *name);
            refer(v, &scope.package_id(name), &[]);
        }
        Write::PutRole {
            scope: at,
            name,
            body,
        } => put_role(v, scope, at, name, body),
        Write::DeleteRole { id } => {
            for p in &mut v.packages {
                p.roles
                    .retain(|r| !r.id.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(id)));
            }
        }
        Write::PutMsix {
            pool_id,
            full_name,
            body,
        } => put_msix(v, pool_id, full_name, body),
        Write::DeleteMsix { pool_id, full_name } => {
            for p in pools_mut(v).filter(|p| p.id.eq_ignore_ascii_case(pool_id)) {
                p.msix.retain(|m| !is_named(m.name.as_deref(), full_name));
            }
        }
        Write::AllowNewSessions { host_id, allow } => {
            for h in pools_mut(v).flat_map(|p| p.hosts.iter_mut()) {
                if h.id
                    .as_deref()
                    .is_some_and(|i| i.eq_ignore_ascii_case(host_id))
                {
                    h.properties.allow_new_session = Some(*allow);
                }
            }
        }
        Write::PutApplication {
            group_id,
            name,
            body,
        } => put_application(v, group_id, name, Some(body)),
        Write::DeleteApplication { group_id, name } => put_application(v, group_id, name, None),
        Write::SendMessage { .. } => {}
        Write::LogOff { session_id } => {
            for p in pools_mut(v) {
                p.sessions.retain(|s| {
                    !s.id
                        .as_deref()
                        .is_some_and(|i| i.eq_ignore_ascii_case(session_id))
                });
            }
        }
    }
}

fn put_package(v: &mut BackendView, scope: &Scope, name: &str, body: &ArmPackage) {
    let mut body = body.clone();
    body.id = Some(scope.package_id(name));
    body.name = Some(name.to_string());
    let refs = body
        .properties
        .host_pool_references
        .clone()
        .unwrap_or_default();
    refer(v, &scope.package_id(name), &refs);
    match v.packages.iter_mut().find(|p| p.name == name) {
        Some(p) => {
            // The backend keeps when the image was put there unless it changed.
            let held = p.package.properties.image.as_ref();
            if let (Some(new), Some(old)) = (body.properties.image.as_mut(), held)
                && new.image_path == old.image_path
                && new.version == old.version
            {
                new.last_updated = old.last_updated.clone();
            }
            p.package = body;
        }
        None => v.packages.push(HeldPackage {
            name: name.to_string(),
            package: body,
            roles: vec![],
        }),
    }
}

fn put_role(v: &mut BackendView, scope: &Scope, at: &str, name: &str, body: &RoleAssignment) {
    let id = Scope::role_assignment_id(at, name);
    if let Some(p) = v
        .packages
        .iter_mut()
        .find(|p| scope.package_id(&p.name).eq_ignore_ascii_case(at))
        && !p.roles.iter().any(|r| r.id.as_deref() == Some(id.as_str()))
    {
        let mut body = body.clone();
        body.id = Some(id);
        body.name = Some(name.to_string());
        body.properties.scope = Some(at.to_string());
        p.roles.push(body);
    }
}

/// Puts (or with `None`, deletes) an application of a group.
fn put_application(
    v: &mut BackendView,
    group_id: &str,
    name: &str,
    body: Option<&crate::arm::models::Application>,
) {
    for g in v
        .app_groups
        .iter_mut()
        .filter(|g| g.id.eq_ignore_ascii_case(group_id))
    {
        g.applications
            .retain(|a| !application_name(a).eq_ignore_ascii_case(name));
        if let Some(body) = body {
            let mut body = body.clone();
            body.id = Some(format!("{}/applications/{name}", g.id));
            body.name = Some(format!("{}/{name}", g.name()));
            g.applications.push(body);
        }
    }
}

fn is_named(name: Option<&str>, full_name: &str) -> bool {
    name.is_some_and(|n| super::holdings::leaf(n).eq_ignore_ascii_case(full_name))
}

fn put_msix(
    v: &mut BackendView,
    pool_id: &str,
    full_name: &str,
    body: &crate::arm::models::MsixPackage,
) {
    for p in pools_mut(v).filter(|p| p.id.eq_ignore_ascii_case(pool_id)) {
        let mut body = body.clone();
        body.id = Some(format!("{}/msixPackages/{full_name}", p.id));
        body.name = Some(format!("{}/{full_name}", super::holdings::leaf(&p.id)));
        match p
            .msix
            .iter_mut()
            .find(|m| is_named(m.name.as_deref(), full_name))
        {
            Some(m) => {
                // The backend keeps when the image was put there unless it changed.
                if m.properties.image_path == body.properties.image_path {
                    body.properties.last_updated = m.properties.last_updated.clone();
                }
                *m = body;
            }
            None => p.msix.push(body),
        }
    }
}

/// Keeps each host pool's `appAttachPackageReferences` as the backend does: the package
/// `id` is listed by exactly the pools in `refs`.
fn refer(v: &mut BackendView, id: &str, refs: &[String]) {
    for p in pools_mut(v) {
        let listed = p
            .pool
            .properties
            .app_attach_package_references
            .get_or_insert_default();
        listed.retain(|r| !r.eq_ignore_ascii_case(id));
        if refs.iter().any(|r| r.eq_ignore_ascii_case(&p.id)) {
            listed.push(id.to_string());
        }
    }
}
