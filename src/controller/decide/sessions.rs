//! Users' sessions during and after a rollout: who is told of a switch, which sessions
//! still run an old image (and keep it retained), and which are logged off after the
//! grace period. A message or a log-off cannot be read back from the backend, so each is
//! recorded in the rollout (per host pool) before it is sent: at most once.

use std::collections::{BTreeMap, BTreeSet};

use super::super::planner::{self, parse_duration, parse_time};
use super::{Steps, Subject, Write};
use crate::arm::models::{PrincipalType, SendMessage, UserSession};
use crate::resources::{PackageMode, RolloutStatus};

/// Whether a session may run this package: MSIX app attach gives every user of the pool
/// the package; app attach gives it to the assigned users, directly or through a group.
/// Without a directory, any member of an assigned group may be the session's user, so the
/// count is an upper bound.
fn may_run(s: &Subject<'_>, session: &UserSession) -> bool {
    if s.spec.mode == PackageMode::MsixAppAttach {
        return true;
    }
    let principals: BTreeSet<String> = s.principals.iter().map(|p| p.object_id.clone()).collect();
    let Some(user) = session.properties.object_id.as_deref() else {
        return true;
    };
    match &s.view.directory {
        Some(d) => d.is_any_of(user, &principals),
        None => {
            principals.contains(&user.to_ascii_lowercase())
                || s.principals.iter().any(|p| p.kind == PrincipalType::Group)
        }
    }
}

fn started_before(s: &UserSession, t: jiff::Timestamp) -> bool {
    parse_time(s.properties.create_time.as_deref()).is_some_and(|c| c < t)
}

/// The message for sessions on a pool that switches to `r`'s target.
fn message(s: &Subject<'_>, r: &RolloutStatus) -> SendMessage {
    let display = s
        .spec
        .package
        .display_name
        .clone()
        .unwrap_or_else(|| s.spec.package.name.clone());
    let from = r
        .previous
        .first()
        .map(|v| v.version.clone())
        .unwrap_or_default();
    SendMessage {
        message_title: Some(format!("{display} is being updated")),
        message_body: Some(format!(
            "{display} changes from version {from} to {} at your next sign-in. Your current session keeps version {from}; sign out and back in when it suits you.",
            r.target.version
        )),
    }
}

/// `spec.rollout.notifyUsers`: the messages to the sessions on the pools of ring
/// `through`, each pool once per rollout, recorded in `r` (which the intent writes before
/// they are sent).
pub(super) fn notify(s: &Subject<'_>, r: &mut RolloutStatus, through: i32) -> Vec<Write> {
    if !s.spec.rollout.notify_users || !s.view.sessions_read {
        return vec![];
    }
    let text = message(s, r);
    let mut writes = vec![];
    for p in s.pools.iter().filter(|p| p.ring == through) {
        let pool = p.name.to_ascii_lowercase();
        if r.notified_pools.contains(&pool) {
            continue;
        }
        r.notified_pools.push(pool);
        for session in sessions_of(s, &p.id) {
            if let Some(id) = session.id.clone().filter(|_| may_run(s, session)) {
                r.notified_sessions += 1;
                writes.push(Write::SendMessage {
                    session_id: id,
                    message: text.clone(),
                });
            }
        }
    }
    writes
}

fn sessions_of<'a>(s: &'a Subject<'_>, pool_id: &str) -> &'a [UserSession] {
    s.view
        .pools
        .iter()
        .find(|p| p.id.eq_ignore_ascii_case(pool_id))
        .map_or(&[], |p| p.sessions.as_slice())
}

/// Sessions: how many still run an old version per host pool, the grace period's
/// log-offs (recorded in the intent first), and the retained images' counts.
pub(super) fn pass(s: &Subject<'_>, steps: &mut Steps) {
    if !s.view.sessions_read {
        return;
    }
    let grace = s
        .spec
        .rollout
        .session_grace_period
        .as_deref()
        .and_then(parse_duration)
        .and_then(|g| jiff::SignedDuration::try_from(g).ok());
    let mut old_by_version: BTreeMap<String, i32> = BTreeMap::new();
    let mut logoffs: Vec<(String, Vec<String>)> = vec![];
    for p in &s.pools {
        let key = p.name.to_ascii_lowercase();
        let Some(row) = steps.memory.rows.get(&key) else {
            continue;
        };
        let Some(switched) = parse_time(row.switched_at.as_deref()) else {
            continue;
        };
        let old: Vec<&UserSession> = sessions_of(s, &p.id)
            .iter()
            .filter(|x| started_before(x, switched) && may_run(s, x))
            .collect();
        let due = grace.is_some_and(|g| s.now.duration_since(switched) >= g);
        let record = steps.memory.rollout.as_ref();
        if due && !old.is_empty() && record.is_some_and(|r| !r.logged_off_pools.contains(&key)) {
            logoffs.push((
                key.clone(),
                old.iter().filter_map(|x| x.id.clone()).collect(),
            ));
            continue;
        }
        let n = old.len() as i32;
        steps.memory.old_sessions.insert(key, n);
        if let Some(v) = &row.previous_version {
            *old_by_version.entry(v.clone()).or_default() += n;
        }
    }
    log_off(steps, logoffs);
    for image in steps.memory.retained.iter_mut() {
        image.sessions = old_by_version.get(&image.version).copied().unwrap_or(0);
    }
    steps.memory.retained.retain(|i| i.sessions > 0);
    let rolling = steps
        .memory
        .rollout
        .as_ref()
        .is_some_and(planner::is_active);
    if !steps.memory.retained.is_empty() || (rolling && grace.is_some()) {
        let poll = s.settings.rollout_poll;
        steps.requeue = Some(steps.requeue.map_or(poll, |d| d.min(poll)));
    }
}

/// Records the log-offs in the rollout (in the intent too, which is written before them)
/// and adds them to the writes.
fn log_off(steps: &mut Steps, logoffs: Vec<(String, Vec<String>)>) {
    if logoffs.is_empty() {
        return;
    }
    let note = |r: &mut RolloutStatus| {
        for (pool, ids) in &logoffs {
            r.logged_off_pools.push(pool.clone());
            r.logged_off_sessions += ids.len() as i32;
        }
    };
    if let Some(r) = steps.memory.rollout.as_mut() {
        note(r);
    }
    let intent = match steps.intent.take() {
        Some(mut intent) => {
            if let Some(r) = intent.rollout.as_mut() {
                note(r);
            }
            intent
        }
        // No step of its own to record: the memory after is the memory before.
        None => steps.memory.clone(),
    };
    steps.intent = Some(intent);
    for (pool, ids) in logoffs {
        steps.memory.old_sessions.insert(pool, 0);
        steps.writes.extend(
            ids.into_iter()
                .map(|session_id| Write::LogOff { session_id }),
        );
    }
}

/// Sessions on the package's host pools (assigned, and formerly assigned) that may run it:
/// what a deletion says of its image.
pub(super) fn in_use(s: &Subject<'_>) -> usize {
    s.view
        .pools
        .iter()
        .chain(&s.view.former)
        .flat_map(|p| &p.sessions)
        .filter(|x| may_run(s, x))
        .count()
}
