//! Rollouts in MSIX app attach mode, which cannot update a package in place: inside the
//! maintenance window, each host pool of a ring drains a batch of at most
//! `maxUnavailableHosts` session hosts, waits for their sessions to end, replaces the
//! package on the pool (once, with the first empty batch), undrains them, and takes the
//! next batch. The hosts it drained are recorded in status before they are drained, and
//! undrained outside the window, on rollback and on a restart's first pass.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;

use super::build;
use super::reconcile::{Observed, msix_body};
use super::rolling::{
    Outcome, complete, end_rollback, fill_rows, host_obs, intent, note_superseded, plan_pass,
    rows_from, sessions_pass, version_time,
};
use super::rollout::{self, Action, PoolObs, Window, step};
use super::{Context, Error, Policy};
use crate::backend::Backend;
use crate::resources::{
    AppAttachPackage as Package, AppAttachPackageSpec, AppAttachPackageStatus, RolloutStatus,
    VersionRef,
};

/// The spec at another version: version and image replaced, and the version inside an
/// explicit relative path or full name with them.
pub(super) fn spec_at(spec: &AppAttachPackageSpec, v: &VersionRef) -> AppAttachPackageSpec {
    let mut s = spec.clone();
    let old = spec.package.version.clone();
    s.package.version = v.version.clone();
    s.image.path = v.image_path.clone();
    s.package.relative_path = s.package.relative_path.map(|p| p.replace(&old, &v.version));
    s.package.full_name = s.package.full_name.map(|p| p.replace(&old, &v.version));
    s
}

/// Runs one pass for an MSIX app attach package.
pub(super) async fn msix<B: Backend>(
    ctx: &Context<B>,
    pkg: &Package,
    api: &Api<Package>,
    obs: &Observed,
    previous: &AppAttachPackageStatus,
    policy: Policy,
) -> Result<Outcome, Error> {
    let key = format!("{}/{}", pkg.namespace().unwrap_or_default(), pkg.name_any());
    let spec = &pkg.spec;
    let now = Timestamp::now();
    let full = |s: &AppAttachPackageSpec| build::identity(s).1;
    let recorded = previous.rollout.as_ref();
    let current = previous.current_version.as_ref().map(|v| {
        let image = previous
            .current_image_path
            .clone()
            .unwrap_or_else(|| spec.image.path.clone());
        let mut c = VersionRef {
            version: v.clone(),
            image_path: image,
            backend_name: String::new(),
        };
        c.backend_name = full(&spec_at(spec, &c));
        c
    });
    let wanted = VersionRef {
        version: spec.package.version.clone(),
        image_path: spec.image.path.clone(),
        backend_name: full(spec),
    };
    let ours: Vec<String> = current
        .iter()
        .chain(std::iter::once(&wanted))
        .chain(
            recorded
                .into_iter()
                .flat_map(|r| std::iter::once(&r.target).chain(&r.previous)),
        )
        .map(|v| v.backend_name.to_ascii_lowercase())
        .collect();

    // Which of our packages each pool holds.
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, id, _) in &obs.pool_ids {
        let names: Vec<String> = ctx
            .backend
            .list_msix_packages(id)
            .await?
            .into_iter()
            .filter_map(|m| {
                m.name
                    .map(|n| n.rsplit('/').next().unwrap_or_default().to_string())
            })
            .filter(|n| ours.contains(&n.to_ascii_lowercase()))
            .collect();
        held.insert(id.to_ascii_lowercase(), names);
    }
    let pools: Vec<PoolObs> = obs
        .pool_ids
        .iter()
        .zip(&obs.hosts)
        .map(|((name, id, ring), hosts)| {
            let names = &held[&id.to_ascii_lowercase()];
            let target = recorded.map(|r| r.target.backend_name.clone());
            PoolObs {
                name: name.clone(),
                id: id.clone(),
                ring: *ring,
                on: target
                    .filter(|t| names.iter().any(|n| n.eq_ignore_ascii_case(t)))
                    .or_else(|| names.first().cloned()),
                switched_at: previous
                    .host_pools
                    .iter()
                    .find(|r| r.name.eq_ignore_ascii_case(name))
                    .and_then(|r| version_time(&r.switched_at)),
                hosts: hosts.iter().map(host_obs).collect(),
            }
        })
        .collect();

    let plan = plan_pass(ctx, pkg, &wanted, &current, recorded, &pools, now);
    let mut out = Outcome {
        rollout: recorded.cloned(),
        current: current.clone(),
        retained: previous.retained_images.clone(),
        history: previous.history.clone(),
        requeue: plan.requeue,
        ..Default::default()
    };
    let mut rows = rows_from(&pools, previous);
    let version_of = |name: &str, r: Option<&RolloutStatus>| -> Option<String> {
        r.into_iter()
            .flat_map(|r| std::iter::once(&r.target).chain(&r.previous))
            .chain(current.iter())
            .find(|v| v.backend_name.eq_ignore_ascii_case(name))
            .map(|v| v.version.clone())
    };
    let skip = policy == Policy::Skip;

    match plan.action {
        Action::Steady | Action::FailedVersion => {
            // Hosts drained by a rollout that is no more.
            if let Some(r) = out.rollout.as_mut()
                && !r.drained_hosts.is_empty()
                && !skip
            {
                undrain(ctx, &mut r.drained_hosts).await?;
            }
            out.failed_version = plan.action == Action::FailedVersion;
            if !out.failed_version {
                let desired = build::build(spec, &key, ctx.backend.subscription(), "", &[], &[]);
                out.drift =
                    super::reconcile::sync_msix(ctx, pkg, &desired, obs, previous, policy).await?;
                out.current = Some(wanted.clone());
            }
            let v = out.current.as_ref().map(|c| c.version.clone());
            for row in rows.values_mut() {
                row.version = v.clone();
                row.phase = Some(if out.drift { "Drifted" } else { "Ready" }.into());
            }
        }
        Action::Record => {
            let r = plan.next.clone().expect("a rollout step records a rollout");
            note_superseded(&mut out.history, pkg, recorded, &r, now);
            let map = on_map(&pools, &r);
            fill_rows(&mut rows, &pools, &r, &map, &version_of);
            out.rollout = Some(r);
        }
        Action::Switch { through } => {
            let mut r = plan.next.clone().expect("a switch records a rollout");
            out.written = intent(api, pkg, previous, &r).await?;
            let mut switched_now: Vec<String> = vec![];
            // An unreadable window was refused by validation before this pass got here.
            let window = spec
                .rollout
                .maintenance_window
                .as_ref()
                .and_then(|w| rollout::window(w, now).ok());
            match window {
                Some(Window::Closed(opens)) => {
                    if !r.drained_hosts.is_empty() && !skip {
                        undrain(ctx, &mut r.drained_hosts).await?;
                        r.cycled_hosts.clear();
                    }
                    r.message = Some(format!(
                        "ring {through}: outside the maintenance window; waiting until it opens at {opens}"
                    ));
                    let wait = Duration::try_from(opens.duration_since(now)).unwrap_or_default();
                    out.requeue = Some(wait.max(ctx.config.rollout_poll));
                }
                _ if skip => {}
                _ => {
                    let target_spec = spec_at(spec, &r.target);
                    let body = msix_body(&build::build(
                        &target_spec,
                        &key,
                        ctx.backend.subscription(),
                        "",
                        &[],
                        &[],
                    ));
                    let max = spec.rollout.max_unavailable_hosts.max(1) as usize;
                    let mut waiting = vec![];
                    let mut done = true;
                    for (p, hosts) in pools
                        .iter()
                        .zip(&obs.hosts)
                        .filter(|(p, _)| p.ring == through)
                    {
                        let pool_held = &held[&p.id.to_ascii_lowercase()];
                        let replaced = pool_held.len() == 1
                            && pool_held[0].eq_ignore_ascii_case(&r.target.backend_name);
                        let ids = |h: &crate::arm::models::SessionHost| {
                            h.id.clone().unwrap_or_default().to_ascii_lowercase()
                        };
                        let batch: Vec<&crate::arm::models::SessionHost> = hosts
                            .iter()
                            .filter(|h| r.drained_hosts.contains(&ids(h)))
                            .collect();
                        if batch.is_empty() {
                            let next: Vec<&crate::arm::models::SessionHost> = hosts
                                .iter()
                                .filter(|h| !r.cycled_hosts.contains(&ids(h)))
                                .collect();
                            // Hosts someone else drained stay as they are.
                            for h in next
                                .iter()
                                .filter(|h| h.properties.allow_new_session == Some(false))
                            {
                                r.cycled_hosts.push(ids(h));
                            }
                            let next: Vec<String> = next
                                .iter()
                                .filter(|h| h.properties.allow_new_session != Some(false))
                                .take(max)
                                .map(|h| ids(h))
                                .collect();
                            if next.is_empty() {
                                if !replaced {
                                    replace(ctx, p, pool_held, &r, &body).await?;
                                    mark_switched(&mut rows, p, &r, &version_of, now);
                                }
                                switched_now.push(p.id.to_ascii_lowercase());
                                continue;
                            }
                            done = false;
                            r.drained_hosts.extend(next.iter().cloned());
                            // Recorded before the hosts are drained: a restart undrains them.
                            out.written =
                                intent(api, pkg, out.written.as_ref().unwrap_or(previous), &r)
                                    .await?
                                    .or(out.written);
                            for h in &next {
                                ctx.backend.set_allow_new_session(h, false).await?;
                            }
                            waiting.push(format!("{}: drained {}", p.name, short(&next)));
                            continue;
                        }
                        done = false;
                        let sessions: i32 = batch
                            .iter()
                            .map(|h| h.properties.sessions.unwrap_or(0))
                            .sum();
                        if sessions > 0 {
                            let names: Vec<String> = batch.iter().map(|h| ids(h)).collect();
                            waiting.push(format!(
                                "{}: waiting for {sessions} session(s) to end on {}",
                                p.name,
                                short(&names)
                            ));
                            continue;
                        }
                        if !replaced {
                            replace(ctx, p, pool_held, &r, &body).await?;
                            mark_switched(&mut rows, p, &r, &version_of, now);
                        }
                        switched_now.push(p.id.to_ascii_lowercase());
                        let mut batch_ids: Vec<String> = batch.iter().map(|h| ids(h)).collect();
                        r.cycled_hosts.extend(batch_ids.iter().cloned());
                        for h in &batch_ids {
                            ctx.backend.set_allow_new_session(h, true).await?;
                        }
                        r.drained_hosts.retain(|d| !batch_ids.contains(d));
                        waiting.push(format!("{}: undrained {}", p.name, short(&batch_ids)));
                        batch_ids.clear();
                    }
                    if done {
                        r.step = step::STAGING.into();
                        r.step_started_at = Some(rollout::format_time(now));
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
                    out.requeue = Some(ctx.config.rollout_poll);
                }
            }
            let mut map = on_map(&pools, &r);
            for id in &switched_now {
                map.insert(id.clone(), r.target.backend_name.clone());
            }
            fill_rows(&mut rows, &pools, &r, &map, &version_of);
            out.rollout = Some(r);
        }
        Action::Finish => {
            let mut r = plan.next.clone().expect("finish records a rollout");
            let message = format!("every host pool runs {}", r.target.version);
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
            let at = rollout::format_time(now);
            if !skip {
                undrain(ctx, &mut r.drained_hosts).await?;
                let body = msix_body(&build::build(
                    &spec_at(spec, &stable),
                    &key,
                    ctx.backend.subscription(),
                    "",
                    &[],
                    &[],
                ));
                let back = RolloutStatus {
                    target: stable.clone(),
                    ..r.clone()
                };
                for p in &pools {
                    let pool_held = &held[&p.id.to_ascii_lowercase()];
                    if !(pool_held.len() == 1
                        && pool_held[0].eq_ignore_ascii_case(&stable.backend_name))
                    {
                        replace(ctx, p, pool_held, &back, &body).await?;
                        let row = rows
                            .get_mut(&p.id.to_ascii_lowercase())
                            .expect("a row per pool");
                        row.previous_version =
                            p.on.as_deref().and_then(|on| version_of(on, Some(&r)));
                        row.switched_at = Some(at.clone());
                    }
                }
            }
            let reverted = stable.version == wanted.version;
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

fn short(ids: &[String]) -> String {
    ids.iter()
        .map(|i| i.rsplit('/').next().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts the target on the pool, then removes every other version of ours from it.
async fn replace<B: Backend>(
    ctx: &Context<B>,
    p: &PoolObs,
    held: &[String],
    r: &RolloutStatus,
    body: &crate::arm::models::MsixPackage,
) -> Result<(), Error> {
    ctx.backend
        .put_msix_package(&p.id, &r.target.backend_name, body)
        .await?;
    for other in held
        .iter()
        .filter(|h| !h.eq_ignore_ascii_case(&r.target.backend_name))
    {
        ctx.backend.delete_msix_package(&p.id, other).await?;
    }
    Ok(())
}

fn mark_switched(
    rows: &mut BTreeMap<String, crate::resources::HostPoolRollout>,
    p: &PoolObs,
    r: &RolloutStatus,
    version_of: &impl Fn(&str, Option<&RolloutStatus>) -> Option<String>,
    now: Timestamp,
) {
    let row = rows
        .get_mut(&p.id.to_ascii_lowercase())
        .expect("a row per pool");
    row.previous_version =
        p.on.as_deref()
            .and_then(|on| version_of(on, Some(r)))
            .or_else(|| r.previous.first().map(|v| v.version.clone()));
    row.switched_at = Some(rollout::format_time(now));
}

/// Lets every host this rollout drained take sessions again.
pub(super) async fn undrain<B: Backend>(
    ctx: &Context<B>,
    drained: &mut Vec<String>,
) -> Result<(), Error> {
    for h in drained.iter() {
        ctx.backend.set_allow_new_session(h, true).await?;
    }
    drained.clear();
    Ok(())
}

fn on_map(pools: &[PoolObs], r: &RolloutStatus) -> BTreeMap<String, String> {
    pools
        .iter()
        .map(|p| {
            (
                p.id.to_ascii_lowercase(),
                p.on.clone().unwrap_or_else(|| {
                    r.previous
                        .first()
                        .map(|v| v.backend_name.clone())
                        .unwrap_or_default()
                }),
            )
        })
        .collect()
}
