//! Execute: thin. Records the decision's intent, performs its writes in order, writes each
//! status once, publishes its events. Under policy skip the decision holds no writes (it
//! reported them as drift); a write that fails stops the rest, and the status says what
//! the backend holds after those that were done.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::decide::{self, AssignmentStatus, Decision, Note, Requeue, Write};
use super::observe::Observation;
use super::{Context, Error, resync_after, status};
use crate::backend::{Backend, BackendError};
use crate::resources::{
    AppAttachPackage, AppAttachPackageStatus, HostPoolAssignment, UserAssignment,
};

/// How many times a refusal that may pass by itself (a principal the directory has not
/// replicated yet) is retried with backoff before it is reported as the user's to fix.
const PATIENCE: u32 = 4;

/// Carries out a decision.
pub async fn execute<B: Backend>(
    ctx: &Context<B>,
    obs: &Observation,
    d: Decision,
) -> Result<Action, Error> {
    let mut current = obs.package.status.clone();
    if let Some(intent) = &d.intent {
        write_package_status(ctx, obs, current.as_ref(), intent).await?;
        current = Some(intent.clone());
    }
    for (i, w) in d.writes.iter().enumerate() {
        if let Err(e) = perform(&ctx.backend, w).await {
            return stopped(ctx, obs, &d, i, e, current).await;
        }
    }
    report(ctx, obs, &d, current.as_ref()).await?;
    Ok(action(ctx, obs, d.requeue))
}

/// The pass's `Action` for the controller.
fn action<B>(ctx: &Context<B>, obs: &Observation, requeue: Requeue) -> Action {
    match requeue {
        Requeue::Resync => resync_after(&ctx.config, &obs.key()),
        Requeue::After(d) => Action::requeue(d.min(ctx.config.resync)),
        Requeue::AwaitChange => Action::await_change(),
    }
}

/// Performs one write.
async fn perform<B: Backend>(b: &B, w: &Write) -> Result<(), BackendError> {
    match w {
        Write::PutPackage { name, body } => b.put_package(name, body).await.map(drop),
        Write::DeletePackage { name } => b.delete_package(name).await,
        Write::PutRole { scope, name, body } => {
            match b.put_role_assignment(scope, name, body).await {
                // Made by someone else meanwhile: adopted.
                Err(BackendError::Arm(e)) if e.code == "RoleAssignmentExists" => Ok(()),
                r => r.map(drop),
            }
        }
        Write::DeleteRole { id } => b.delete_role_assignment(id).await,
        Write::PutMsix {
            pool_id,
            full_name,
            body,
        } => b.put_msix_package(pool_id, full_name, body).await.map(drop),
        Write::DeleteMsix { pool_id, full_name } => b.delete_msix_package(pool_id, full_name).await,
        Write::AllowNewSessions { host_id, allow } => {
            b.set_allow_new_session(host_id, *allow).await
        }
        Write::SendMessage {
            session_id,
            message,
        } => b.send_message(session_id, message).await,
        Write::LogOff { session_id } => b.log_off(session_id).await,
    }
}

/// A write failed after the first `applied`: report what the backend holds now and why,
/// then retry (with backoff) what may pass, and wait for a change for what a person must
/// fix.
async fn stopped<B: Backend>(
    ctx: &Context<B>,
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
    report(ctx, obs, &settled, current.as_ref()).await?;
    match refusal {
        Some(_) if !patient => Ok(action(ctx, obs, settled.requeue)),
        _ => Err(e.into()),
    }
}

/// Writes the package's status (when it changed), its assignments' statuses, and
/// publishes the events.
async fn report<B: Backend>(
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
                let current = obs
                    .inputs
                    .host_pool_assignments
                    .iter()
                    .find(|a| a.name_any() == *name)
                    .and_then(|a| a.status.as_ref());
                status::write(&hpas, name, current, st).await?;
            }
            AssignmentStatus::Users(name, st) => {
                let current = obs
                    .inputs
                    .user_assignments
                    .iter()
                    .find(|a| a.name_any() == *name)
                    .and_then(|a| a.status.as_ref());
                status::write(&uas, name, current, st).await?;
            }
        }
    }
    Ok(())
}

/// Publishes events on an object; a failure to publish is logged, never fatal.
pub async fn publish<B, K>(ctx: &Context<B>, obj: &K, notes: &[Note])
where
    K: Resource<DynamicType = ()>,
{
    let reference = obj.object_ref(&());
    for n in notes {
        let event = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.clone(),
            note: Some(n.note.clone()),
            action: n.action.into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!("publishing an event: {e}");
        }
    }
}
