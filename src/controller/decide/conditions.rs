//! Conditions and events: `Ready`, `Synced`, `Progressing`, `CertificateValid` and
//! `Degraded` from the findings, the rollout and the outcome of the writes; an event for
//! each transition a person should see.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::super::Policy;
use super::super::observe::Observation;
use super::super::status::{self, Cond};
use super::super::validate::{Finding, Severity};
use super::report::Outcome;
use super::{Memory, Note, Subject};
use crate::resources::{
    AppAttachPackageStatus, PackageMode, RolloutPhase as Phase, RolloutStatus, RolloutStep as Step,
    condition::{PROGRESSING, READY, SYNCED},
};

/// Why the last pass did not finish its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncFailure {
    /// `BackendThrottled`, `BackendUnavailable`, `BackendAuthFailed`, ...
    pub reason: &'static str,
    /// What failed; it is retried.
    pub message: String,
}

/// What the Ready message says of a reconciled package.
pub(crate) struct Summary {
    /// Its backend name.
    pub name: String,
    /// Host pools that run it.
    pub pools: usize,
    /// Principals it is assigned to in the backend.
    pub principals: usize,
    /// Of the assigned principals, those who get it at sign-in and those the backend
    /// cannot tell (no directory), when that is computed.
    pub reach: Option<(usize, usize)>,
}

/// The package's conditions.
pub(crate) fn package(
    s: &Subject<'_>,
    m: &Memory,
    findings: &[Finding],
    outcome: &Outcome,
    summary: &Summary,
) -> Vec<Condition> {
    let first_error = findings.iter().find(|f| f.severity == Severity::Error);
    let mut wanted = match (first_error, outcome.drift) {
        (Some(e), _) => vec![
            Cond::no(READY, e.reason, e.message.clone()),
            Cond::no(
                SYNCED,
                e.reason,
                "the spec cannot be reconciled as it is: see Ready",
            ),
        ],
        (None, true) => vec![
            Cond::no(
                READY,
                "DriftDetected",
                "the backend differs from the spec; reconcile policy skip: observed, not corrected",
            ),
            Cond::yes(
                SYNCED,
                "Observed",
                "policy skip: the backend was read, not written",
            ),
        ],
        (None, false) => reconciled(s, summary),
    };
    if first_error.is_none()
        && let Some(r) = &m.rollout
    {
        let (progressing, mut ready) = rollout(r);
        // A failed rollout is the verdict on its own target only: a spec that went back
        // to the version that runs (`rollout undo` after the rollback) is judged afresh.
        if r.phase == Phase::Failed && !super::super::planner::same(&r.target, &s.wanted) {
            ready = None;
        }
        if let Some(ready) = ready {
            wanted.retain(|c| c.type_ != READY);
            wanted.insert(0, ready);
        }
        wanted.push(progressing);
    }
    if let Some(f) = &outcome.failure {
        // The backend may still serve users: Ready stays as it was, except that nothing
        // reaches the backend while the controller cannot sign in.
        wanted = keep_except(&s.previous.conditions, SYNCED);
        if f.reason == "BackendAuthFailed" {
            wanted.retain(|c| c.type_ != READY);
            wanted.push(Cond::no(READY, f.reason, f.message.clone()));
        }
        wanted.push(Cond::no(SYNCED, f.reason, f.message.clone()));
    } else {
        wanted.extend(certificate(s, findings));
        wanted.push(degraded(findings));
    }
    let generation = s.obs.package.metadata.generation;
    status::conditions(&s.previous.conditions, &wanted, generation, s.obs.now)
}

fn reconciled(s: &Subject<'_>, summary: &Summary) -> Vec<Cond> {
    let what = match s.policy {
        Policy::Skip => "matches the spec (observed only: reconcile policy skip)",
        _ => "matches the spec",
    };
    let kind = match s.spec.mode {
        PackageMode::AppAttach => "backend package",
        PackageMode::MsixAppAttach => "MSIX package",
    };
    vec![
        Cond::yes(
            READY,
            "Reconciled",
            format!(
                "{kind} {} {what}: {} host pool(s), {} principal(s){}",
                summary.name,
                summary.pools,
                summary.principals,
                match summary.reach {
                    Some((reached, 0)) => format!(", {reached} of them get it at sign-in"),
                    Some((reached, unknown)) => format!(
                        ", {reached} of them get it at sign-in ({unknown} not known: without a directory, membership through groups cannot be told)"
                    ),
                    None => String::new(),
                }
            ),
        ),
        Cond::yes(SYNCED, "ReconcileSucceeded", "the last reconcile succeeded"),
    ]
}

fn certificate(s: &Subject<'_>, findings: &[Finding]) -> Option<Cond> {
    s.spec.certificate.as_ref()?;
    Some(
        match findings
            .iter()
            .find(|f| f.reason.starts_with("Certificate"))
        {
            Some(f) if f.severity == Severity::Error => {
                Cond::no("CertificateValid", f.reason, f.message.clone())
            }
            Some(f) => Cond::yes("CertificateValid", f.reason, f.message.clone()),
            None => Cond::yes(
                "CertificateValid",
                "CertificateValid",
                "the certificate is valid for more than 30 days, or the package is timestamped",
            ),
        },
    )
}

/// `Degraded`: true on warnings. What the controller could not check (the notes) is said
/// in its message after them, and never makes the package Degraded: a missing optional
/// permission is worth knowing, not a fault of the package.
fn degraded(findings: &[Finding]) -> Cond {
    let of = |severity: Severity| -> Vec<&Finding> {
        findings.iter().filter(|f| f.severity == severity).collect()
    };
    let (warnings, notes) = (of(Severity::Warning), of(Severity::Info));
    let said = |head: Option<&str>| {
        head.into_iter()
            .chain(warnings.iter().chain(&notes).map(|f| f.message.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match warnings.first() {
        Some(w) => Cond::yes("Degraded", w.reason, said(None)),
        None => Cond::no("Degraded", "NoWarnings", said(Some("no warnings"))),
    }
}

/// The conditions recorded, except `except`, as conditions to set again.
pub(crate) fn keep_except(previous: &[Condition], except: &str) -> Vec<Cond> {
    previous
        .iter()
        .filter(|c| c.type_ != except)
        .filter_map(|c| {
            let t: &'static str = match c.type_.as_str() {
                "Ready" => READY,
                "Synced" => SYNCED,
                "Progressing" => PROGRESSING,
                "CertificateValid" => "CertificateValid",
                "Degraded" => "Degraded",
                _ => return None,
            };
            Some(Cond {
                type_: t,
                status: match c.status.as_str() {
                    "True" => "True",
                    "Unknown" => "Unknown",
                    _ => "False",
                },
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        })
        .collect()
}

/// The `Progressing` condition of a rollout, and what it makes of `Ready`.
pub(crate) fn rollout(r: &RolloutStatus) -> (Cond, Option<Cond>) {
    let message = r.message.clone().unwrap_or_default();
    match r.phase {
        Phase::Progressing | Phase::RollingBack => (
            Cond::yes(PROGRESSING, "RolloutInProgress", message.clone()),
            Some(Cond::unknown(READY, "RolloutInProgress", message)),
        ),
        Phase::Paused => (
            Cond::unknown(PROGRESSING, "RolloutPaused", message.clone()),
            Some(Cond::unknown(READY, "RolloutPaused", message)),
        ),
        Phase::Held => (
            Cond::no(PROGRESSING, "RolloutHeld", message.clone()),
            Some(Cond::no(READY, "RolloutHeld", message)),
        ),
        Phase::Failed => (
            Cond::no(PROGRESSING, "RolloutFailed", message.clone()),
            Some(Cond::no(READY, "RolloutFailed", message)),
        ),
        Phase::Reverted => (Cond::yes(PROGRESSING, "RolloutReverted", message), None),
        Phase::Complete => (Cond::yes(PROGRESSING, "RolloutComplete", message), None),
    }
}

/// An assignment's conditions: the package's Ready, mirrored.
pub(crate) fn mirror(
    obs: &Observation,
    status: &AppAttachPackageStatus,
    previous: &[Condition],
    generation: Option<i64>,
) -> Vec<Condition> {
    let wanted = match status::find(&status.conditions, READY) {
        Some(r) if r.status == "True" => vec![Cond::yes(
            READY,
            "Reconciled",
            format!(
                "package {} is Ready",
                kube::ResourceExt::name_any(&*obs.package)
            ),
        )],
        Some(r) => vec![Cond::no(READY, &r.reason, r.message.clone())],
        None => vec![],
    };
    status::conditions(previous, &wanted, generation, obs.now)
}

fn truncate(s: &str) -> String {
    s.chars().take(1000).collect()
}

/// The events of a pass: Ready's transitions, the warnings (and, as Normal events, what
/// could not be checked) when they change, and the rollout's moves.
pub(crate) fn events(
    obs: &Observation,
    previous: &AppAttachPackageStatus,
    now: &AppAttachPackageStatus,
    findings: &[Finding],
) -> Vec<Note> {
    let _ = obs;
    let mut out = vec![];
    let key = |c: &Condition| (c.status.clone(), c.reason.clone(), c.message.clone());
    let before = status::find(&previous.conditions, READY).map(key);
    if let Some(ready) = status::find(&now.conditions, READY).filter(|r| r.status != "Unknown")
        && before != Some(key(ready))
    {
        out.push(Note {
            warning: ready.status != "True",
            reason: ready.reason.clone(),
            note: truncate(&ready.message),
            action: "Reconcile",
        });
    }
    let message = |st: &AppAttachPackageStatus| {
        status::find(&st.conditions, "Degraded").map(|c| c.message.clone())
    };
    if message(previous) != message(now) {
        out.extend(
            findings
                .iter()
                .filter(|f| f.severity != Severity::Error)
                .map(|w| Note {
                    warning: w.severity == Severity::Warning,
                    reason: w.reason.to_string(),
                    note: truncate(&w.message),
                    action: "Validate",
                }),
        );
    }
    if let Some(r) = &now.rollout {
        out.extend(rollout_event(previous.rollout.as_ref(), r));
    }
    out
}

/// The event for a rollout that moved, if it did.
fn rollout_event(before: Option<&RolloutStatus>, after: &RolloutStatus) -> Option<Note> {
    let key = |r: &RolloutStatus| (r.revision, r.phase, r.step, r.ring);
    if before.map(key) == Some(key(after)) {
        return None;
    }
    let (warning, reason) = match (after.phase, after.step) {
        (Phase::Failed, _) => (true, "RolloutFailed"),
        (Phase::Held, _) => (true, "RolloutHeld"),
        (Phase::RollingBack, _) => (true, "RollingBack"),
        (Phase::Reverted, _) => (false, "RolloutReverted"),
        (Phase::Paused, _) => (false, "RolloutPaused"),
        (Phase::Complete, _) => (false, "RolloutComplete"),
        (_, Step::Pending) => (false, "RolloutStarted"),
        (_, Step::Switching) => (false, "RingSwitching"),
        (_, Step::Staging) => (false, "RingSwitched"),
        (_, Step::Soaking) => (false, "RingStaged"),
        (_, Step::Finishing) => (false, "RolloutFinishing"),
        _ => (false, "Rollout"),
    };
    Some(Note {
        warning,
        reason: reason.into(),
        note: truncate(&after.message.clone().unwrap_or_default()),
        action: "Rollout",
    })
}
