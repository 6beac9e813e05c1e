//! Execute: thin. Records the decision's intent, performs its writes in order, writes each
//! status once, publishes its events. Under policy skip the decision holds no writes (it
//! reported them as drift); a write that fails stops the rest, and the status says what
//! the backend holds after those that were done.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use std::time::Duration;

use super::build;
use super::decide::{self, AssignmentStatus, Decision, Note, Requeue, Write};
use super::observe::Observation;
use super::{Context, Error, Pass, resync_after, status};
use crate::backend::snapshot::{self, Change};
use crate::backend::{Backend, BackendError};
use crate::resources::{
    AppAttachPackage, AppAttachPackageStatus, HostPoolAssignment, UserAssignment,
};

/// How many times a refusal that may pass by itself (a principal the directory has not
/// replicated yet) is retried with backoff before it is reported as the user's to fix.
const PATIENCE: u32 = 4;

/// Carries out a decision.
pub async fn execute<B: Backend>(
    ctx: &Pass<'_, B>,
    obs: &Observation,
    d: Decision,
) -> Result<Action, Error> {
    let mut current = obs.package.status.clone();
    if let Some(intent) = &d.intent {
        write_package_status(ctx.ctx, obs, current.as_ref(), intent).await?;
        current = Some(intent.clone());
    }
    for (i, w) in d.writes.iter().enumerate() {
        match still_as_seen(ctx, w).await {
            Ok(true) => {}
            // The backend changed since the picture was taken: decide again, on what it
            // holds now, rather than overwrite it blindly.
            Ok(false) => return Ok(Action::requeue(Duration::ZERO)),
            Err(e) => return stopped(ctx, obs, &d, i, e, current).await,
        }
        match perform(ctx.backend, w).await {
            Ok(change) => ctx.snapshot.record(change),
            Err(e) => return stopped(ctx, obs, &d, i, e, current).await,
        }
    }
    report(ctx.ctx, obs, &d, current.as_ref()).await?;
    Ok(action(ctx.ctx, obs, d.requeue))
}

/// How long what the picture says of an object is taken as the backend's word before a
/// write to it: older than that, the object is read again first.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// Whether the object a write replaces or removes is still as the picture has it. Read
/// fresh only when the picture learnt it longer than [`FRESH_FOR`] ago; a difference is
/// recorded in the picture.
async fn still_as_seen<B: Backend>(ctx: &Pass<'_, B>, w: &Write) -> Result<bool, BackendError> {
    let stale = |key: &str| {
        ctx.snapshot
            .learnt_at(key)
            .is_none_or(|t| t.elapsed() > FRESH_FOR)
    };
    match w {
        Write::PutPackage { name, .. } | Write::DeletePackage { name } => {
            if !stale(&snapshot::package_key(name)) {
                return Ok(true);
            }
            let fresh = ctx.backend.get_package(name).await?;
            let seen = ctx
                .snapshot
                .with(|p| p.packages.get(&name.to_ascii_lowercase()).cloned());
            let same = match (&fresh, &seen) {
                (None, None) => true,
                (Some(f), Some(s)) => !build::package_differs(f, s),
                _ => false,
            };
            if !same {
                ctx.snapshot.record(match fresh {
                    Some(f) => Change::Package(name.clone(), f),
                    None => Change::PackageGone(name.clone()),
                });
            }
            Ok(same)
        }
        Write::PutMsix {
            pool_id, full_name, ..
        }
        | Write::DeleteMsix { pool_id, full_name } => {
            if !stale(&snapshot::msix_key(pool_id, full_name)) {
                return Ok(true);
            }
            msix_as_seen(ctx, pool_id, full_name).await
        }
        _ => Ok(true),
    }
}

/// Whether an MSIX package of a host pool is still as the picture has it.
async fn msix_as_seen<B: Backend>(
    ctx: &Pass<'_, B>,
    pool_id: &str,
    full_name: &str,
) -> Result<bool, BackendError> {
    let fresh = ctx.backend.get_msix_package(pool_id, full_name).await?;
    let seen = ctx.snapshot.with(|p| {
        p.msix
            .get(&pool_id.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .find(|m| {
                m.name
                    .as_deref()
                    .and_then(|n| n.rsplit('/').next())
                    .is_some_and(|n| n.eq_ignore_ascii_case(full_name))
            })
            .cloned()
    });
    let props = |m: &Option<crate::arm::models::MsixPackage>| {
        m.as_ref().map(|m| {
            let mut p = m.properties.clone();
            p.last_updated = None;
            p
        })
    };
    let same = props(&fresh) == props(&seen);
    if !same {
        ctx.snapshot.record(match fresh {
            Some(f) => Change::Msix(pool_id.to_string(), f),
            None => Change::MsixGone(pool_id.to_string(), full_name.to_string()),
        });
    }
    Ok(same)
}

/// The pass's `Action` for the controller.
fn action<B>(ctx: &Context<B>, obs: &Observation, requeue: Requeue) -> Action {
    match requeue {
        Requeue::Resync => resync_after(&ctx.config, &obs.key()),
        Requeue::After(d) => Action::requeue(d.min(ctx.config.resync)),
        Requeue::AwaitChange => Action::await_change(),
    }
}

/// Performs one write; returns what the backend holds after it, for the picture.
async fn perform<B: Backend>(b: &B, w: &Write) -> Result<Change, BackendError> {
    Ok(match w {
        Write::PutPackage { name, body } => {
            Change::Package(name.clone(), b.put_package(name, body).await?)
        }
        Write::DeletePackage { name } => {
            b.delete_package(name).await?;
            Change::PackageGone(name.clone())
        }
        Write::PutRole { scope, name, body } => {
            let mut made = match b.put_role_assignment(scope, name, body).await {
                Ok(made) => made,
                // Made by someone else meanwhile: adopted.
                Err(BackendError::Arm(e)) if e.code == "RoleAssignmentExists" => body.clone(),
                Err(e) => return Err(e),
            };
            made.id
                .get_or_insert_with(|| crate::arm::Scope::role_assignment_id(scope, name));
            made.properties.scope.get_or_insert_with(|| scope.clone());
            Change::Role(made)
        }
        Write::DeleteRole { id } => {
            b.delete_role_assignment(id).await?;
            Change::RoleGone(id.clone())
        }
        Write::PutMsix {
            pool_id,
            full_name,
            body,
        } => Change::Msix(
            pool_id.clone(),
            b.put_msix_package(pool_id, full_name, body).await?,
        ),
        Write::DeleteMsix { pool_id, full_name } => {
            b.delete_msix_package(pool_id, full_name).await?;
            Change::MsixGone(pool_id.clone(), full_name.clone())
        }
        Write::PutApplication {
            group_id,
            name,
            body,
        } => Change::Application(
            group_id.clone(),
            b.put_application(group_id, name, body).await?,
        ),
        Write::DeleteApplication { group_id, name } => {
            b.delete_application(group_id, name).await?;
            Change::ApplicationGone(group_id.clone(), name.clone())
        }
        Write::AllowNewSessions { host_id, allow } => {
            b.set_allow_new_session(host_id, *allow).await?;
            Change::Drain(host_id.clone(), *allow)
        }
        Write::SendMessage {
            session_id,
            message,
        } => {
            b.send_message(session_id, message).await?;
            Change::None
        }
        Write::LogOff { session_id } => {
            b.log_off(session_id).await?;
            Change::None
        }
    })
}

/// Carries out a decision that writes nothing to any backend (its status and events
/// only): a package whose target cannot be used.
pub async fn status_only<B>(
    ctx: &Context<B>,
    obs: &Observation,
    d: Decision,
) -> Result<Action, Error> {
    report(ctx, obs, &d, obs.package.status.as_ref()).await?;
    Ok(action(ctx, obs, d.requeue))
}

/// A write failed after the first `applied`: report what the backend holds now and why,
/// then retry (with backoff) what may pass, and wait for a change for what a person must
/// fix.
async fn stopped<B: Backend>(
    ctx: &Pass<'_, B>,
    obs: &Observation,
    d: &Decision,
    applied: usize,
    e: BackendError,
    current: Option<AppAttachPackageStatus>,
) -> Result<Action, Error> {
    if matches!(e, BackendError::Budget(_)) {
        return Err(e.into()); // our own pacing, not a failure: nothing to report
    }
    let refusal = decide::rejection(&e);
    let patient = refusal
        .as_ref()
        .is_some_and(|f| f.reason == "PrincipalNotFound" && ctx.failures(&obs.key()) < PATIENCE);
    let settled = decide::settle(obs, d, applied, &e, patient);
    report(ctx.ctx, obs, &settled, current.as_ref()).await?;
    match refusal {
        Some(_) if !patient => Ok(action(ctx.ctx, obs, settled.requeue)),
        _ => Err(e.into()),
    }
}

/// Writes the package's status (when it changed), its assignments' statuses, and
/// publishes the events.
async fn report<B>(
    ctx: &Context<B>,
    obs: &Observation,
    d: &Decision,
    current: Option<&AppAttachPackageStatus>,
) -> Result<(), Error> {
    write_package_status(ctx, obs, current, &d.status).await?;
    if let Some(r) = &d.status.rollout {
        let ns = obs.package.namespace().unwrap_or_default();
        ctx.config.metrics.rollout(&ns, &obs.package.name_any(), r);
    }
    write_assignments(ctx, obs, &d.assignments).await?;
    publish(ctx, &*obs.package, &d.events).await;
    Ok(())
}

async fn write_package_status<B>(
    ctx: &Context<B>,
    obs: &Observation,
    current: Option<&AppAttachPackageStatus>,
    st: &AppAttachPackageStatus,
) -> Result<bool, Error> {
    let ns = obs.package.namespace().unwrap_or_default();
    let api: Api<AppAttachPackage> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(status::write(&api, &obs.package.name_any(), current, st).await?)
}

async fn write_assignments<B>(
    ctx: &Context<B>,
    obs: &Observation,
    statuses: &[AssignmentStatus],
) -> Result<(), Error> {
    let ns = obs.package.namespace().unwrap_or_default();
    let hpas: Api<HostPoolAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    let uas: Api<UserAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    for a in statuses {
        match a {
            AssignmentStatus::HostPools(name, st) => {
                let current = cached(&obs.inputs.host_pool_assignments, name)
                    .and_then(|a| a.status.as_ref()?.cached_digest);
                status::write_unless_digest(&hpas, name, current, st).await?;
            }
            AssignmentStatus::Users(name, st) => {
                let current = cached(&obs.inputs.user_assignments, name)
                    .and_then(|a| a.status.as_ref()?.cached_digest);
                status::write_unless_digest(&uas, name, current, st).await?;
            }
        }
    }
    Ok(())
}

/// The cached assignment `name`.
fn cached<'a, A: Resource>(assignments: &'a [std::sync::Arc<A>], name: &str) -> Option<&'a A> {
    assignments
        .iter()
        .find(|a| a.name_any() == name)
        .map(|a| &**a)
}

/// Publishes events on an object; a failure to publish is logged, never fatal.
pub async fn publish<B, K>(ctx: &Context<B>, obj: &K, notes: &[Note])
where
    K: Resource<DynamicType = ()>,
{
    let reference = obj.object_ref(&());
    for n in notes {
        if let Err(e) = ctx.events.publish(n, &reference).await {
            tracing::warn!("publishing an event: {e}");
        }
    }
}
