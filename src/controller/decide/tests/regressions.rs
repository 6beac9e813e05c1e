//! One test per defect the redesign fixed, each as the user met it.

use std::sync::Arc;

use serde_json::json;

use super::super::{Requeue, Write};
use super::drive;
use super::fixtures::*;
use crate::backend::BackendError;
use crate::controller::observe::MissingPool;
use crate::resources::{CertificateSpec, PoolPhase, RolloutPhase, RolloutResult, RolloutStep};

/// The host pools each PUT of the backend package of `version` gives it, in order.
fn switches(ws: &[&Write], version: &str) -> Vec<Vec<String>> {
    let name = format!("ns-app-v{}", version.replace('.', "-"));
    ws.iter()
        .filter_map(|w| refs_of(w))
        .filter(|(n, _)| *n == name)
        .map(|(_, mut pools)| {
            pools.sort();
            pools
        })
        .collect()
}

/// Asserts that no item comes twice.
fn each_once<T: Ord + std::fmt::Debug + Clone>(items: Vec<T>, what: &str) {
    let mut unique = items.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), items.len(), "{what} repeated: {items:?}");
}

/// A kill right after the first write of a pass that matches.
fn after_first(
    matches: fn(&Write) -> bool,
) -> impl FnMut(usize, &super::super::Decision) -> Option<usize> {
    move |_, d| d.writes.iter().position(matches).map(|i| i + 1)
}

fn ring_by_ring() -> Vec<Vec<String>> {
    vec![
        vec!["hp-r0".to_string()],
        vec!["hp-r0".into(), "hp-r1".into()],
        vec!["hp-r0".into(), "hp-r1".into(), "hp-r2".into()],
    ]
}

fn everywhere(sim: &crate::controller::decide::simulate::Sim, version: &str) -> bool {
    versions(sim)
        .iter()
        .all(|(_, v)| v.as_deref() == Some(version))
}

#[test]
fn a_version_change_with_an_expired_certificate_reports_what_runs_and_rolls_out_once_fixed() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| {
        to_version(p, "2.0.0.0");
        p.spec.certificate = Some(CertificateSpec {
            subject: "CN=Contoso".into(),
            expiry: "2020-01-01T00:00:00Z".into(),
            timestamped: false,
            thumbprint: None,
            root: None,
        });
    });
    let d = sim.pass();
    assert!(d.writes.is_empty() && d.intent.is_none(), "{:?}", d.writes);
    assert_eq!(condition(&sim, "Ready").unwrap().1, "CertificateExpired");
    // Status is what the backend holds, not what the spec hopes.
    assert_eq!(d.status.current_version.as_deref(), Some("1.0.0.0"));
    for (pool, version) in rows(&sim) {
        assert_eq!(version.as_deref(), Some("1.0.0.0"), "{pool}");
    }
    assert!(
        d.status
            .host_pools
            .iter()
            .all(|r| r.phase == Some(PoolPhase::Pending))
    );
    // Fixed: a rollout, ring by ring, not one PUT with every pool.
    respec(&mut sim, |p| {
        p.spec.certificate.as_mut().unwrap().timestamped = true
    });
    let ds = sim.run(200);
    assert_eq!(switches(&writes(&ds), "2.0.0.0"), ring_by_ring());
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(st.history[0].revision, 1);
    assert_eq!(st.history[0].result, RolloutResult::Complete);
    assert_eq!(st.current_version.as_deref(), Some("2.0.0.0"));
    assert!(everywhere(&sim, "2.0.0.0"));
}

#[test]
fn a_version_change_while_a_pool_is_missing_reports_what_runs_and_rolls_out_once_removed() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    // A pool that does not exist joins the assignment, and the version changes.
    let mut with_missing = RINGS.to_vec();
    with_missing.push(("hp-gone", 1));
    sim.obs.inputs.host_pool_assignments = vec![Arc::new(hpa(&with_missing))];
    sim.obs.backend.as_mut().unwrap().missing.push(MissingPool {
        name: "hp-gone".into(),
        field: "HostPoolAssignment/app-pools spec.hostPools[3].name".into(),
    });
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let d = sim.pass();
    assert!(d.writes.is_empty(), "{:?}", d.writes);
    assert_eq!(condition(&sim, "Ready").unwrap().1, "HostPoolNotFound");
    assert_eq!(d.status.current_version.as_deref(), Some("1.0.0.0"));
    assert!(
        rows(&sim)
            .iter()
            .all(|(_, v)| v.as_deref() == Some("1.0.0.0"))
    );
    // The pool leaves the assignment: the version still moves ring by ring.
    sim.obs.inputs.host_pool_assignments = vec![Arc::new(hpa(&RINGS))];
    sim.obs.backend.as_mut().unwrap().missing.clear();
    let ds = sim.run(200);
    assert_eq!(switches(&writes(&ds), "2.0.0.0"), ring_by_ring());
    assert!(everywhere(&sim, "2.0.0.0"));
}

#[test]
fn a_version_changed_while_suspended_rolls_out_when_resumed() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| {
        to_version(p, "2.0.0.0");
        p.spec.suspend = true;
    });
    let d = sim.pass();
    assert!(d.writes.is_empty());
    assert_eq!(condition(&sim, "Synced").unwrap().1, "Suspended");
    assert_eq!(d.status.current_version.as_deref(), Some("1.0.0.0"));
    respec(&mut sim, |p| p.spec.suspend = false);
    let ds = sim.run(200);
    assert_eq!(switches(&writes(&ds), "2.0.0.0"), ring_by_ring());
}

#[test]
fn a_status_lost_mid_rollout_resumes_ring_by_ring_from_the_backend() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    // Until ring 0 runs 2.0.0.0 and soaks.
    for _ in 0..50 {
        sim.pass();
        let r = sim
            .obs
            .package
            .status
            .as_ref()
            .and_then(|s| s.rollout.clone());
        if r.is_some_and(|r| r.step == RolloutStep::Soaking) {
            break;
        }
    }
    // The status is lost (a restore without status, say).
    let mut pkg = (*sim.obs.package).clone();
    pkg.status = None;
    sim.obs.package = Arc::new(pkg);
    let d = sim.pass();
    assert!(
        d.writes.iter().all(|w| refs_of(w).is_none()),
        "no pool moves before a rollout is recorded: {:?}",
        d.writes
    );
    assert_eq!(d.status.current_version.as_deref(), Some("1.0.0.0"));
    assert_eq!(
        d.status.rollout.as_ref().unwrap().phase,
        RolloutPhase::Progressing
    );
    let ds = sim.run(200);
    let moves = switches(&writes(&ds), "2.0.0.0");
    assert_eq!(
        moves.first().map(Vec::len),
        Some(2),
        "ring 1 joins ring 0: {moves:?}"
    );
    assert!(everywhere(&sim, "2.0.0.0"));
}

#[test]
fn a_refused_write_reports_what_the_backend_holds_after_the_writes_that_were_done() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let d = loop {
        let d = sim.decide();
        if d.intent
            .as_ref()
            .and_then(|i| i.rollout.as_ref())
            .is_some_and(|r| r.step == RolloutStep::Switching)
        {
            break d;
        }
        sim.pass();
    };
    // The new version's package is made, then the backend refuses the next write.
    assert!(matches!(d.writes[0], Write::PutPackage { .. }));
    let refusal = BackendError::Arm(crate::arm::ArmError::invalid("properties.x is not valid"));
    let settled = super::super::settle(&sim.obs, &d, 1, &refusal, false);
    let r0 = settled
        .status
        .host_pools
        .iter()
        .find(|r| r.name == "hp-r0")
        .unwrap();
    assert_eq!(
        r0.version.as_deref(),
        Some("2.0.0.0"),
        "hp-r0 runs what the backend gives it"
    );
    let r1 = settled
        .status
        .host_pools
        .iter()
        .find(|r| r.name == "hp-r1")
        .unwrap();
    assert_eq!(r1.version.as_deref(), Some("1.0.0.0"));
    assert_eq!(settled.status.current_version.as_deref(), Some("1.0.0.0"));
    let ready = settled
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidParameter")
    );
    assert_eq!(
        settled.status.rollout.as_ref().unwrap().step,
        RolloutStep::Switching
    );
    assert_eq!(settled.requeue, Requeue::Resync);
}

#[test]
fn users_are_told_once_even_when_the_controller_dies_between_the_messages() {
    let rollout = json!({"soak": "1s", "notifyUsers": true});
    let mut sim = steady(package("1.0.0.0", rollout), &RINGS);
    let before = t0();
    {
        let v = sim.obs.backend.as_mut().unwrap();
        for (i, p) in v.pools.iter_mut().enumerate() {
            let s1 = session(p, ALICE, 2 * i, before);
            let s2 = session(p, BOB, 2 * i + 1, before);
            p.sessions = vec![s1, s2];
        }
    }
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    // Killed after the first message of every pass that sends one.
    let (_, applied) = drive(
        &mut sim,
        300,
        after_first(|w| matches!(w, Write::SendMessage { .. })),
    );
    let sent: Vec<&str> = applied
        .iter()
        .filter_map(|w| match w {
            Write::SendMessage { session_id, .. } => Some(session_id.as_str()),
            _ => None,
        })
        .collect();
    each_once(sent.clone(), "a message to a session");
    // Alice (Finance) on each pool; Bob has no assignment and gets no message. A
    // message recorded but not sent (the kill) is lost: at most once.
    assert!(
        sent.iter()
            .all(|s| s.ends_with("/0") || s.ends_with("/2") || s.ends_with("/4")),
        "{sent:?}"
    );
    let r = sim.obs.package.status.clone().unwrap().rollout.unwrap();
    assert_eq!(r.phase, RolloutPhase::Complete);
    assert_eq!(r.notified_sessions, 3, "recorded before sending");
    assert_eq!(r.notified_pools, ["hp-r0", "hp-r1", "hp-r2"]);
}

#[test]
fn a_rollback_puts_the_old_version_back_before_the_new_one_leaves() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    sim.stages = Arc::new(|host: &str, image: &str| {
        !(host.starts_with("hp-r0") && image.contains("2.0.0.0"))
    });
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let ds = sim.run(200);
    let back = ds
        .iter()
        .find(|d| {
            d.intent
                .as_ref()
                .and_then(|i| i.rollout.as_ref())
                .is_some_and(|r| r.phase == RolloutPhase::RollingBack)
        })
        .expect("a rollback");
    let old_gets_r0 = back
        .writes
        .iter()
        .position(|w| {
            refs_of(w).is_some_and(|(n, p)| n == "ns-app" && p.contains(&"hp-r0".to_string()))
        })
        .expect("the old version gets hp-r0 back");
    let new_leaves = back
        .writes
        .iter()
        .position(|w| matches!(w, Write::DeletePackage { name } if name == "ns-app-v2-0-0-0"))
        .expect("the new version goes");
    assert!(old_gets_r0 < new_leaves, "{:?}", back.writes);
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(st.rollout.unwrap().phase, RolloutPhase::Failed);
    assert!(everywhere(&sim, "1.0.0.0"));
    assert_eq!(
        switches(&writes(&ds), "2.0.0.0"),
        vec![vec!["hp-r0".to_string()]],
        "ring 1 never switched"
    );
}

/// A maintenance window open from the start of the tests for three days.
fn open_window() -> serde_json::Value {
    let day = format!(
        "{:?}",
        t0().to_zoned(jiff::tz::TimeZone::UTC).date().weekday()
    );
    json!({"dayOfWeek": day, "startTime": "00:00", "duration": "72h", "timeZone": "UTC"})
}

#[test]
fn an_msix_rollout_killed_after_a_replacement_completes_writing_nothing_twice() {
    let rollout =
        json!({"soak": "1s", "maxUnavailableHosts": 1, "maintenanceWindow": open_window()});
    let mut sim = steady(msix_package("1.0.0.0", rollout), &RINGS);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    // Killed right after every package PUT.
    let (_, applied) = drive(
        &mut sim,
        400,
        after_first(|w| matches!(w, Write::PutMsix { .. })),
    );
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(
        st.rollout.as_ref().unwrap().phase,
        RolloutPhase::Complete,
        "{:?}",
        st.rollout
    );
    let puts = applied.iter().filter_map(|w| match w {
        Write::PutMsix {
            pool_id, full_name, ..
        } => Some((pool_id.clone(), full_name.clone())),
        _ => None,
    });
    each_once(puts.collect(), "a package PUT");
    let drains = applied.iter().filter_map(|w| match w {
        Write::AllowNewSessions { host_id, allow } => Some((host_id.clone(), *allow)),
        _ => None,
    });
    each_once(drains.collect(), "a drain or undrain");
    let v = sim.view();
    assert!(
        v.pools
            .iter()
            .flat_map(|p| &p.hosts)
            .all(|h| h.properties.allow_new_session == Some(true))
    );
    for p in &v.pools {
        let held: Vec<_> = p
            .msix
            .iter()
            .filter_map(|m| m.properties.version.clone())
            .collect();
        assert_eq!(held, ["2.0.0.0"], "{}", p.name);
    }
}

#[test]
fn an_msix_pool_found_replaced_takes_its_switch_time_from_the_backend() {
    let rollout =
        json!({"soak": "1s", "maxUnavailableHosts": 5, "maintenanceWindow": open_window()});
    let mut sim = steady(msix_package("1.0.0.0", rollout), &[("hp-r0", 0)]);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    // The pass that replaces the package does its writes, but neither its intent nor its
    // status is kept (a kill, and a status restored from before it).
    for _ in 0..20 {
        let d = sim.decide();
        if d.writes.iter().any(|w| matches!(w, Write::PutMsix { .. })) {
            let before = sim.obs.package.status.clone();
            sim.apply(&d, d.writes.len(), false);
            let mut pkg = (*sim.obs.package).clone();
            pkg.status = before;
            sim.obs.package = Arc::new(pkg);
            sim.advance(d.requeue);
            break;
        }
        sim.pass();
    }
    // The hosts staged once, when the package was put there, and never report again.
    let ds = sim.run(40);
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(
        st.rollout.as_ref().unwrap().phase,
        RolloutPhase::Complete,
        "{:?}",
        st.rollout
    );
    assert!(
        !writes(&ds)
            .iter()
            .any(|w| matches!(w, Write::PutMsix { .. })),
        "the PUT is not repeated"
    );
    let row = &st.host_pools[0];
    assert!(row.switched_at.is_some(), "{row:?}");
}

#[test]
fn deleting_an_msix_package_mid_rollout_removes_every_version_the_pools_hold() {
    let rollout =
        json!({"soak": "1h", "maxUnavailableHosts": 5, "maintenanceWindow": open_window()});
    let mut sim = steady(msix_package("1.0.0.0", rollout), &RINGS);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    for _ in 0..30 {
        sim.pass();
        if sim
            .obs
            .package
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.step == RolloutStep::Soaking)
        {
            break;
        }
    }
    let held: Vec<(String, String)> = sim
        .view()
        .pools
        .iter()
        .flat_map(|p| {
            p.msix
                .iter()
                .map(|m| (p.name.clone(), m.properties.version.clone().unwrap()))
        })
        .collect();
    assert!(
        held.contains(&("hp-r0".into(), "2.0.0.0".into()))
            && held.contains(&("hp-r1".into(), "1.0.0.0".into())),
        "{held:?}"
    );
    let mut pkg = (*sim.obs.package).clone();
    pkg.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t0()));
    sim.obs.package = Arc::new(pkg);
    let d = super::super::cleanup(&sim.obs, &settings());
    sim.apply(&d, d.writes.len(), true);
    assert!(
        sim.view().pools.iter().all(|p| p.msix.is_empty()),
        "{:?}",
        d.writes
    );
}

#[test]
fn retained_images_count_only_sessions_of_users_who_get_the_package() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    {
        let v = sim.obs.backend.as_mut().unwrap();
        let p = &mut v.pools[0];
        p.sessions = vec![session(p, ALICE, 0, t0()), session(p, BOB, 1, t0())];
    }
    sim.obs.now = t0() + jiff::SignedDuration::from_secs(60);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    sim.run(200);
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(st.rollout.unwrap().phase, RolloutPhase::Complete);
    assert_eq!(st.retained_images.len(), 1, "{:?}", st.retained_images);
    assert_eq!(
        st.retained_images[0].sessions, 1,
        "Bob has no assignment: {:?}",
        st.retained_images
    );
    let r0 = st.host_pools.iter().find(|r| r.name == "hp-r0").unwrap();
    assert_eq!(r0.previous_version_sessions, Some(1));
}

#[test]
fn an_unassigned_msix_pool_stays_in_status_until_its_package_is_gone() {
    let mut sim = steady(msix_package("1.0.0.0", json!({})), &RINGS);
    // hp-r2 leaves the assignment: it is read as a former pool of the status.
    sim.obs.inputs.host_pool_assignments = vec![Arc::new(hpa(&RINGS[..2]))];
    {
        let v = sim.obs.backend.as_mut().unwrap();
        let gone = v.pools.pop().unwrap();
        v.former.push(gone);
    }
    let d = sim.decide();
    assert!(
        matches!(&d.writes[..], [Write::DeleteMsix { pool_id, .. }] if pool_id.ends_with("hp-r2")),
        "{:?}",
        d.writes
    );
    // The removal fails: the pool stays in status, so the next pass retries it.
    let e = BackendError::Transport("connection reset".into());
    let settled = super::super::settle(&sim.obs, &d, 0, &e, false);
    let r2 = settled.status.host_pools.iter().find(|r| r.name == "hp-r2");
    assert_eq!(
        r2.and_then(|r| r.phase),
        Some(PoolPhase::Removing),
        "{:?}",
        settled.status.host_pools
    );
    assert_eq!(settled.status.host_pool_count, Some(2));
    // Once removed, it leaves the status.
    sim.apply(&d, d.writes.len(), true);
    assert!(
        sim.obs
            .package
            .status
            .as_ref()
            .unwrap()
            .host_pools
            .iter()
            .all(|r| r.name != "hp-r2")
    );
}

/// Found by the generated sequences (seed 1014, shrunk to `missing,drift-inactive`): while
/// a failed version is held, the version that runs is kept as the backend has it, so a
/// package set inactive in the portal stayed inactive, and a state or registration
/// changed in the spec meanwhile never reached it.
#[test]
fn a_held_version_follows_the_spec_state_and_corrects_drift() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    sim.stages = Arc::new(|_: &str, image: &str| !image.contains("2.0.0.0"));
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    sim.run(200);
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(st.rollout.unwrap().phase, RolloutPhase::Failed);
    // Drift, as in the portal: the version that runs is set inactive.
    let v = sim.obs.backend.as_mut().unwrap();
    let held = v.packages.iter_mut().find(|p| p.name == "ns-app").unwrap();
    held.package.properties.image.as_mut().unwrap().is_active = Some(false);
    let d = sim.pass();
    let put = d
        .writes
        .iter()
        .find_map(|w| match w {
            Write::PutPackage { name, body } if name == "ns-app" => Some(body.clone()),
            _ => None,
        })
        .expect("the drift is corrected");
    assert_eq!(put.properties.image.unwrap().is_active, Some(true));
    // A registration changed in the spec reaches it too, though the failed version is held.
    respec(&mut sim, |p| {
        p.spec.registration = crate::resources::Registration::LogonBlocking
    });
    sim.run(20);
    let v = sim.view();
    let held = v.packages.iter().find(|p| p.name == "ns-app").unwrap();
    let image = held.package.properties.image.as_ref().unwrap();
    assert_eq!(image.is_regular_registration, Some(true));
    assert_eq!(image.is_active, Some(true));
}

/// Found by the generated sequences (seed 1018, `inactive-1,fail-host,good`): a new
/// version of an Inactive package waited for ever, saying "waiting for 2 of 2 session
/// host(s) to report staging": hosts do not stage an inactive package (the seed: it is
/// ignored). The rollout is held at its ring saying why and what to do, and goes on once
/// the package is Active.
#[test]
fn a_rollout_of_an_inactive_package_is_held_saying_why_and_goes_on_once_active() {
    let inactive = |p: &mut crate::resources::AppAttachPackage| {
        p.spec.state = crate::resources::PackageState::Inactive
    };
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, inactive);
    sim.run(20);
    // The simulated hosts, like the service's, do not stage an inactive package.
    sim.stages = Arc::new(|_: &str, _: &str| true);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let ds = sim.run(60);
    let r = sim.obs.package.status.clone().unwrap().rollout.unwrap();
    assert_eq!(r.phase, RolloutPhase::Held, "{r:?}");
    let message = r.message.unwrap_or_default();
    assert!(
        message.contains("Inactive") && message.contains("spec.state Active"),
        "{message}"
    );
    assert_eq!(condition(&sim, "Ready").unwrap().1, "RolloutHeld");
    assert!(
        ds[ds.len() - 10..].iter().all(|d| d.writes.is_empty()),
        "a held rollout writes nothing while it waits"
    );
    respec(&mut sim, |p| {
        p.spec.state = crate::resources::PackageState::Active
    });
    sim.run(200);
    assert!(everywhere(&sim, "2.0.0.0"), "{:?}", versions(&sim));
    assert!(ready(&sim));
}

/// The message of a condition.
fn condition_message(sim: &crate::controller::decide::simulate::Sim, type_: &str) -> String {
    let st = sim.obs.package.status.as_ref().unwrap();
    let c = st.conditions.iter().find(|c| c.type_ == type_).unwrap();
    c.message.clone()
}

/// Found by the generated sequences (`missing,recreate`): a package made again after its
/// backend was removed places its version everywhere at once (a first version has no
/// rollout, so no gate), and when no host can stage that image the status said Ready with
/// "no warnings". What the hosts report of the version their pool runs is said.
#[test]
fn a_first_version_no_host_can_stage_is_degraded_naming_the_hosts_and_the_image() {
    let mut sim = estate(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    sim.stages = Arc::new(|_: &str, image: &str| !image.contains("1.0.0.0"));
    sim.run(20);
    assert!(ready(&sim), "the backend matches the spec");
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("True".into(), "StagingFailed".into()))
    );
    let message = condition_message(&sim, "Degraded");
    for host in ["hp-r0-0", "hp-r0-1", "hp-r1-0", "hp-r2-0"] {
        assert!(message.contains(host), "{message}");
    }
    assert!(message.contains("4 of 4 session host(s)"), "{message}");
    assert!(message.contains(&image("1.0.0.0")), "{message}");
}

/// A host that begins failing the version its pool runs is reported, and the report
/// clears once it stages; a host shut down (its last report stale) is not judged, and a
/// failure naming another image (a version the pool no longer runs) says nothing of this
/// one.
#[test]
fn a_host_failing_the_running_version_is_reported_until_it_stages_it() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("False".into(), "NoWarnings".into()))
    );
    let report = |failed: Option<&str>, status: &str| {
        let check = match failed {
            Some(image) => json!({"healthCheckName": "AppAttachHealthCheck",
                "healthCheckResult": "HealthCheckFailed",
                "additionalFailureDetails": {"message": format!("cannot stage {image}: 0x80070005 Access is denied"),
                                             "lastHealthCheckDateTime": "2026-01-01T00:00:00Z"}}),
            None => json!({"healthCheckName": "AppAttachHealthCheck",
                "healthCheckResult": "HealthCheckSucceeded",
                "additionalFailureDetails": {"lastHealthCheckDateTime": "2026-01-01T00:00:00Z"}}),
        };
        (check, status.to_string())
    };
    let set = |sim: &mut crate::controller::decide::simulate::Sim,
               (check, status): (serde_json::Value, String)| {
        let v = sim.obs.backend.as_mut().unwrap();
        let host = &mut v
            .pools
            .iter_mut()
            .find(|p| p.name == "hp-r1")
            .unwrap()
            .hosts[0];
        host.properties.session_host_health_check_results =
            Some(vec![serde_json::from_value(check).unwrap()]);
        host.properties.status = Some(status);
    };
    let one = image("1.0.0.0");
    set(&mut sim, report(Some(&one), "Available"));
    sim.pass();
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("True".into(), "StagingFailed".into()))
    );
    let message = condition_message(&sim, "Degraded");
    assert!(
        message.contains("hp-r1-0 (hp-r1)") && message.contains("Access is denied"),
        "{message}"
    );
    assert!(message.contains("1 of 4"), "{message}");
    assert!(ready(&sim), "Ready is the backend matching the spec");

    set(&mut sim, report(Some(&one), "Shutdown"));
    sim.pass();
    assert_eq!(condition(&sim, "Degraded").unwrap().1, "NoWarnings");

    set(&mut sim, report(Some(&image("0.9.0.0")), "Available"));
    sim.pass();
    assert_eq!(condition(&sim, "Degraded").unwrap().1, "NoWarnings");

    set(&mut sim, report(Some(&one), "Available"));
    sim.pass();
    assert_eq!(condition(&sim, "Degraded").unwrap().1, "StagingFailed");
    set(&mut sim, report(None, "Available"));
    sim.pass();
    assert_eq!(condition(&sim, "Degraded").unwrap().1, "NoWarnings");
}

/// Seeds 3001 and 3044 (`... inactive-1, good`, and a package made again Inactive): the
/// hold above waited only while hosts had not reported. But a host whose last active
/// package becomes inactive reports again, a success that says nothing of the new
/// version (it stages no inactive package), and the gate took it for staging: the
/// version went on to the next rings unstaged. An Inactive package's rollout holds at
/// the gate whatever the hosts say.
#[test]
fn a_rollout_of_a_package_made_inactive_with_it_holds_even_when_hosts_report_success() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| {
        to_version(p, "2.0.0.0");
        p.spec.state = crate::resources::PackageState::Inactive;
    });
    sim.run(60);
    let r = sim.obs.package.status.clone().unwrap().rollout.unwrap();
    assert_eq!(r.phase, RolloutPhase::Held, "{r:?}");
    let on = versions(&sim);
    assert!(
        on.iter()
            .filter(|(p, _)| p != "hp-r0")
            .all(|(_, v)| v.as_deref() == Some("1.0.0.0")),
        "no ring after the first gets a version no host staged: {on:?}"
    );
    respec(&mut sim, |p| {
        p.spec.state = crate::resources::PackageState::Active
    });
    sim.run(200);
    assert!(everywhere(&sim, "2.0.0.0"), "{:?}", versions(&sim));
}

/// Seed 10020, shrunk to `missing,invalid,undo,invalid`: once a failed rollout had
/// rolled back, a spec that went back to the version every pool runs (`rollout undo`)
/// stayed `Ready=False RolloutFailed`: the failure of the old spec was taken for the
/// verdict on the new one. The spec's version runs everywhere, so it is Ready; the
/// failure stays in the history.
#[test]
fn a_spec_back_on_the_running_version_after_a_failed_rollout_is_ready() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    sim.stages = Arc::new(|_: &str, image: &str| !image.contains("2.0.0.0"));
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    sim.run(200);
    let r = sim.obs.package.status.clone().unwrap().rollout.unwrap();
    assert_eq!(r.phase, RolloutPhase::Failed, "{r:?}");
    assert_eq!(condition(&sim, "Ready").unwrap().1, "RolloutFailed");
    respec(&mut sim, |p| to_version(p, "1.0.0.0"));
    let ds = sim.run(20);
    assert!(
        ds.iter().all(|d| d.writes.is_empty()),
        "1.0.0.0 runs everywhere already"
    );
    assert!(
        ready(&sim),
        "{:?}",
        sim.obs.package.status.as_ref().unwrap().conditions
    );
    let st = sim.obs.package.status.clone().unwrap();
    assert_eq!(st.target_version, None, "no rollout targets anything");
    assert!(
        st.history
            .iter()
            .any(|h| h.result == RolloutResult::Failed && h.version == "2.0.0.0"),
        "{:?}",
        st.history
    );
}

/// Seeds 10130 and 10179: a package made again placed its first version on pools whose
/// hosts already reported they cannot stage that image (a host failing every image), and
/// the pass judged the hosts by the pools as they were before its writes (running
/// nothing): no warning, and nothing changed after to wake it. The hosts are judged
/// against what the pools run once the pass's writes are done.
#[test]
fn the_pass_that_places_a_first_version_says_what_the_hosts_report_of_it() {
    let mut sim = estate(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    let failed = json!({"healthCheckName": "AppAttachHealthCheck",
        "healthCheckResult": "HealthCheckFailed",
        "additionalFailureDetails": {"message": format!("cannot stage {}: 0x80070005 Access is denied", image("1.0.0.0")),
                                     "lastHealthCheckDateTime": "2026-01-01T00:00:00Z"}});
    let v = sim.obs.backend.as_mut().unwrap();
    let host = &mut v
        .pools
        .iter_mut()
        .find(|p| p.name == "hp-r0")
        .unwrap()
        .hosts[1];
    host.properties.session_host_health_check_results =
        Some(vec![serde_json::from_value(failed).unwrap()]);
    let d = sim.decide();
    assert!(!d.writes.is_empty(), "the first version is placed");
    let degraded = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "StagingFailed", "{degraded:?}");
    assert!(degraded.message.contains("hp-r0-1 (hp-r0)"), "{degraded:?}");
}

/// The Ready condition a decision gives.
fn ready_of(
    d: &super::super::Decision,
) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    d.status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
}

/// Seed 10047 (throttles and kills around three version changes): a pass that could
/// not read the backend kept the Ready=True of the last spec it compared and stamped it
/// with the new generation, so the status said "matches the spec" at 1.0.0.0 for a spec
/// at 4.0.0.0 with no rollout, and kstatus, Flux and the sequences took it as done. A
/// suspended package did the same. A verdict on an older spec is Unknown for a new one.
#[test]
fn a_pass_that_cannot_read_the_backend_does_not_call_a_new_spec_ready() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    // The same spec, the backend unreadable: what was known stays.
    let d = crate::controller::decide::unobserved(
        &sim.obs,
        &BackendError::Throttled(std::time::Duration::from_secs(1)),
    );
    let ready = ready_of(&d);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Reconciled")
    );

    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let d = crate::controller::decide::unobserved(
        &sim.obs,
        &BackendError::Throttled(std::time::Duration::from_secs(1)),
    );
    let ready = ready_of(&d);
    assert_eq!(ready.status, "Unknown", "{ready:?}");
    assert_eq!(ready.reason, "BackendThrottled");
    assert!(ready.message.contains("generation 2"), "{ready:?}");
    assert_eq!(ready.observed_generation, Some(2));

    respec(&mut sim, |p| p.spec.suspend = true);
    let d = sim.decide();
    let ready = ready_of(&d);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("Unknown", "Suspended"),
        "{ready:?}"
    );
}

/// Seed 20250 (`..., good, pause, ..., policy-skip, good, good, fail, recreate`): the
/// package was made again while a rollout was half done (2.0.0.0 on rings 0 and 1, 1.0.0.0
/// on ring 2). The new object, with no record of it, took the version most pools ran for
/// the one to fall back to; its rollout of a version that failed at ring 0 then rolled
/// every pool back to 2.0.0.0, giving ring 2 a version whose gate it never passed. A
/// rollback goes back to the version the highest ring runs.
#[test]
fn a_rollback_after_a_superseded_rollout_gives_no_pool_a_version_its_rings_did_not_pass() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    sim.stages = Arc::new(|_: &str, image: &str| !image.contains("3.0.0.0"));
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let mut ds = vec![];
    // 2.0.0.0 until it runs on ring 1, not ring 2.
    for _ in 0..200 {
        ds.push(sim.pass());
        let on = versions(&sim);
        if on
            .iter()
            .any(|(p, v)| p == "hp-r1" && v.as_deref() == Some("2.0.0.0"))
        {
            break;
        }
    }
    assert!(
        versions(&sim)
            .iter()
            .any(|(p, v)| p == "hp-r2" && v.as_deref() == Some("1.0.0.0")),
        "{:?}",
        versions(&sim)
    );
    // The package deleted with its backend left (policy skip or detach-on-delete) and
    // made again at 3.0.0.0: a new object, with no record of the rollout it interrupted.
    respec(&mut sim, |p| {
        to_version(p, "3.0.0.0");
        p.status = None;
    });
    ds.extend(sim.run(300));
    let ws = writes(&ds);
    for refs in switches(&ws, "2.0.0.0") {
        assert!(
            !refs.contains(&"hp-r2".to_string()),
            "2.0.0.0 reached hp-r2 without passing ring 2's turn: {:?}",
            switches(&ws, "2.0.0.0")
        );
    }
    assert!(everywhere(&sim, "1.0.0.0"), "{:?}", versions(&sim));
}

/// Seed 31614 of the long campaign: one pass both switched hp-r0 to the new version and
/// gave the old version a newly assigned pool. The old version's write (one pool more,
/// hp-r0 less) counted as one that "grows", and went before the new version's: hp-r0
/// ran nothing in between. A version that gains and loses pools in one pass first gains
/// them (the pools it loses kept), and loses them after the other versions took them.
#[test]
fn a_version_that_gains_and_loses_pools_in_one_pass_leaves_no_pool_without_a_version() {
    let mut sim = steady(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    // The rollout of 2.0.0.0 recorded; hp-x joins in ring 1 before ring 0 switches.
    let recorded = sim.pass();
    assert!(recorded.writes.is_empty(), "{:?}", recorded.writes);
    let mut rings = RINGS.to_vec();
    rings.push(("hp-x", 1));
    {
        let v = sim.obs.backend.as_mut().unwrap();
        v.pools.push(pool("hp-x", 1, 1));
        v.app_groups.push(group(
            "hp-x-desktop",
            "hp-x",
            crate::arm::models::ApplicationGroupType::Desktop,
            &[FINANCE],
        ));
    }
    sim.obs.inputs.host_pool_assignments = vec![Arc::new(hpa(&rings))];
    for _ in 0..200 {
        let before = sim.view().clone();
        let d = sim.pass();
        // The pass's writes, one at a time, as the backend takes them.
        let mut v = before;
        let mut had = held(&v, crate::resources::PackageMode::AppAttach);
        for w in &d.writes {
            crate::controller::decide::apply_write(&mut v, &scope(), w);
            let now = held(&v, crate::resources::PackageMode::AppAttach);
            for (pool, versions) in &now {
                assert!(
                    !(versions.is_empty() && had.get(pool).is_some_and(|h| !h.is_empty())),
                    "{pool} left without a version by {w:?} in {:?}",
                    d.writes
                );
            }
            had = now;
        }
        if everywhere(&sim, "2.0.0.0") {
            break;
        }
    }
    assert!(everywhere(&sim, "2.0.0.0"), "{:?}", versions(&sim));
}
