//! The status a pass reports, derived from what the backend holds once its writes are
//! done: versions and phases per host pool from the backend, the rollout from the memory,
//! the conditions from the findings, and the assignments' statuses from the package's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::build;
use super::super::observe::BackendView;
use super::super::planner::{gate, parse_time};
use super::super::validate::{Finding, PoolFacts, Severity};
use super::conditions;
use super::{
    AssignmentStatus, Decision, Holdings, Memory, Requeue, Subject, Write, project, publish, reach,
};
use crate::arm::models::RoleAssignment;
use crate::resources::{
    AppAttachPackageStatus, HostPoolAssignmentStatus, HostPoolRollout, HostPoolStatus, PackageMode,
    PoolPhase, ResolvedPrincipal, RolloutPhase, RolloutStatus, RolloutStep, UserAssignmentStatus,
    VersionRef,
};

/// What a pass found besides the findings: under policy skip, whether the backend
/// differs; after a failed write, how the sync failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcome {
    pub drift: bool,
    pub failure: Option<conditions::SyncFailure>,
}

/// Assembles a decision: the status after the writes, the intent to record before them.
pub(crate) fn decision(
    s: &Subject<'_>,
    intent: Option<Memory>,
    writes: Vec<Write>,
    memory: Memory,
    findings: Vec<Finding>,
    outcome: Outcome,
    requeue: Option<Duration>,
) -> Decision {
    let after = project(s.view, &s.obs.scope, &writes);
    // Who gets the package, from what the backend holds after the writes: a principal who
    // gets it nowhere is a warning of this pass (a settled pass reports it again).
    let reach = reach::reach(s, &after);
    let mut findings = findings;
    findings.retain(|f| f.reason != reach::NOT_REACHED);
    if let Some(r) = &reach {
        let at = findings
            .iter()
            .position(|f| f.severity == Severity::Warning)
            .unwrap_or(findings.len());
        findings.splice(at..at, r.findings.iter().cloned());
    }
    // What the hosts say of the version each pool runs once the writes are done (a first
    // version is placed by this very pass).
    let held = holdings(s, &after, memory.rollout.as_ref());
    let staging = super::staging::warnings(&after, &held);
    let at = findings
        .iter()
        .position(|f| f.severity < Severity::Warning)
        .unwrap_or(findings.len());
    findings.splice(at..at, staging);
    let status = package_status(s, &after, &memory, &findings, &outcome, reach.as_ref());
    let intent_status = intent
        .as_ref()
        .map(|m| intent_status(s, m))
        .filter(|st| Some(st) != s.obs.package.status.as_ref());
    let assignments = assignments(s, &status, &after);
    let events = conditions::events(s.obs, &s.previous, &status, &findings);
    let errors = findings.iter().any(|f| f.severity == Severity::Error);
    Decision {
        intent: intent_status,
        writes,
        status,
        assignments,
        events,
        requeue: match requeue {
            Some(d) if !errors => Requeue::After(d),
            _ => Requeue::Resync,
        },
        settings: *s.settings,
        intent_memory: intent,
        memory,
        findings,
        drift: outcome.drift,
    }
}

/// The status recorded before a pass's writes: what was there, with the rollout's next
/// step and the host pools about to switch.
fn intent_status(s: &Subject<'_>, m: &Memory) -> AppAttachPackageStatus {
    // The generation stays the one the status last described: the conditions are that
    // generation's until the pass reports.
    let mut st = s.previous.clone();
    st.rollout.clone_from(&m.rollout);
    st.target_version = m
        .rollout
        .as_ref()
        .filter(|r| r.phase.is_active())
        .map(|r| r.target.version.clone())
        .or(st.target_version);
    for p in &s.view.pools {
        let remembered = m
            .rows
            .get(&p.name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        match st
            .host_pools
            .iter_mut()
            .find(|r| r.name.eq_ignore_ascii_case(&p.name))
        {
            Some(row) => {
                row.switched_at = remembered.switched_at;
                row.previous_version = remembered.previous_version;
            }
            None => st.host_pools.push(HostPoolRollout {
                name: p.name.clone(),
                ring: p.ring,
                version: None,
                phase: None,
                switched_at: remembered.switched_at,
                previous_version: remembered.previous_version,
                staged_hosts: None,
                failed_hosts: None,
                previous_version_sessions: None,
            }),
        }
    }
    st.retained_images.clone_from(&m.retained);
    st.history.clone_from(&m.history);
    st
}

/// This object's versions in a backend view.
pub(crate) fn holdings(
    s: &Subject<'_>,
    view: &BackendView,
    record: Option<&RolloutStatus>,
) -> Holdings {
    match s.spec.mode {
        PackageMode::AppAttach => {
            let adopt = super::adopts(&s.obs.package).then_some(&s.home);
            Holdings::app_attach(view, &s.key, adopt, record)
        }
        PackageMode::MsixAppAttach => Holdings::msix(view, &build::identity(s.spec).0, record),
    }
}

/// The package's whole status: what `after` holds, the memory, and the conditions.
pub(crate) fn package_status(
    s: &Subject<'_>,
    after: &BackendView,
    m: &Memory,
    findings: &[Finding],
    outcome: &Outcome,
    reach: Option<&reach::Reach>,
) -> AppAttachPackageStatus {
    let record = m.rollout.as_ref();
    let held = holdings(s, after, record);
    let current = held.current(record, &s.home);
    let rows = rows(s, after, &held, m, outcome.drift);
    let generation = s.obs.package.metadata.generation;
    let pools_on: Vec<&HostPoolRollout> = rows
        .iter()
        .filter(|r| r.version.is_some() && r.phase != Some(PoolPhase::Removing))
        .collect();
    let hosts: usize = after
        .pools
        .iter()
        .filter(|p| held.version_on(&p.id).is_some())
        .map(|p| p.hosts.len())
        .sum();
    let principals = match (&current, s.spec.mode) {
        (Some(c), PackageMode::AppAttach) => principals_at(after, &c.backend_name).len(),
        _ => 0,
    };
    let summary = conditions::Summary {
        name: current
            .as_ref()
            .map_or_else(|| s.wanted.backend_name.clone(), |c| c.backend_name.clone()),
        pools: pools_on.len(),
        principals,
        reach: reach.map(|r| (r.reached, r.unknown)),
    };
    let conds = conditions::package(s, m, findings, outcome, &summary);
    AppAttachPackageStatus {
        observed_generation: generation,
        conditions: conds,
        backend_name: current.as_ref().map(|c| c.backend_name.clone()),
        resource_id: current
            .as_ref()
            .filter(|_| s.spec.mode == PackageMode::AppAttach)
            .map(|c| s.obs.scope.package_id(&c.backend_name)),
        current_version: current.as_ref().map(|c| c.version.clone()),
        current_image_path: current.as_ref().map(|c| c.image_path.clone()),
        target_version: record
            .filter(|r| r.phase.is_active() || m.failed_version)
            .map(|r| r.target.version.clone()),
        host_pool_count: Some(pools_on.len() as i32),
        principal_count: Some(principals as i32),
        reached_principal_count: reach.map(|r| r.reached as i32),
        session_host_count: Some(hosts as i32),
        share_handles_per_file: Some(hosts as i32),
        host_pools: rows,
        retained_images: m.retained.clone(),
        rollout: m.rollout.clone(),
        history: m.history.clone(),
    }
}

/// The principals (lower-case object ids) with a Desktop Virtualization User role
/// assignment at a backend package, by principal, with the assignment's name.
fn principals_at(view: &BackendView, name: &str) -> BTreeMap<String, String> {
    view.packages
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case(name))
        .flat_map(|p| &p.roles)
        .filter(|r| r.is_desktop_virtualization_user())
        .map(|r: &RoleAssignment| {
            (
                r.properties.principal_id.to_ascii_lowercase(),
                r.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// A row per assigned host pool that exists, by ring and name: the version the backend
/// gives it, where it stands, and the rollout's gate on it.
fn rows(
    s: &Subject<'_>,
    after: &BackendView,
    held: &Holdings,
    m: &Memory,
    drift: bool,
) -> Vec<HostPoolRollout> {
    let record = m.rollout.as_ref();
    let mut rows: Vec<HostPoolRollout> = after
        .pools
        .iter()
        .map(|p| {
            let key = p.name.to_ascii_lowercase();
            let remembered = m.rows.get(&key).cloned().unwrap_or_default();
            let on = held.version_on(&p.id);
            let mut row = HostPoolRollout {
                name: p.name.clone(),
                ring: p.ring,
                version: on.map(|v| v.version.clone()),
                phase: Some(phase(s, record, on, p.ring, drift)),
                switched_at: remembered.switched_at.clone(),
                previous_version: remembered.previous_version.clone(),
                staged_hosts: None,
                failed_hosts: None,
                previous_version_sessions: m.old_sessions.get(&key).copied().or_else(|| {
                    s.previous
                        .host_pools
                        .iter()
                        .find(|r| r.name.eq_ignore_ascii_case(&p.name))
                        .and_then(|r| r.previous_version_sessions)
                }),
            };
            if let Some(r) = record.filter(|r| r.phase.is_active())
                && on.is_some_and(|v| v.backend_name.eq_ignore_ascii_case(&r.target.backend_name))
            {
                let since = gate_since(r, &remembered, held.since.get(&p.id.to_ascii_lowercase()));
                let hosts: Vec<_> = p.hosts.iter().map(super::holdings::host_obs).collect();
                let g = gate(&hosts, since, &r.target.image_path, &r.previous);
                row.staged_hosts = Some(g.staged.len() as i32);
                row.failed_hosts = Some(g.failed.len() as i32);
            }
            row
        })
        .collect();
    rows.extend(leaving(s, after, m));
    rows.sort_by(|a, b| (a.ring, &a.name).cmp(&(b.ring, &b.name)));
    rows
}

/// Host pools no longer assigned that still hold the package (MSIX app attach, where the
/// status is what remembers them): kept in the status until it is gone from them.
fn leaving<'a>(
    s: &'a Subject<'_>,
    after: &'a BackendView,
    m: &'a Memory,
) -> impl Iterator<Item = HostPoolRollout> + 'a {
    let family = build::identity(s.spec).0;
    after.former.iter().filter_map(move |p| {
        let version = super::holdings::of_family(p, &family)
            .filter_map(|x| x.properties.version.clone())
            .max()?;
        let remembered = m
            .rows
            .get(&p.name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        Some(HostPoolRollout {
            name: p.name.clone(),
            ring: p.ring,
            version: Some(version),
            phase: Some(PoolPhase::Removing),
            switched_at: remembered.switched_at,
            previous_version: remembered.previous_version,
            staged_hosts: None,
            failed_hosts: None,
            previous_version_sessions: None,
        })
    })
}

/// When a pool's hosts count from for the gate of `r`: its switch in this rollout, else
/// what the backend says, else the step's start.
fn gate_since(
    r: &RolloutStatus,
    row: &super::RowMemory,
    backend: Option<&jiff::Timestamp>,
) -> jiff::Timestamp {
    let started = parse_time(r.started_at.as_deref());
    parse_time(row.switched_at.as_deref())
        .filter(|t| started.is_none_or(|s| *t >= s))
        .or(backend.copied())
        .or_else(|| parse_time(r.step_started_at.as_deref()))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Where one host pool stands.
fn phase(
    s: &Subject<'_>,
    record: Option<&RolloutStatus>,
    on: Option<&VersionRef>,
    ring: i32,
    drift: bool,
) -> PoolPhase {
    if drift {
        return PoolPhase::Drifted;
    }
    let Some(on) = on else {
        return PoolPhase::Pending;
    };
    match record {
        Some(r) if r.phase.is_active() => {
            let on_target = on.backend_name.eq_ignore_ascii_case(&r.target.backend_name);
            match (on_target, r.ring) {
                (false, _) => PoolPhase::Pending,
                (true, Some(at)) if ring == at => match r.step {
                    RolloutStep::Soaking => PoolPhase::Soaking,
                    RolloutStep::Switching => PoolPhase::Switching,
                    _ => PoolPhase::Staging,
                },
                (true, _) => PoolPhase::Done,
            }
        }
        // The spec still names the version that failed: every pool went (or stayed) back.
        Some(r)
            if r.phase == RolloutPhase::Failed && r.target.version == s.spec.package.version =>
        {
            PoolPhase::RolledBack
        }
        _ if on.version == s.spec.package.version => PoolPhase::Ready,
        _ => PoolPhase::Pending,
    }
}

/// The statuses of the package's assignments, from the package's: Ready mirrored, the
/// version and phase of each host pool, the role assignment each principal holds.
pub(crate) fn assignments(
    s: &Subject<'_>,
    status: &AppAttachPackageStatus,
    after: &BackendView,
) -> Vec<AssignmentStatus> {
    let published = publish::published_on(&s.key, after);
    let mut out: Vec<AssignmentStatus> = s
        .obs
        .inputs
        .host_pool_assignments
        .iter()
        .map(|a| {
            let previous = a.status.clone().unwrap_or_default();
            let generation = a.metadata.generation;
            let st = HostPoolAssignmentStatus {
                observed_generation: generation,
                conditions: conditions::mirror(s.obs, status, &previous.conditions, generation),
                host_pools: a
                    .spec
                    .host_pools
                    .iter()
                    .map(|h| pool_row(&h.name, status, after, &published))
                    .collect(),
                cached_digest: None,
            };
            AssignmentStatus::HostPools(kube::ResourceExt::name_any(&**a), st)
        })
        .collect();
    let roles = status
        .backend_name
        .as_deref()
        .filter(|_| s.spec.mode == PackageMode::AppAttach)
        .map(|n| principals_at(after, n))
        .unwrap_or_default();
    out.extend(s.obs.inputs.user_assignments.iter().map(|a| {
        let previous = a.status.clone().unwrap_or_default();
        let generation = a.metadata.generation;
        let principals = a
            .spec
            .principals
            .iter()
            .map(|p| ResolvedPrincipal {
                kind: p.kind,
                name: p.name.clone(),
                object_id: p.object_id.clone(),
                role_assignment: p
                    .object_id
                    .as_ref()
                    .and_then(|o| roles.get(&o.to_ascii_lowercase()).cloned()),
            })
            .collect();
        let st = UserAssignmentStatus {
            observed_generation: generation,
            conditions: conditions::mirror(s.obs, status, &previous.conditions, generation),
            principals,
            cached_digest: None,
        };
        AssignmentStatus::Users(kube::ResourceExt::name_any(&**a), st)
    }));
    out
}

/// A HostPoolAssignment's row for one host pool: found or not, and what the package's
/// row says it runs.
fn pool_row(
    name: &str,
    status: &AppAttachPackageStatus,
    after: &BackendView,
    published: &BTreeMap<String, usize>,
) -> HostPoolStatus {
    let pool = after
        .pools
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name));
    let row = status
        .host_pools
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name));
    HostPoolStatus {
        name: name.to_string(),
        resource_id: pool.map(|p| p.id.clone()),
        version: row.and_then(|r| r.version.clone()),
        phase: Some(match (pool, row.and_then(|r| r.phase)) {
            (None, _) => "NotFound".to_string(),
            (Some(_), p) => p.unwrap_or(PoolPhase::Pending).as_str().to_string(),
        }),
        published_applications: pool
            .and_then(|p| published.get(&p.id.to_ascii_lowercase()))
            .map(|n| *n as i32),
    }
}

/// What the backend says about each host pool, for validation.
pub(crate) fn pool_facts(view: &BackendView, mode: PackageMode, _family: &str) -> Vec<PoolFacts> {
    view.pools
        .iter()
        .map(|p| PoolFacts {
            name: p.name.clone(),
            field: p.field.clone(),
            location: p.pool.location.clone().unwrap_or_default(),
            identity_provider: p
                .pool
                .tags
                .as_ref()
                .and_then(|t| t.get("appattach.io/identity-provider").cloned()),
            hosts: p
                .hosts
                .iter()
                .map(|h| {
                    crate::domain::host_os::classify(
                        &view.vm_read(h),
                        h.properties.os_version.as_deref(),
                    )
                })
                .collect(),
            has_other_feature: match mode {
                PackageMode::AppAttach => !p.msix.is_empty(),
                PackageMode::MsixAppAttach => p
                    .pool
                    .properties
                    .app_attach_package_references
                    .iter()
                    .flatten()
                    .next()
                    .is_some(),
            },
        })
        .collect()
}
