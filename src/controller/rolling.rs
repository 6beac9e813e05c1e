//! Executes the rollout planner's steps for app attach packages: each version is its own
//! backend package ("slot"), host pools move between slots ring by ring, and every write
//! is the difference between what the step wants and what the backend holds.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;

use super::build::{self, OWNER_TAG};
use super::reconcile::Observed;
use super::rollout::{self, Action, HostObs, PoolObs, phase, step};
use super::{Context, Error, Policy, status};
use crate::arm::models::{AppAttachPackage, SendMessage, SessionHost, UserSession};
use crate::backend::{Backend, BackendError};
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage as Package, AppAttachPackageStatus, HostPoolRollout, RetainedImage,
    RolloutRecord, RolloutStatus, VersionRef,
};

/// What a pass decided, for the status it writes.
#[derive(Debug, Clone, Default)]
pub(super) struct Outcome {
    /// The rollout to record.
    pub rollout: Option<RolloutStatus>,
    /// The version every host pool runs when no rollout runs (the stable one).
    pub current: Option<VersionRef>,
    /// Per host pool.
    pub rows: Vec<HostPoolRollout>,
    /// Old images still used by sessions.
    pub retained: Vec<RetainedImage>,
    /// Rollout history, newest first.
    pub history: Vec<RolloutRecord>,
    /// When to look again.
    pub requeue: Option<Duration>,
    /// Policy skip: the backend differs.
    pub drift: bool,
    /// The spec names a version that failed.
    pub failed_version: bool,
    /// The status this pass already wrote (a step's intent), if any.
    pub written: Option<AppAttachPackageStatus>,
}

/// How many rollouts the history keeps.
pub(super) const HISTORY: usize = 10;

pub(super) fn version_time(s: &Option<String>) -> Option<Timestamp> {
    rollout::parse_time(s.as_deref())
}

/// The app attach health check of a session host, as the gate reads it.
pub(super) fn host_obs(h: &SessionHost) -> HostObs {
    let check = h
        .properties
        .session_host_health_check_results
        .iter()
        .flatten()
        .find(|c| c.health_check_name.as_deref() == Some("AppAttachHealthCheck"));
    let details = check.and_then(|c| c.additional_failure_details.as_ref());
    HostObs {
        name: h
            .name
            .as_deref()
            .and_then(|n| n.rsplit('/').next())
            .unwrap_or_default()
            .to_string(),
        status: h.properties.status.clone(),
        checked_at: details.and_then(|d| version_time(&d.last_health_check_date_time)),
        succeeded: check.and_then(|c| c.health_check_result.as_deref())
            == Some("HealthCheckSucceeded"),
        message: details.and_then(|d| d.message.clone()),
    }
}

/// One version's backend package, as this pass sees it.
struct Slot {
    name: String,
    id: String,
    /// The body the spec builds (the wanted version), or `None` to keep the observed body.
    desired: Option<build::Desired>,
    observed: Option<AppAttachPackage>,
    /// Whether it is the one version every host pool runs: created even while no host
    /// pool is assigned (a rollout's target waits for its first ring instead).
    stable: bool,
}

/// Runs one pass for an app attach package.
#[allow(clippy::too_many_arguments)]
pub(super) async fn app_attach<B: Backend>(
    ctx: &Context<B>,
    pkg: &Package,
    api: &Api<Package>,
    obs: &Observed,
    previous: &AppAttachPackageStatus,
    home: &str,
    home_observed: Option<AppAttachPackage>,
    policy: Policy,
) -> Result<Outcome, Error> {
    let ns = pkg.namespace().unwrap_or_default();
    let name = pkg.name_any();
    let key = format!("{ns}/{name}");
    let spec = &pkg.spec;
    let now = Timestamp::now();
    let recorded = previous.rollout.as_ref();
    let active = recorded.filter(|r| rollout::is_active(r));

    let current = previous.current_version.as_ref().map(|v| VersionRef {
        version: v.clone(),
        image_path: previous
            .current_image_path
            .clone()
            .or_else(|| {
                home_observed
                    .as_ref()
                    .and_then(|o| o.properties.image.as_ref())
                    .and_then(|i| i.image_path.clone())
            })
            .unwrap_or_else(|| spec.image.path.clone()),
        backend_name: home.to_string(),
    });
    let wanted_backend = match (&current, active) {
        (Some(c), _) if c.version == spec.package.version => home.to_string(),
        (_, Some(r)) => std::iter::once(&r.target)
            .chain(&r.previous)
            .find(|v| v.version == spec.package.version)
            .map(|v| v.backend_name.clone())
            .unwrap_or_else(|| naming::versioned_backend_name(&ns, &name, &spec.package.version)),
        (Some(_), None) => naming::versioned_backend_name(&ns, &name, &spec.package.version),
        (None, _) => home.to_string(),
    };
    let wanted = VersionRef {
        version: spec.package.version.clone(),
        image_path: spec.image.path.clone(),
        backend_name: wanted_backend.clone(),
    };

    // Read every slot this pass may touch.
    let mut names: Vec<String> = vec![home.to_string(), wanted_backend.clone()];
    if let Some(r) = active {
        names.push(r.target.backend_name.clone());
        names.extend(r.previous.iter().map(|p| p.backend_name.clone()));
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let mut observed: BTreeMap<String, Option<AppAttachPackage>> = BTreeMap::new();
    for n in &names {
        let o = if n == home {
            home_observed.clone()
        } else {
            ctx.backend.get_package(n).await?
        };
        // Never touch a package another object owns.
        let o = o.filter(|o| {
            o.tags
                .as_ref()
                .and_then(|t| t.get(OWNER_TAG))
                .is_none_or(|owner| owner == &key)
        });
        observed.insert(n.clone(), o);
    }

    let rows_by_name: BTreeMap<String, &HostPoolRollout> = previous
        .host_pools
        .iter()
        .map(|r| (r.name.to_ascii_lowercase(), r))
        .collect();
    let pools: Vec<PoolObs> = obs
        .pool_ids
        .iter()
        .zip(&obs.hosts)
        .map(|((pname, id, ring), hosts)| PoolObs {
            name: pname.clone(),
            id: id.clone(),
            ring: *ring,
            on: observed
                .iter()
                .find(|(_, o)| {
                    o.as_ref().is_some_and(|o| {
                        o.properties
                            .host_pool_references
                            .iter()
                            .flatten()
                            .any(|r| r.eq_ignore_ascii_case(id))
                    })
                })
                .map(|(n, _)| n.clone()),
            switched_at: rows_by_name
                .get(&pname.to_ascii_lowercase())
                .and_then(|r| version_time(&r.switched_at)),
            hosts: hosts.iter().map(host_obs).collect(),
        })
        .collect();

    let plan = plan_pass(ctx, pkg, &wanted, &current, recorded, &pools, now);

    let slot = |n: &str, desired: bool, refs_hint: &[String]| -> Slot {
        let id = ctx.backend.package_id(n);
        Slot {
            name: n.to_string(),
            desired: desired.then(|| {
                build::build(
                    spec,
                    &key,
                    ctx.backend.subscription(),
                    &id,
                    refs_hint,
                    &obs.principals,
                )
            }),
            id,
            observed: observed.get(n).cloned().flatten(),
            stable: n == home,
        }
    };

    let mut out = Outcome {
        rollout: recorded.cloned(),
        current: current.clone(),
        retained: previous.retained_images.clone(),
        history: previous.history.clone(),
        requeue: plan.requeue,
        ..Default::default()
    };
    let mut rows = rows_from(&pools, previous);
    let all_ids: Vec<String> = pools.iter().map(|p| p.id.clone()).collect();
    let version_of = |backend: &str, r: Option<&RolloutStatus>| -> Option<String> {
        r.into_iter()
            .flat_map(|r| std::iter::once(&r.target).chain(&r.previous))
            .chain(current.iter())
            .find(|v| v.backend_name == backend)
            .map(|v| v.version.clone())
    };

    match plan.action {
        Action::Steady | Action::FailedVersion => {
            out.failed_version = plan.action == Action::FailedVersion;
            let home_slot = slot(home, !out.failed_version, &all_ids);
            let map = all_ids
                .iter()
                .map(|id| (id.to_ascii_lowercase(), home.to_string()))
                .collect();
            out.drift = write_slots(
                ctx,
                spec,
                &key,
                &obs.principals,
                vec![home_slot],
                &map,
                policy,
            )
            .await?;
            if !out.failed_version {
                out.current = Some(VersionRef {
                    version: spec.package.version.clone(),
                    image_path: spec.image.path.clone(),
                    backend_name: home.to_string(),
                });
            }
            let v = out.current.as_ref().map(|c| c.version.clone());
            for row in rows.values_mut() {
                row.version = v.clone();
                row.phase = Some(if out.drift { "Drifted" } else { "Ready" }.into());
            }
        }
        Action::Record | Action::Switch { .. } => {
            let mut r = plan.next.clone().expect("a rollout step records a rollout");
            note_superseded(&mut out.history, pkg, active, &r, now);
            let through = match plan.action {
                Action::Switch { through } => {
                    out.written = intent(api, pkg, previous, &r).await?;
                    Some(through)
                }
                _ => rollout::switched_through(&r, &rollout::rings(&pools)),
            };
            let map = rollout::mapping(&pools, &r, through);
            let mut slots: Vec<Slot> = r
                .previous
                .iter()
                .map(|p| slot(&p.backend_name, false, &[]))
                .collect();
            slots.push(slot(&r.target.backend_name, true, &[]));
            out.drift = write_slots(ctx, spec, &key, &obs.principals, slots, &map, policy).await?;
            if let Action::Switch { through } = plan.action {
                let at = r.step_started_at.clone();
                let mut notify = vec![];
                for p in pools.iter().filter(|p| p.ring == through) {
                    let row = rows
                        .get_mut(&p.id.to_ascii_lowercase())
                        .expect("a row per pool");
                    if row.switched_at == at {
                        continue; // recorded by a pass that stopped before its status write
                    }
                    row.previous_version =
                        p.on.as_deref()
                            .filter(|on| *on != r.target.backend_name)
                            .and_then(|on| version_of(on, Some(&r)))
                            .or_else(|| r.previous.first().map(|v| v.version.clone()));
                    row.switched_at = at.clone();
                    notify.push(p.id.clone());
                }
                if spec.rollout.notify_users && policy != Policy::Skip {
                    let since = version_time(&at).unwrap_or(now);
                    let display = spec
                        .package
                        .display_name
                        .clone()
                        .unwrap_or_else(|| spec.package.name.clone());
                    let from = r
                        .previous
                        .first()
                        .map(|v| v.version.clone())
                        .unwrap_or_default();
                    let message = SendMessage {
                        message_title: Some(format!("{display} is being updated")),
                        message_body: Some(format!(
                            "{display} changes from version {from} to {} at your next sign-in. Your current session keeps version {from}; sign out and back in when it suits you.",
                            r.target.version
                        )),
                    };
                    for pool in &notify {
                        for s in ctx.backend.list_user_sessions(pool).await? {
                            if started_before(&s, since)
                                && let Some(id) = &s.id
                            {
                                ctx.backend.send_message(id, &message).await?;
                                r.notified_sessions += 1;
                            }
                        }
                    }
                }
                r.step = step::STAGING.into();
                r.message = Some(format!(
                    "ring {through}: switched {} host pool(s) to {}; waiting for their session hosts to stage it",
                    pools.iter().filter(|p| p.ring == through).count(),
                    r.target.version
                ));
                out.requeue = Some(ctx.config.rollout_poll);
            }
            fill_rows(&mut rows, &pools, &r, &map, &version_of);
            out.rollout = Some(r);
        }
        Action::Finish => {
            let mut r = plan.next.clone().expect("finish records a rollout");
            out.written = intent(api, pkg, previous, &r).await?;
            let map = all_ids
                .iter()
                .map(|id| (id.to_ascii_lowercase(), r.target.backend_name.clone()))
                .collect();
            let target = slot(&r.target.backend_name, true, &[]);
            write_slots(ctx, spec, &key, &obs.principals, vec![target], &map, policy).await?;
            if policy != Policy::Skip {
                for p in &r.previous {
                    delete_slot(ctx, &p.backend_name, observed.get(&p.backend_name)).await?;
                }
            }
            let message = format!(
                "every host pool runs {}; removed {} from the backend",
                r.target.version,
                r.previous
                    .iter()
                    .map(|p| format!("{} ({})", p.version, p.backend_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            complete(&mut out, &mut rows, pkg, &mut r, now, message);
            out.rollout = Some(r);
        }
        Action::RollBack => {
            let mut r = plan.next.clone().expect("a rollback records a rollout");
            out.written = intent(api, pkg, previous, &r).await?;
            let stable = r
                .previous
                .first()
                .cloned()
                .unwrap_or_else(|| wanted.clone());
            if policy != Policy::Skip {
                for v in std::iter::once(&r.target).chain(r.previous.iter().skip(1)) {
                    if v.backend_name != stable.backend_name {
                        delete_slot(ctx, &v.backend_name, observed.get(&v.backend_name)).await?;
                    }
                }
            }
            let map = all_ids
                .iter()
                .map(|id| (id.to_ascii_lowercase(), stable.backend_name.clone()))
                .collect();
            let reverted = stable.version == wanted.version;
            let stable_slot = slot(&stable.backend_name, reverted, &[]);
            write_slots(
                ctx,
                spec,
                &key,
                &obs.principals,
                vec![stable_slot],
                &map,
                policy,
            )
            .await?;
            let at = rollout::format_time(now);
            for p in &pools {
                if p.on.as_deref() != Some(stable.backend_name.as_str()) {
                    let row = rows
                        .get_mut(&p.id.to_ascii_lowercase())
                        .expect("a row per pool");
                    row.previous_version = p.on.as_deref().and_then(|on| version_of(on, Some(&r)));
                    row.switched_at = Some(at.clone());
                }
            }
            end_rollback(&mut out, &mut rows, pkg, &mut r, &stable, reverted, &at);
            out.rollout = Some(r);
        }
    }

    sessions_pass(ctx, spec, &pools, &mut rows, policy, now, &mut out).await?;
    out.rows = rows.into_values().collect();
    out.rows
        .sort_by(|a, b| (a.ring, &a.name).cmp(&(b.ring, &b.name)));
    Ok(out)
}

/// Sessions: how many still run an old version per host pool, grace-period log-offs,
/// and the retained images' counts.
pub(super) async fn sessions_pass<B: Backend>(
    ctx: &Context<B>,
    spec: &crate::resources::AppAttachPackageSpec,
    pools: &[PoolObs],
    rows: &mut BTreeMap<String, HostPoolRollout>,
    policy: Policy,
    now: Timestamp,
    out: &mut Outcome,
) -> Result<(), BackendError> {
    let rolling = out.rollout.as_ref().is_some_and(rollout::is_active);
    if rolling || !out.retained.is_empty() {
        let grace = spec
            .rollout
            .session_grace_period
            .as_deref()
            .and_then(rollout::parse_duration);
        let mut old_by_version: BTreeMap<String, i32> = BTreeMap::new();
        for p in pools {
            let row = rows
                .get_mut(&p.id.to_ascii_lowercase())
                .expect("a row per pool");
            let Some(switched) = version_time(&row.switched_at) else {
                continue;
            };
            let mut old = 0;
            for s in ctx.backend.list_user_sessions(&p.id).await? {
                if !started_before(&s, switched) {
                    continue;
                }
                let due = grace.is_some_and(|g| {
                    now.duration_since(switched)
                        >= jiff::SignedDuration::try_from(g).unwrap_or_default()
                });
                if due
                    && policy != Policy::Skip
                    && let Some(id) = &s.id
                {
                    ctx.backend.log_off(id).await?;
                    if let Some(r) = out.rollout.as_mut() {
                        r.logged_off_sessions += 1;
                    }
                    continue;
                }
                old += 1;
            }
            row.previous_version_sessions = Some(old);
            if let Some(v) = &row.previous_version {
                *old_by_version.entry(v.clone()).or_default() += old;
            }
        }
        for image in out.retained.iter_mut() {
            image.sessions = old_by_version.get(&image.version).copied().unwrap_or(0);
        }
        out.retained.retain(|i| i.sessions > 0);
        if !out.retained.is_empty() || (rolling && grace.is_some()) {
            out.requeue = Some(
                out.requeue
                    .map_or(ctx.config.rollout_poll, |d| d.min(ctx.config.rollout_poll)),
            );
        }
    }
    Ok(())
}

/// The planner's next step for this pass.
pub(super) fn plan_pass<B>(
    ctx: &Context<B>,
    pkg: &Package,
    wanted: &VersionRef,
    current: &Option<VersionRef>,
    recorded: Option<&RolloutStatus>,
    pools: &[PoolObs],
    now: Timestamp,
) -> rollout::Plan {
    rollout::plan(&rollout::Input {
        spec: &pkg.spec.rollout,
        generation: pkg.metadata.generation.unwrap_or_default(),
        wanted: wanted.clone(),
        current: current.clone(),
        rollout: recorded,
        pools,
        now,
        poll: ctx.config.rollout_poll,
    })
}

/// Lists an image no host pool runs any more, while sessions may still use it.
pub(super) fn retain(retained: &mut Vec<RetainedImage>, v: &VersionRef, at: &str) {
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

/// Ends a rollout that reached every host pool: the previous images are retained while
/// sessions use them, the history records it, and the target becomes the current version.
pub(super) fn complete(
    out: &mut Outcome,
    rows: &mut BTreeMap<String, HostPoolRollout>,
    pkg: &Package,
    r: &mut RolloutStatus,
    now: Timestamp,
    message: String,
) {
    let at = rollout::format_time(now);
    for p in &r.previous {
        retain(&mut out.retained, p, &at);
    }
    push_history(&mut out.history, pkg, r, "Complete", &at, None);
    r.phase = phase::COMPLETE.into();
    r.step = step::DONE.into();
    r.message = Some(message);
    out.current = Some(r.target.clone());
    for row in rows.values_mut() {
        row.version = Some(r.target.version.clone());
        row.phase = Some("Ready".into());
    }
}

/// Ends a rollback: every host pool runs `stable` again; the target's image is retained
/// while sessions use it, and the target is recorded as failed (not tried again until the
/// spec changes) or, when the spec itself went back, as reverted.
pub(super) fn end_rollback(
    out: &mut Outcome,
    rows: &mut BTreeMap<String, HostPoolRollout>,
    pkg: &Package,
    r: &mut RolloutStatus,
    stable: &VersionRef,
    reverted: bool,
    at: &str,
) {
    retain(&mut out.retained, &r.target, at);
    let message = r.message.clone();
    push_history(
        &mut out.history,
        pkg,
        r,
        if reverted { "Reverted" } else { "Failed" },
        at,
        message.as_deref(),
    );
    if reverted {
        r.phase = phase::REVERTED.into();
        r.message = Some(format!(
            "the spec went back to {}: every host pool runs it again; {} was removed from the backend",
            stable.version, r.target.version
        ));
    } else {
        r.phase = phase::FAILED.into();
        r.failed_generation = pkg.metadata.generation;
        r.message = Some(format!(
            "rolled back to {}: {}. {} is not tried again until the spec changes",
            stable.version,
            message.unwrap_or_default(),
            r.target.version
        ));
    }
    r.step = step::DONE.into();
    r.cycled_hosts.clear();
    out.current = Some(stable.clone());
    for row in rows.values_mut() {
        row.version = Some(stable.version.clone());
        let back = row.previous_version.as_deref() == Some(r.target.version.as_str())
            && row.switched_at.as_deref() == Some(at);
        row.phase = Some(if back { "RolledBack" } else { "Ready" }.into());
    }
}

/// Records, in the history, a running rollout that a newer spec replaced.
pub(super) fn note_superseded(
    history: &mut Vec<RolloutRecord>,
    pkg: &Package,
    before: Option<&RolloutStatus>,
    after: &RolloutStatus,
    now: Timestamp,
) {
    if let Some(b) = before
        && rollout::is_active(b)
        && b.revision != after.revision
    {
        let message = format!("superseded by {}", after.target.version);
        push_history(
            history,
            pkg,
            b,
            "Superseded",
            &rollout::format_time(now),
            Some(&message),
        );
    }
}

/// A status row per host pool (by lowercased id), keeping when each last switched.
pub(super) fn rows_from(
    pools: &[PoolObs],
    previous: &AppAttachPackageStatus,
) -> BTreeMap<String, HostPoolRollout> {
    pools
        .iter()
        .map(|p| {
            let old = previous
                .host_pools
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(&p.name));
            (
                p.id.to_ascii_lowercase(),
                HostPoolRollout {
                    name: p.name.clone(),
                    ring: p.ring,
                    version: None,
                    phase: None,
                    switched_at: old.and_then(|r| r.switched_at.clone()),
                    previous_version: old.and_then(|r| r.previous_version.clone()),
                    staged_hosts: None,
                    failed_hosts: None,
                    previous_version_sessions: None,
                },
            )
        })
        .collect()
}

pub(super) fn started_before(s: &UserSession, t: Timestamp) -> bool {
    version_time(&s.properties.create_time).is_some_and(|c| c < t)
}

/// Per-pool version, phase and gate counts during a rollout.
pub(super) fn fill_rows(
    rows: &mut BTreeMap<String, HostPoolRollout>,
    pools: &[PoolObs],
    r: &RolloutStatus,
    map: &BTreeMap<String, String>,
    version_of: &impl Fn(&str, Option<&RolloutStatus>) -> Option<String>,
) {
    for p in pools {
        let row = rows
            .get_mut(&p.id.to_ascii_lowercase())
            .expect("a row per pool");
        let on = map
            .get(&p.id.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        row.version = version_of(&on, Some(r));
        let on_target = on == r.target.backend_name;
        row.phase = Some(
            match (on_target, r.ring) {
                (false, _) => "Pending",
                (true, Some(ring)) if p.ring == ring => match r.step.as_str() {
                    step::SOAKING => "Soaking",
                    step::SWITCHING => "Switching",
                    _ => "Staging",
                },
                (true, _) => "Done",
            }
            .into(),
        );
        if on_target && let Some(since) = version_time(&row.switched_at) {
            let g = rollout::gate(&p.hosts, since, &r.target.image_path);
            row.staged_hosts = Some(g.staged.len() as i32);
            row.failed_hosts = Some(g.failed.len() as i32);
        }
    }
}

pub(super) fn push_history(
    history: &mut Vec<RolloutRecord>,
    pkg: &Package,
    r: &RolloutStatus,
    result: &str,
    at: &str,
    message: Option<&str>,
) {
    if history.first().is_some_and(|h| h.revision == r.revision) {
        return;
    }
    let same_spec = pkg.spec.package.version == r.target.version;
    history.insert(
        0,
        RolloutRecord {
            revision: r.revision,
            version: r.target.version.clone(),
            image_path: r.target.image_path.clone(),
            relative_path: same_spec
                .then(|| pkg.spec.package.relative_path.clone())
                .flatten(),
            full_name: same_spec
                .then(|| pkg.spec.package.full_name.clone())
                .flatten(),
            from_version: r.previous.first().map(|p| p.version.clone()),
            from_image_path: r.previous.first().map(|p| p.image_path.clone()),
            result: result.into(),
            started_at: r.started_at.clone(),
            finished_at: Some(at.into()),
            message: message.map(String::from),
        },
    );
    history.truncate(HISTORY);
}

/// Records a step's intent before its backend writes, so a restart resumes it.
pub(super) async fn intent(
    api: &Api<Package>,
    pkg: &Package,
    previous: &AppAttachPackageStatus,
    r: &RolloutStatus,
) -> Result<Option<AppAttachPackageStatus>, Error> {
    if previous.rollout.as_ref() == Some(r) {
        return Ok(None);
    }
    let mut st = previous.clone();
    st.rollout = Some(r.clone());
    st.target_version = Some(r.target.version.clone());
    status::write(api, &pkg.name_any(), pkg.status.as_ref(), &st).await?;
    Ok(Some(st))
}

/// Writes each slot's host pool references (additions first) and role assignments. Returns whether anything
/// differed under policy skip.
async fn write_slots<B: Backend>(
    ctx: &Context<B>,
    spec: &crate::resources::AppAttachPackageSpec,
    key: &str,
    principals: &[build::Principal],
    slots: Vec<Slot>,
    map: &BTreeMap<String, String>,
    policy: Policy,
) -> Result<bool, BackendError> {
    let mut drift = false;
    let mut ordered: Vec<(bool, Slot)> = slots
        .into_iter()
        .map(|s| {
            let refs = map.values().filter(|n| **n == s.name).count();
            let held = s.observed.as_ref().map_or(0, |o| {
                o.properties.host_pool_references.iter().flatten().count()
            });
            (refs >= held, s)
        })
        .collect();
    // The version a host pool moves to is added before the one it leaves is removed: in
    // between, its hosts stage both, so a health check taken then still speaks of the new
    // image (removing first would leave a moment with neither, and a check that passes).
    ordered.sort_by_key(|(grows, _)| !*grows);
    for (_, s) in ordered {
        let mut refs: Vec<String> = map
            .iter()
            .filter(|(_, n)| **n == s.name)
            .map(|(id, _)| id.clone())
            .collect();
        // Keep the casing ARM answered with for ids it already holds.
        if let Some(o) = &s.observed {
            for r in refs.iter_mut() {
                if let Some(held) = o
                    .properties
                    .host_pool_references
                    .iter()
                    .flatten()
                    .find(|h| h.eq_ignore_ascii_case(r))
                {
                    *r = held.clone();
                }
            }
        }
        let (body, roles) = match (&s.desired, &s.observed) {
            (Some(d), _) => {
                let mut body = d.package.clone();
                body.properties.host_pool_references = Some(refs.clone());
                (body, d.roles.clone())
            }
            (None, Some(o)) => {
                let mut body = o.clone();
                body.id = None;
                body.name = None;
                body.resource_type = None;
                body.properties.provisioning_state = None;
                body.properties.host_pool_references = Some(refs.clone());
                let roles = build::build(
                    spec,
                    key,
                    ctx.backend.subscription(),
                    &s.id,
                    &[],
                    principals,
                )
                .roles;
                (body, roles)
            }
            (None, None) => continue,
        };
        if s.observed.is_none() && refs.is_empty() && !s.stable {
            continue; // not needed yet
        }
        let needs_put = s
            .observed
            .as_ref()
            .is_none_or(|o| build::package_differs(&body, o));
        let observed_roles = if s.observed.is_some() {
            ctx.backend.list_role_assignments(&s.id).await?
        } else {
            vec![]
        };
        let (create, delete) = build::role_changes(&roles, &observed_roles);
        if policy == Policy::Skip {
            drift |= needs_put || !create.is_empty() || !delete.is_empty();
            continue;
        }
        // The package first, then new role assignments, then removals, so nobody who
        // stays entitled loses the app on the way.
        if needs_put {
            ctx.backend.put_package(&s.name, &body).await?;
        }
        for n in &create {
            match ctx.backend.put_role_assignment(&s.id, n, &roles[n]).await {
                // Made by someone else meanwhile: adopted.
                Err(BackendError::Arm(e)) if e.code == "RoleAssignmentExists" => {}
                r => {
                    r?;
                }
            }
        }
        for id in &delete {
            ctx.backend.delete_role_assignment(id).await?;
        }
    }
    Ok(drift)
}

/// Removes one version's backend package and its role assignments, if it is ours.
async fn delete_slot<B: Backend>(
    ctx: &Context<B>,
    name: &str,
    observed: Option<&Option<AppAttachPackage>>,
) -> Result<(), BackendError> {
    let observed = match observed {
        Some(o) => o.clone(),
        None => ctx.backend.get_package(name).await?,
    };
    if observed.is_none() {
        return Ok(());
    }
    let id = ctx.backend.package_id(name);
    for role in ctx.backend.list_role_assignments(&id).await? {
        if let Some(rid) = &role.id {
            ctx.backend.delete_role_assignment(rid).await?;
        }
    }
    ctx.backend.delete_package(name).await
}

/// The names of every backend package this object may own: the stable one and those of
/// an active rollout.
pub(super) fn slot_names(status: &AppAttachPackageStatus, home: &str) -> Vec<String> {
    let mut names = vec![home.to_string()];
    if let Some(r) = status.rollout.as_ref() {
        for v in std::iter::once(&r.target).chain(&r.previous) {
            if !names.contains(&v.backend_name) {
                names.push(v.backend_name.clone());
            }
        }
    }
    names
}

/// The `Progressing` condition and Ready override for a rollout.
pub(super) fn conditions(r: &RolloutStatus) -> (status::Cond, Option<status::Cond>) {
    let message = r.message.clone().unwrap_or_default();
    use super::status::Cond;
    use crate::resources::condition::{PROGRESSING, READY};
    match r.phase.as_str() {
        phase::PROGRESSING | phase::ROLLING_BACK => (
            Cond::yes(PROGRESSING, "RolloutInProgress", message.clone()),
            Some(Cond::unknown(READY, "RolloutInProgress", message)),
        ),
        phase::PAUSED => (
            Cond::unknown(PROGRESSING, "RolloutPaused", message.clone()),
            Some(Cond::unknown(READY, "RolloutPaused", message)),
        ),
        phase::HELD => (
            Cond::no(PROGRESSING, "RolloutHeld", message.clone()),
            Some(Cond::no(READY, "RolloutHeld", message)),
        ),
        phase::FAILED => (
            Cond::no(PROGRESSING, "RolloutFailed", message.clone()),
            Some(Cond::no(READY, "RolloutFailed", message)),
        ),
        phase::REVERTED => (Cond::yes(PROGRESSING, "RolloutReverted", message), None),
        _ => (Cond::yes(PROGRESSING, "RolloutComplete", message), None),
    }
}

/// The event for a rollout that moved, if it did.
pub(super) fn event(
    before: Option<&RolloutStatus>,
    after: &RolloutStatus,
) -> Option<(bool, &'static str, String)> {
    let key = |r: &RolloutStatus| (r.revision, r.phase.clone(), r.step.clone(), r.ring);
    if before.map(key) == Some(key(after)) {
        return None;
    }
    let message = after.message.clone().unwrap_or_default();
    let (warning, reason) = match (after.phase.as_str(), after.step.as_str()) {
        (phase::FAILED, _) => (true, "RolloutFailed"),
        (phase::HELD, _) => (true, "RolloutHeld"),
        (phase::ROLLING_BACK, _) => (true, "RollingBack"),
        (phase::REVERTED, _) => (false, "RolloutReverted"),
        (phase::PAUSED, _) => (false, "RolloutPaused"),
        (phase::COMPLETE, _) => (false, "RolloutComplete"),
        (_, step::PENDING) => (false, "RolloutStarted"),
        (_, step::SWITCHING) => (false, "RingSwitching"),
        (_, step::STAGING) => (false, "RingSwitched"),
        (_, step::SOAKING) => (false, "RingStaged"),
        (_, step::FINISHING) => (false, "RolloutFinishing"),
        (_, step::DRAINING) => (false, "Draining"),
        _ => (false, "Rollout"),
    };
    Some((warning, reason, message))
}
