//! MSIX app attach, which cannot update a package in place: the package lives under each
//! assigned host pool, and a version change replaces it pool by pool, inside the
//! maintenance window, while batches of at most `maxUnavailableHosts` session hosts are
//! drained. The hosts a step drains are recorded before they are drained; a host drained
//! by someone else is left as it is; nothing is written that the backend already holds.

use jiff::Timestamp;

use super::super::build;
use super::super::observe::PoolView;
use super::super::planner::{self, Action, HostSeat, Plan, PoolStep, Window, same};
use super::app_attach::mark_switches;
use super::holdings::{leaf, of_family};
use super::{Memory, Steps, Subject, Write, history};
use crate::arm::models::{MsixPackage, MsixPackageProperties};
use crate::resources::{RolloutStatus, RolloutStep, VersionRef};

/// The steps of one MSIX app attach pass.
pub(super) fn steps(s: &Subject<'_>, plan: &Plan) -> Steps {
    match plan.action {
        Action::Steady => settle_on(s, &s.wanted),
        Action::FailedVersion => {
            let current = s.held.current(None, &s.wanted.backend_name);
            let mut st = settle_on(s, current.as_ref().unwrap_or(&s.wanted));
            st.memory.failed_version = true;
            st
        }
        Action::Record => {
            let mut memory = Memory::recorded(&s.previous);
            let r = plan.next.clone().expect("a rollout step records a rollout");
            super::history::note_superseded(&mut memory.history, s, &r);
            memory.rollout = Some(r);
            Steps {
                memory,
                ..Steps::default()
            }
        }
        Action::Switch { through } => switch(s, plan, through),
        Action::Finish => finish(s, plan),
        Action::RollBack => roll_back(s, plan),
    }
}

/// The MSIX package body of a version.
pub fn body(s: &Subject<'_>, v: &VersionRef) -> MsixPackage {
    let spec = if same(v, &s.wanted) {
        s.spec.clone()
    } else {
        s.spec_at(v)
    };
    msix_body(&build::build(
        &spec,
        &s.key,
        &s.obs.scope.subscription,
        "",
        &[],
        &[],
    ))
}

/// The MSIX package body of a desired package.
pub fn msix_body(desired: &build::Desired) -> MsixPackage {
    let image = desired.package.properties.image.clone().unwrap_or_default();
    MsixPackage {
        id: None,
        name: None,
        resource_type: None,
        location: None,
        tags: None,
        properties: MsixPackageProperties {
            image_path: image.image_path.clone(),
            package_name: image.package_name.clone(),
            package_family_name: image.package_family_name.clone(),
            display_name: image.display_name.clone(),
            package_relative_path: image.package_relative_path.clone(),
            is_regular_registration: image.is_regular_registration,
            is_active: image.is_active,
            package_dependencies: image.package_dependencies.clone(),
            version: image.version.clone(),
            last_updated: None,
            package_applications: image.package_applications.clone(),
        },
    }
}

fn family(s: &Subject<'_>) -> String {
    build::identity(s.spec).0
}

/// Whether the pool holds this version with this body already.
fn holds(pool: &PoolView, name: &str, body: &MsixPackage) -> bool {
    pool.msix.iter().any(|m| {
        let mut held = m.properties.clone();
        held.last_updated = None;
        leaf(m.name.as_deref().unwrap_or_default()).eq_ignore_ascii_case(name)
            && held == body.properties
    })
}

/// Puts `v` on the pool (unless it holds it), then removes every other version of the
/// package from it: a pool always holds a version.
fn replace(s: &Subject<'_>, pool: &PoolView, v: &VersionRef, body: &MsixPackage) -> Vec<Write> {
    let mut writes = vec![];
    if !holds(pool, &v.backend_name, body) {
        writes.push(Write::PutMsix {
            pool_id: pool.id.clone(),
            full_name: v.backend_name.clone(),
            body: body.clone(),
        });
    }
    let family = family(s);
    for m in of_family(pool, &family) {
        let name = leaf(m.name.as_deref().unwrap_or_default());
        if !name.eq_ignore_ascii_case(&v.backend_name) {
            writes.push(Write::DeleteMsix {
                pool_id: pool.id.clone(),
                full_name: name.to_string(),
            });
        }
    }
    writes
}

/// Every assigned pool on one version, the package gone from pools no longer assigned,
/// and no host left drained by an earlier rollout.
fn settle_on(s: &Subject<'_>, v: &VersionRef) -> Steps {
    let body = body(s, v);
    let mut writes: Vec<Write> = s
        .view
        .pools
        .iter()
        .flat_map(|p| replace(s, p, v, &body))
        .collect();
    let family = family(s);
    for p in &s.view.former {
        writes.extend(of_family(p, &family).map(|m| Write::DeleteMsix {
            pool_id: p.id.clone(),
            full_name: leaf(m.name.as_deref().unwrap_or_default()).to_string(),
        }));
    }
    let mut memory = Memory::recorded(&s.previous);
    if let Some(r) = memory.rollout.as_mut() {
        writes.extend(undrain(s, &r.drained_hosts));
        r.drained_hosts.clear();
    }
    Steps {
        writes,
        memory,
        ..Steps::default()
    }
}

/// Lets these hosts take sessions again, where the backend has them drained.
fn undrain(s: &Subject<'_>, hosts: &[String]) -> Vec<Write> {
    s.view
        .pools
        .iter()
        .chain(&s.view.former)
        .flat_map(|p| &p.hosts)
        .filter(|h| h.properties.allow_new_session == Some(false))
        .filter_map(|h| h.id.clone())
        .filter(|id| hosts.contains(&id.to_ascii_lowercase()))
        .map(|host_id| Write::AllowNewSessions {
            host_id,
            allow: true,
        })
        .collect()
}

/// The ring's pools, a batch step each: outside the window, every drained host is let go
/// and the step waits for the window to open.
fn switch(s: &Subject<'_>, plan: &Plan, through: i32) -> Steps {
    let r = plan.next.clone().expect("a switch records a rollout");
    // An unreadable window was refused by validation before this pass got here.
    let window = s
        .spec
        .rollout
        .maintenance_window
        .as_ref()
        .and_then(|w| planner::window(w, s.now).ok());
    match window {
        Some(Window::Closed(opens)) => closed(s, r, through, opens),
        _ => batches(s, r, through),
    }
}

fn closed(s: &Subject<'_>, mut r: RolloutStatus, through: i32, opens: Timestamp) -> Steps {
    let writes = undrain(s, &r.drained_hosts);
    r.drained_hosts.clear();
    r.cycled_hosts.clear();
    r.message = Some(format!(
        "ring {through}: outside the maintenance window; waiting until it opens at {opens}"
    ));
    let wait = std::time::Duration::try_from(opens.duration_since(s.now)).unwrap_or_default();
    let mut memory = Memory::recorded(&s.previous);
    memory.rollout = Some(r);
    Steps {
        intent: None,
        writes,
        memory,
        requeue: Some(wait.max(s.settings.rollout_poll)),
    }
}

fn seats(pool: &PoolView) -> Vec<HostSeat> {
    pool.hosts
        .iter()
        .map(|h| HostSeat {
            id: h.id.clone().unwrap_or_default().to_ascii_lowercase(),
            allows: h.properties.allow_new_session != Some(false),
            sessions: h.properties.sessions.unwrap_or(0),
        })
        .collect()
}

/// One batch step per pool of the ring. Drains are recorded (intent) before they are
/// made; a replacement records the pool's switch first; undrains come last and leave the
/// record only once done.
fn batches(s: &Subject<'_>, mut r: RolloutStatus, through: i32) -> Steps {
    let max = s.spec.rollout.max_unavailable_hosts.max(1) as usize;
    let target_body = body(s, &r.target);
    let mut intent = Memory::recorded(&s.previous);
    let (mut writes, mut undrains, mut waiting) = (vec![], vec![], vec![]);
    let mut done = true;
    for pool in s.view.pools.iter().filter(|p| p.ring == through) {
        let replaced = only(s, pool, &r.target);
        let (step, left_alone) = planner::batch(
            &seats(pool),
            &r.drained_hosts,
            &r.cycled_hosts,
            replaced,
            max,
        );
        r.cycled_hosts.extend(left_alone);
        match step {
            PoolStep::Drain(hosts) => {
                done = false;
                r.drained_hosts.extend(hosts.iter().cloned());
                waiting.push(format!("{}: drained {}", pool.name, short(&hosts)));
                writes.extend(hosts.into_iter().map(|host_id| Write::AllowNewSessions {
                    host_id,
                    allow: false,
                }));
            }
            PoolStep::Wait { sessions, hosts } => {
                done = false;
                waiting.push(format!(
                    "{}: waiting for {sessions} session(s) to end on {}",
                    pool.name,
                    short(&hosts)
                ));
            }
            PoolStep::Replace { undrain: batch } => {
                done &= batch.is_empty();
                mark_switches(s, &mut intent, &r, true, |p| {
                    p.id.eq_ignore_ascii_case(&pool.id)
                });
                writes.extend(replace(s, pool, &r.target, &target_body));
                if !batch.is_empty() {
                    waiting.push(format!("{}: undrained {}", pool.name, short(&batch)));
                }
                undrains.extend(batch);
            }
            PoolStep::Done => {
                mark_switches(s, &mut intent, &r, true, |p| {
                    p.id.eq_ignore_ascii_case(&pool.id)
                });
            }
        }
    }
    intent.rollout = Some(r.clone());
    writes.extend(undrain(s, &undrains));
    r.cycled_hosts.extend(undrains.iter().cloned());
    r.drained_hosts.retain(|d| !undrains.contains(d));
    let mut memory = intent.clone();
    next_in_ring(s, &mut r, through, done, &waiting, max);
    memory.rollout = Some(r);
    Steps {
        intent: Some(intent),
        writes,
        memory,
        requeue: Some(s.settings.rollout_poll),
    }
}

/// Once every pool of the ring runs the target with its hosts cycled, the ring stages.
fn next_in_ring(
    s: &Subject<'_>,
    r: &mut RolloutStatus,
    through: i32,
    done: bool,
    waiting: &[String],
    max: usize,
) {
    if done {
        r.step = RolloutStep::Staging;
        r.step_started_at = Some(planner::format_time(s.now));
        r.cycled_hosts.clear();
        r.message = Some(format!(
            "ring {through}: every host pool runs {}; waiting for their session hosts to stage it",
            r.target.version
        ));
    } else {
        r.message = Some(format!(
            "ring {through}: replacing {} in batches of at most {max} session host(s): {}",
            r.target.version,
            waiting.join("; ")
        ));
    }
}

/// Whether the pool holds `v` and no other version of the package.
fn only(s: &Subject<'_>, pool: &PoolView, v: &VersionRef) -> bool {
    let family = family(s);
    let mut held = of_family(pool, &family).map(|m| leaf(m.name.as_deref().unwrap_or_default()));
    held.next()
        .is_some_and(|n| n.eq_ignore_ascii_case(&v.backend_name))
        && held.next().is_none()
}

fn short(ids: &[String]) -> String {
    ids.iter()
        .map(|i| leaf(i).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every pool runs the target: anything else of the package left on a pool goes.
fn finish(s: &Subject<'_>, plan: &Plan) -> Steps {
    let (r, intent) = history::ending(s, plan);
    let body = body(s, &r.target);
    let writes = s
        .view
        .pools
        .iter()
        .flat_map(|p| replace(s, p, &r.target, &body))
        .collect();
    let message = format!("every host pool runs {}", r.target.version);
    history::ended(intent, writes, r, |m, r| {
        history::complete(m, s, r, message)
    })
}

/// Every drained host let go, every pool back on the first previous version (put before
/// the target is removed), then the target recorded as failed (or reverted).
fn roll_back(s: &Subject<'_>, plan: &Plan) -> Steps {
    let (mut r, mut intent) = history::ending(s, plan);
    let (stable, back) = history::going_back(s, &r);
    let moving: Vec<&PoolView> = s
        .view
        .pools
        .iter()
        .filter(|p| !only(s, p, &stable))
        .collect();
    mark_switches(s, &mut intent, &back, false, |p| {
        moving.iter().any(|m| m.id.eq_ignore_ascii_case(&p.id))
    });
    let body = body(s, &stable);
    let mut writes = undrain(s, &r.drained_hosts);
    for p in moving {
        writes.extend(replace(s, p, &stable, &body));
    }
    r.drained_hosts.clear();
    history::rolled_back(s, intent, writes, r, &stable)
}

/// The writes that remove the package from every pool that holds it, and let go every
/// host a rollout drained (its deletion).
pub(super) fn remove_all(s: &Subject<'_>) -> Vec<Write> {
    let family = family(s);
    let drained = s
        .previous
        .rollout
        .as_ref()
        .map(|r| r.drained_hosts.clone())
        .unwrap_or_default();
    let mut writes = undrain(s, &drained);
    for p in s.view.pools.iter().chain(&s.view.former) {
        writes.extend(of_family(p, &family).map(|m| Write::DeleteMsix {
            pool_id: p.id.clone(),
            full_name: leaf(m.name.as_deref().unwrap_or_default()).to_string(),
        }));
    }
    writes
}
