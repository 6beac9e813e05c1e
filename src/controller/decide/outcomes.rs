//! The decisions of passes that do not reconcile: a suspended package, a policy that
//! cannot be read, a backend that could not be read or refused a write part way, a
//! package being deleted, and an assignment whose package does not exist.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::super::status::{self, Cond};
use super::super::validate::{Finding, Severity};
use super::super::{Policy, observe::Observation};
use super::conditions::{SyncFailure, keep_except};
use super::report::{self, Outcome};
use super::{Decision, Memory, Note, Requeue, Settings, app_attach, msix};
use crate::backend::BackendError;
use crate::resources::{
    AppAttachPackageStatus, PackageMode,
    condition::{READY, SYNCED},
};

fn only_status(
    obs: &Observation,
    status: AppAttachPackageStatus,
    events: Vec<Note>,
    requeue: Requeue,
) -> Decision {
    Decision {
        intent: None,
        writes: vec![],
        status,
        assignments: vec![],
        events,
        requeue,
        settings: Settings {
            rollout_poll: std::time::Duration::ZERO,
        },
        intent_memory: None,
        memory: Memory::recorded(&obs.status()),
        findings: vec![],
        drift: false,
    }
}

fn with_conditions(obs: &Observation, wanted: &[Cond]) -> AppAttachPackageStatus {
    let previous = obs.status();
    let generation = obs.package.metadata.generation;
    AppAttachPackageStatus {
        observed_generation: generation,
        conditions: status::conditions(&previous.conditions, wanted, generation, obs.now),
        ..previous
    }
}

/// The conditions recorded, but for `Synced`, for a pass that does not compare the
/// backend with the spec: kept while they are about this generation. A `Ready` verdict on
/// an older spec is not the verdict on this one: it becomes Unknown, saying why.
fn kept_for_generation(obs: &Observation, reason: &'static str, why: &str) -> Vec<Cond> {
    let previous = obs.status();
    let mut wanted = keep_except(&previous.conditions, SYNCED);
    let generation = obs.package.metadata.generation;
    if previous.observed_generation != generation {
        wanted.retain(|c| c.type_ != READY);
        wanted.push(Cond::unknown(
            READY,
            reason,
            format!(
                "generation {} of the spec is not compared with the backend yet: {why}",
                generation.unwrap_or_default()
            ),
        ));
    }
    wanted
}

/// `spec.suspend`: nothing is read or written; `Synced` says so.
pub(crate) fn suspended(obs: &Observation) -> Decision {
    let why = "spec.suspend is true: nothing is written to the backend until it is false";
    let mut wanted = kept_for_generation(obs, "Suspended", why);
    wanted.push(Cond::no(SYNCED, "Suspended", why));
    only_status(
        obs,
        with_conditions(obs, &wanted),
        vec![],
        Requeue::AwaitChange,
    )
}

/// A package the controller refuses before it looks at the backend.
pub(crate) fn refused(obs: &Observation, findings: Vec<Finding>) -> Decision {
    let Some(e) = findings.iter().find(|f| f.severity == Severity::Error) else {
        return only_status(obs, obs.status(), vec![], Requeue::AwaitChange);
    };
    let wanted = [
        Cond::no(READY, e.reason, e.message.clone()),
        Cond::no(
            SYNCED,
            e.reason,
            "the spec cannot be reconciled as it is: see Ready",
        ),
    ];
    let status = with_conditions(obs, &wanted);
    let events = super::conditions::events(obs, &obs.status(), &status, &findings);
    only_status(obs, status, events, Requeue::AwaitChange)
}

/// How a backend failure shows in `Synced`.
fn sync_failure(e: &BackendError) -> SyncFailure {
    let reason = match e {
        BackendError::Throttled(_) | BackendError::Budget(_) => "BackendThrottled",
        BackendError::Auth(_) => "BackendAuthFailed",
        _ => "BackendUnavailable",
    };
    let message = match e {
        BackendError::Auth(_) => format!("the controller cannot sign in to Azure: {e}"),
        _ => format!("the last reconcile failed and will be retried: {e}"),
    };
    SyncFailure { reason, message }
}

/// A pass that could not read the backend: `Synced=False`, the rest as recorded (the
/// backend may still serve users).
pub(crate) fn unobserved(obs: &Observation, e: &BackendError) -> Decision {
    let f = sync_failure(e);
    let mut wanted = kept_for_generation(obs, f.reason, &f.message);
    if f.reason == "BackendAuthFailed" {
        wanted.retain(|c| c.type_ != READY);
        wanted.push(Cond::no(READY, f.reason, f.message.clone()));
    }
    wanted.push(Cond::no(SYNCED, f.reason, f.message));
    only_status(obs, with_conditions(obs, &wanted), vec![], Requeue::Resync)
}

/// A backend refusal a person has to act on (a 4xx that is not a throttle or a timeout),
/// as a finding with a stable reason and advice.
pub fn rejection(e: &BackendError) -> Option<Finding> {
    let BackendError::Arm(a) = e else {
        return None;
    };
    if !(400..500).contains(&a.status) || a.status == 408 || a.status == 429 {
        return None;
    }
    let (reason, advice): (&'static str, String) = match a.code.as_str() {
        "AuthorizationFailed" => {
            let action = a
                .message
                .split_once("perform action '")
                .and_then(|(_, rest)| rest.split_once('\''))
                .map_or("(see the message)", |(action, _)| action);
            (
                "BackendForbidden",
                format!("the controller's identity may not perform {action}: grant it the roles in the README's \"Run against Azure\" section"),
            )
        }
        "PrincipalNotFound" => (
            "PrincipalNotFound",
            "a UserAssignment names a user or group the directory does not know (a group created moments ago is retried first): check its objectId".into(),
        ),
        "InvalidResourceName" => ("InvalidBackendName", "rename the AppAttachPackage".into()),
        "ResourceGroupNotFound" => (
            "ResourceGroupNotFound",
            "create the resource group, or fix --resource-group".into(),
        ),
        "InvalidParameter" | "InvalidRequestContent" | "BadRequest" => (
            "InvalidParameter",
            "fix the property the message names".into(),
        ),
        _ => ("BackendRejected", "see the message".into()),
    };
    Some(Finding {
        severity: Severity::Error,
        reason,
        message: format!(
            "the backend refused the change ({} {}): {}; {advice}",
            a.status, a.code, a.message
        ),
    })
}

/// A pass whose writes stopped after the first `applied`: the status of what the backend
/// holds after them, the rollout as the intent recorded it, and the failure: a refusal in
/// `Ready` (until the spec or the backend changes), anything else in `Synced` (retried).
pub(crate) fn settle(
    obs: &Observation,
    d: &Decision,
    applied: usize,
    e: &BackendError,
    retrying: bool,
) -> Decision {
    let Some(view) = &obs.backend else {
        return unobserved(obs, e);
    };
    let policy = Policy::of(&*obs.package).unwrap_or(Policy::Manage);
    let s = super::subject(obs, view, &d.settings, policy);
    let memory = d
        .intent_memory
        .clone()
        .unwrap_or_else(|| Memory::recorded(&s.previous));
    let done = &d.writes[..applied.min(d.writes.len())];
    let mut findings = d.findings.clone();
    let outcome = match rejection(e).filter(|_| !retrying) {
        Some(f) => {
            findings.insert(0, f);
            Outcome::default()
        }
        None => Outcome {
            drift: false,
            failure: Some(sync_failure(e)),
        },
    };
    let mut out = report::decision(&s, None, done.to_vec(), memory, findings, outcome, None);
    out.writes.clear();
    out.requeue = Requeue::Resync;
    out
}

/// Deleting the package: its backend resources go, unless the reconcile policy or
/// suspend keeps them; sessions that may still use its image are reported first.
pub(crate) fn cleanup(obs: &Observation, settings: &Settings) -> Decision {
    let policy = Policy::of(&*obs.package).unwrap_or(Policy::Manage);
    let (Some(view), Policy::Manage, false) = (&obs.backend, policy, obs.package.spec.suspend)
    else {
        let note = format!(
            "left the backend resources in place (reconcile policy {policy:?}, suspend {})",
            obs.package.spec.suspend
        );
        let event = Note {
            warning: false,
            reason: "Detached".into(),
            note,
            action: "Delete",
        };
        return only_status(obs, obs.status(), vec![event], Requeue::AwaitChange);
    };
    let s = super::subject(obs, view, settings, policy);
    // Its published applications go first: none is left naming a package that is gone.
    let mut writes = super::publish::remove_all(&s);
    writes.extend(match s.spec.mode {
        PackageMode::AppAttach => app_attach::remove_all(&s),
        PackageMode::MsixAppAttach => msix::remove_all(&s),
    });
    let sessions = super::sessions::in_use(&s);
    let image = &s.spec.image.path;
    let keep_image = if sessions > 0 {
        format!(
            "{sessions} session(s) on its host pools may still use the image: keep {image} on the share until they end"
        )
    } else {
        format!(
            "no session on its host pools uses the image any more; {image} may be removed from the share"
        )
    };
    let mut events = vec![];
    let mut intent = None;
    if sessions > 0 {
        intent = Some(with_conditions(
            obs,
            &[Cond::no(READY, "Deleting", keep_image.clone())],
        ));
        events.push(Note {
            warning: true,
            reason: "ImageInUse".into(),
            note: keep_image.clone(),
            action: "Delete",
        });
    }
    let what = match s.spec.mode {
        PackageMode::AppAttach => {
            "its backend packages, their role assignments and its published RemoteApp applications"
        }
        PackageMode::MsixAppAttach => {
            "its MSIX packages from every host pool and its published RemoteApp applications"
        }
    };
    events.push(Note {
        warning: false,
        reason: "Deleted".into(),
        note: format!("removed {what}; {keep_image}"),
        action: "Delete",
    });
    let status = intent.clone().unwrap_or_else(|| obs.status());
    Decision {
        intent,
        writes,
        ..only_status(obs, status, events, Requeue::AwaitChange)
    }
}

/// The conditions of an assignment whose package (`package`, in namespace `ns`) does not
/// exist, and the message they carry.
pub fn orphan(
    previous: &[Condition],
    package: &str,
    ns: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> (Vec<Condition>, String) {
    let message = format!(
        "spec.packageRef.name: AppAttachPackage {package} does not exist in namespace {ns}; create it or point this assignment at an existing package"
    );
    let wanted = [Cond::no(READY, "PackageNotFound", message.clone())];
    (
        status::conditions(previous, &wanted, generation, now),
        message,
    )
}
