//! How a rollout ends in the memory: the history, the images retained while sessions may
//! use them, and the record's last words.

use super::super::planner::{Plan, format_time, same};
use super::{HISTORY, Memory, Steps, Subject, Write};
use crate::resources::{
    RetainedImage, RolloutPhase, RolloutRecord, RolloutResult, RolloutStatus, RolloutStep,
    VersionRef,
};

/// The start of a step that ends a rollout: its record, and the memory to record first.
pub(crate) fn ending(s: &Subject<'_>, plan: &Plan) -> (RolloutStatus, Memory) {
    let r = plan
        .next
        .clone()
        .expect("a step that ends a rollout records it");
    let mut intent = Memory::recorded(&s.previous);
    intent.rollout = Some(r.clone());
    (r, intent)
}

/// The version a rollback goes back to (the first previous one), and the rollout as a
/// move toward it (for recording which pools switch).
pub(crate) fn going_back(s: &Subject<'_>, r: &RolloutStatus) -> (VersionRef, RolloutStatus) {
    let stable = r
        .previous
        .first()
        .cloned()
        .unwrap_or_else(|| s.wanted.clone());
    let back = RolloutStatus {
        target: stable.clone(),
        ..r.clone()
    };
    (stable, back)
}

/// A step that records `intent` first, writes `writes`, and then `ends` the rollout.
pub(crate) fn ended(
    intent: Memory,
    writes: Vec<Write>,
    mut r: RolloutStatus,
    ends: impl FnOnce(&mut Memory, &mut RolloutStatus),
) -> Steps {
    let mut memory = intent.clone();
    ends(&mut memory, &mut r);
    memory.rollout = Some(r);
    Steps {
        intent: Some(intent),
        writes,
        memory,
        requeue: None,
    }
}

/// Ends a rollback to `stable`, as failed or (when the spec went back to it) reverted.
pub(crate) fn rolled_back(
    s: &Subject<'_>,
    intent: Memory,
    writes: Vec<Write>,
    r: RolloutStatus,
    stable: &VersionRef,
) -> Steps {
    let reverted = same(stable, &s.wanted);
    ended(intent, writes, r, |m, r| {
        end_rollback(m, s, r, stable, reverted)
    })
}

/// Ends a rollout that reached every host pool: the previous images are retained while
/// sessions may use them, the history records it, and the target is what runs.
pub(crate) fn complete(m: &mut Memory, s: &Subject<'_>, r: &mut RolloutStatus, message: String) {
    let at = format_time(s.now);
    for p in &r.previous {
        retain(&mut m.retained, p, &at);
    }
    push(&mut m.history, s, r, RolloutResult::Complete, &at, None);
    r.phase = RolloutPhase::Complete;
    r.step = RolloutStep::Done;
    r.message = Some(message);
}

/// Ends a rollback: every host pool runs `stable` again; the target's image is retained
/// while sessions may use it, and the target is recorded as failed (not tried again until
/// the spec changes) or, when the spec itself went back, as reverted.
pub(crate) fn end_rollback(
    m: &mut Memory,
    s: &Subject<'_>,
    r: &mut RolloutStatus,
    stable: &VersionRef,
    reverted: bool,
) {
    let at = format_time(s.now);
    retain(&mut m.retained, &r.target, &at);
    let why = r.message.clone();
    let result = if reverted {
        RolloutResult::Reverted
    } else {
        RolloutResult::Failed
    };
    push(&mut m.history, s, r, result, &at, why.as_deref());
    if reverted {
        r.phase = RolloutPhase::Reverted;
        r.message = Some(format!(
            "the spec went back to {}: every host pool runs it again; {} was removed from the backend",
            stable.version, r.target.version
        ));
    } else {
        r.phase = RolloutPhase::Failed;
        r.failed_generation = s.obs.package.metadata.generation;
        r.message = Some(format!(
            "rolled back to {}: {}. {} is not tried again until the spec changes",
            stable.version,
            why.unwrap_or_default(),
            r.target.version
        ));
    }
    r.step = RolloutStep::Done;
    r.cycled_hosts.clear();
}

/// Records, in the history, a running rollout that a newer spec replaced.
pub(crate) fn note_superseded(
    history: &mut Vec<RolloutRecord>,
    s: &Subject<'_>,
    after: &RolloutStatus,
) {
    if let Some(b) = s.previous.rollout.as_ref()
        && b.phase.is_active()
        && b.revision != after.revision
    {
        let message = format!("superseded by {}", after.target.version);
        let at = format_time(s.now);
        push(
            history,
            s,
            b,
            RolloutResult::Superseded,
            &at,
            Some(&message),
        );
    }
}

/// Lists an image no host pool runs any more, while sessions may still use it.
fn retain(retained: &mut Vec<RetainedImage>, v: &VersionRef, at: &str) {
    if !retained
        .iter()
        .any(|i| i.path.eq_ignore_ascii_case(&v.image_path))
    {
        retained.push(RetainedImage {
            path: v.image_path.clone(),
            version: v.version.clone(),
            sessions: 0,
            since: Some(at.to_string()),
        });
    }
}

fn push(
    history: &mut Vec<RolloutRecord>,
    s: &Subject<'_>,
    r: &RolloutStatus,
    result: RolloutResult,
    at: &str,
    message: Option<&str>,
) {
    if history.first().is_some_and(|h| h.revision == r.revision) {
        return;
    }
    let same_spec = s.spec.package.version == r.target.version;
    history.insert(
        0,
        RolloutRecord {
            revision: r.revision,
            version: r.target.version.clone(),
            image_path: r.target.image_path.clone(),
            relative_path: same_spec
                .then(|| s.spec.package.relative_path.clone())
                .flatten(),
            full_name: same_spec
                .then(|| s.spec.package.full_name.clone())
                .flatten(),
            from_version: r.previous.first().map(|p| p.version.clone()),
            from_image_path: r.previous.first().map(|p| p.image_path.clone()),
            result,
            started_at: r.started_at.clone(),
            finished_at: Some(at.into()),
            message: message.map(String::from),
        },
    );
    history.truncate(HISTORY);
}
