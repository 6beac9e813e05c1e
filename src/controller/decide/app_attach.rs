//! App attach: each version is its own backend package; host pools move between them ring
//! by ring. Every write is the difference between what the step wants and what the
//! backend holds, so a step taken again after a restart writes nothing twice.

use std::collections::BTreeMap;

use super::super::build;
use super::super::planner::{self, Action, Plan, same};
use super::{Memory, Steps, Subject, Write, history, sessions};
use crate::arm::models::AppAttachPackage as ArmPackage;
use crate::resources::{RolloutStatus, RolloutStep, VersionRef};

/// The steps of one app attach pass.
pub(super) fn steps(s: &Subject<'_>, plan: &Plan) -> Steps {
    match plan.action {
        Action::Steady => settle_on(s, &s.wanted, Body::Spec),
        Action::FailedVersion => {
            let current = s
                .held
                .current(None, &s.home)
                .unwrap_or_else(|| s.wanted.clone());
            let mut st = settle_on(s, &current, Body::Kept);
            st.memory.failed_version = true;
            st
        }
        Action::Record => record(s, plan),
        Action::Switch { through } => switch(s, plan, through),
        Action::Finish => finish(s, plan),
        Action::RollBack => roll_back(s, plan),
    }
}

/// Where a version's body comes from.
#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// Built from the spec.
    Spec,
    /// The backend's, with only its host pools and owner changed (a previous version).
    Kept,
}

/// One version's backend package as a step wants it.
struct Want {
    version: VersionRef,
    body: Body,
    /// Made even with no host pool (the one version every host pool runs).
    keep_empty: bool,
}

/// Every host pool on one version (made even without host pools), and every other version
/// removed once none needs it: the steady state, or a failed version's hold.
fn settle_on(s: &Subject<'_>, v: &VersionRef, body: Body) -> Steps {
    let map = all_on(s, &v.backend_name);
    let mut writes = arrange(
        s,
        &map,
        vec![Want {
            version: v.clone(),
            body,
            keep_empty: true,
        }],
    );
    for other in s.held.versions.iter().filter(|o| !same_name(o, v)) {
        writes.extend(delete(s, &other.backend_name));
    }
    Steps {
        writes,
        memory: Memory::recorded(&s.previous),
        ..Steps::default()
    }
}

fn same_name(a: &VersionRef, b: &VersionRef) -> bool {
    a.backend_name.eq_ignore_ascii_case(&b.backend_name)
}

fn all_on(s: &Subject<'_>, name: &str) -> BTreeMap<String, String> {
    s.pools
        .iter()
        .map(|p| (p.id.to_ascii_lowercase(), name.to_string()))
        .collect()
}

/// The versions of a rollout, as a step wants them: previous versions kept as the
/// backend has them, the target built from the spec.
fn rollout_wants(r: &RolloutStatus) -> Vec<Want> {
    let mut wants: Vec<Want> = r
        .previous
        .iter()
        .map(|p| Want {
            version: p.clone(),
            body: Body::Kept,
            keep_empty: false,
        })
        .collect();
    wants.push(Want {
        version: r.target.clone(),
        body: Body::Spec,
        keep_empty: false,
    });
    wants
}

/// A rollout step with no switch: host pools stay where they are (a pool assigned
/// meanwhile joins the previous version, or the target once its ring switched), and
/// every version keeps the assigned principals.
fn record(s: &Subject<'_>, plan: &Plan) -> Steps {
    let r = plan.next.clone().expect("a rollout step records a rollout");
    let mut memory = Memory::recorded(&s.previous);
    super::history::note_superseded(&mut memory.history, s, &r);
    let through = planner::switched_through(&r, &planner::rings(&s.pools));
    let map = planner::mapping(&s.pools, &r, through);
    let writes = arrange(s, &map, rollout_wants(&r));
    memory.rollout = Some(r);
    Steps {
        writes,
        memory,
        ..Steps::default()
    }
}

/// Switches the host pools of rings up to `through` to the target: recorded first (with
/// when each pool switches, and the sessions messaged), then the writes, then `Staging`.
fn switch(s: &Subject<'_>, plan: &Plan, through: i32) -> Steps {
    let mut r = plan.next.clone().expect("a switch records a rollout");
    let mut intent = Memory::recorded(&s.previous);
    super::history::note_superseded(&mut intent.history, s, &r);
    mark_switches(s, &mut intent, &r, true, |p| p.ring <= through);
    let map = planner::mapping(&s.pools, &r, Some(through));
    let mut writes = arrange(s, &map, rollout_wants(&r));
    writes.extend(sessions::notify(s, &mut r, through));
    intent.rollout = Some(r.clone());
    let mut memory = intent.clone();
    r.step = RolloutStep::Staging;
    r.message = Some(format!(
        "ring {through}: switched {} host pool(s) to {}; waiting for their session hosts to stage it",
        s.pools.iter().filter(|p| p.ring == through).count(),
        r.target.version
    ));
    memory.rollout = Some(r);
    Steps {
        intent: Some(intent),
        writes,
        memory,
        requeue: Some(s.settings.rollout_poll),
    }
}

/// Records, for each pool that `moves` and does not run the target yet, that it switches
/// now and from which version. A pool found on the target with no switch recorded (a
/// status lost, or a pass killed before it recorded one) switched when the backend says,
/// or now, when `found` asks for it.
pub(super) fn mark_switches(
    s: &Subject<'_>,
    memory: &mut Memory,
    r: &RolloutStatus,
    found: bool,
    moves: impl Fn(&planner::PoolObs) -> bool,
) {
    let at = planner::format_time(s.now);
    for p in s.pools.iter().filter(|p| moves(p)) {
        if p.on
            .as_deref()
            .is_some_and(|on| on.eq_ignore_ascii_case(&r.target.backend_name))
        {
            if found && p.switched_at.is_none() {
                let row = memory.rows.entry(p.name.to_ascii_lowercase()).or_default();
                row.switched_at = Some(planner::format_time(p.on_since.unwrap_or(s.now)));
            }
            continue;
        }
        let from =
            p.on.as_deref()
                .and_then(|on| s.held.version(on))
                .map(|v| v.version.clone())
                .or_else(|| r.previous.first().map(|v| v.version.clone()));
        let row = memory.rows.entry(p.name.to_ascii_lowercase()).or_default();
        row.switched_at = Some(at.clone());
        row.previous_version = from;
    }
}

/// Every pool runs the target: the previous versions go; the target becomes current.
fn finish(s: &Subject<'_>, plan: &Plan) -> Steps {
    let (r, intent) = history::ending(s, plan);
    let map = all_on(s, &r.target.backend_name);
    let target = Want {
        version: r.target.clone(),
        body: Body::Spec,
        keep_empty: true,
    };
    let mut writes = arrange(s, &map, vec![target]);
    for p in r.previous.iter().filter(|p| !same_name(p, &r.target)) {
        writes.extend(delete(s, &p.backend_name));
    }
    let removed = r
        .previous
        .iter()
        .map(|p| format!("{} ({})", p.version, p.backend_name))
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "every host pool runs {}; removed {removed} from the backend",
        r.target.version
    );
    history::ended(intent, writes, r, |m, r| {
        history::complete(m, s, r, message)
    })
}

/// Every pool back on the first previous version, added before the others are removed;
/// then the target is recorded as failed (or, when the spec went back, reverted).
fn roll_back(s: &Subject<'_>, plan: &Plan) -> Steps {
    let (r, mut intent) = history::ending(s, plan);
    let (stable, back) = history::going_back(s, &r);
    mark_switches(s, &mut intent, &back, false, |_| true);
    let want = Want {
        version: stable.clone(),
        body: if same(&stable, &s.wanted) {
            Body::Spec
        } else {
            Body::Kept
        },
        keep_empty: true,
    };
    let mut writes = arrange(s, &all_on(s, &stable.backend_name), vec![want]);
    for v in std::iter::once(&r.target).chain(&r.previous) {
        if !same_name(v, &stable) {
            writes.extend(delete(s, &v.backend_name));
        }
    }
    history::rolled_back(s, intent, writes, r, &stable)
}

/// The writes that give each wanted version the host pools `map` gives it, and the
/// assigned principals: versions that gain host pools first, so a pool always runs one.
fn arrange(s: &Subject<'_>, map: &BTreeMap<String, String>, wants: Vec<Want>) -> Vec<Write> {
    let mut planned: Vec<(bool, Write)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for want in wants {
        if !seen.insert(want.version.backend_name.to_ascii_lowercase()) {
            continue;
        }
        let refs: Vec<String> = s
            .pools
            .iter()
            .filter(|p| {
                map.get(&p.id.to_ascii_lowercase())
                    .is_some_and(|n| n.eq_ignore_ascii_case(&want.version.backend_name))
            })
            .map(|p| p.id.clone())
            .collect();
        planned.extend(one_version(s, &want, refs));
    }
    // The version a host pool moves to is added before the one it leaves is removed: in
    // between, its hosts stage both, so a health check taken then still speaks of the new
    // image (removing first would leave a moment with neither). Every write that adds
    // comes first, in order; then every write that takes away.
    planned.sort_by_key(|(adds, _)| !*adds);
    planned.into_iter().map(|(_, w)| w).collect()
}

/// The writes of one version, each marked whether it adds (and goes before every write
/// that takes away): its package (when it differs), its new role assignments, then the
/// removal of roles no one is assigned any more. A package that gains host pools and
/// loses others in one pass is written twice: first with both (it gains, and keeps the
/// ones it loses until the versions they move to hold them), then as wanted (found by
/// the generated sequences, seed 31614: written once, as one that gains, it went before
/// the new version and left a pool without any).
fn one_version(s: &Subject<'_>, want: &Want, refs: Vec<String>) -> Vec<(bool, Write)> {
    let name = &want.version.backend_name;
    let held = s
        .view
        .packages
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name) && s.held.version(name).is_some());
    if held.is_none() && refs.is_empty() && !want.keep_empty {
        return vec![]; // not needed yet
    }
    let id = s.obs.scope.package_id(name);
    let desired = |spec: &crate::resources::AppAttachPackageSpec| {
        build::build(
            spec,
            &s.key,
            &s.obs.scope.subscription,
            &id,
            &refs,
            &s.principals,
        )
    };
    let body: ArmPackage = match (&want.body, held) {
        (Body::Kept, Some(h)) => kept(&h.package, &s.key, &refs, &desired(s.spec).package),
        (Body::Kept, None) => {
            let at = s.spec_at(&want.version);
            desired(&at).package
        }
        (Body::Spec, _) => desired(s.spec).package,
    };
    let roles = desired(s.spec).roles;
    let held_refs = held
        .map(|h| {
            h.package
                .properties
                .host_pool_references
                .clone()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let has = |list: &[String], r: &String| list.iter().any(|h| h.eq_ignore_ascii_case(r));
    let gains: Vec<&String> = refs.iter().filter(|r| !has(&held_refs, r)).collect();
    let loses = held_refs.iter().any(|h| !has(&refs, h));
    let mut writes = vec![];
    if !gains.is_empty() && loses {
        let mut both = body.clone();
        both.properties.host_pool_references = Some(
            held_refs
                .iter()
                .cloned()
                .chain(gains.into_iter().cloned())
                .collect(),
        );
        writes.push((
            true,
            Write::PutPackage {
                name: name.clone(),
                body: both,
            },
        ));
    }
    if held.is_none_or(|h| build::package_differs(&body, &h.package)) {
        writes.push((
            !loses,
            Write::PutPackage {
                name: name.clone(),
                body,
            },
        ));
    }
    let held_roles = held.map(|h| h.roles.clone()).unwrap_or_default();
    let (create, delete) = build::role_changes(&roles, &held_roles);
    // The package first, then new role assignments, then removals, so nobody who stays
    // entitled loses the app on the way.
    for n in create {
        writes.push((
            true,
            Write::PutRole {
                scope: id.clone(),
                body: roles[&n].clone(),
                name: n,
            },
        ));
    }
    writes.extend(
        delete
            .into_iter()
            .map(|id| (false, Write::DeleteRole { id })),
    );
    writes
}

/// A version kept as the backend has it (its image, identity and certificate are that
/// version's), with its host pools and owner, and what the spec says of every version:
/// state, registration and the health-check policy. Drift of those is corrected on a kept
/// version too.
fn kept(held: &ArmPackage, key: &str, refs: &[String], now: &ArmPackage) -> ArmPackage {
    let mut body = held.clone();
    body.properties.fail_health_check_on_staging_failure =
        now.properties.fail_health_check_on_staging_failure;
    if let (Some(i), Some(n)) = (
        body.properties.image.as_mut(),
        now.properties.image.as_ref(),
    ) {
        i.is_active = n.is_active;
        i.is_regular_registration = n.is_regular_registration;
    }
    body.id = None;
    body.name = None;
    body.resource_type = None;
    body.properties.provisioning_state = None;
    if let Some(i) = body.properties.image.as_mut() {
        i.last_updated = None;
    }
    body.properties.host_pool_references = Some(refs.to_vec());
    body.tags
        .get_or_insert_default()
        .insert(build::OWNER_TAG.to_string(), key.to_string());
    body
}

/// Removes one version's backend package, its role assignments first, if it is ours.
fn delete(s: &Subject<'_>, name: &str) -> Vec<Write> {
    let Some(held) = s
        .view
        .packages
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name) && s.held.version(name).is_some())
    else {
        return vec![];
    };
    let mut writes: Vec<Write> = held
        .roles
        .iter()
        .filter_map(|r| r.id.clone())
        .map(|id| Write::DeleteRole { id })
        .collect();
    writes.push(Write::DeletePackage {
        name: held.name.clone(),
    });
    writes
}

/// The writes that remove every version this object holds (its deletion).
pub(super) fn remove_all(s: &Subject<'_>) -> Vec<Write> {
    s.held
        .versions
        .iter()
        .flat_map(|v| delete(s, &v.backend_name))
        .collect()
}
