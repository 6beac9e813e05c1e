//! RemoteApp publishing and "Ready means reachable", with no server: the seed's rule that
//! a user who signs in through a RemoteApp group gets an app attach application only once
//! it is added to that group.

use std::sync::Arc;

use serde_json::json;

use super::super::Write;
use super::drive;
use super::fixtures::*;
use crate::arm::models::{Application, ApplicationGroupType};
use crate::backend::snapshot::{application_name, application_owner};
use crate::domain::naming;
use crate::resources::HostPoolAssignment;

const REMOTE: &str = "ag-r1-remote";

/// The estate of the ring tests, with Bob (no group) signing in to hp-r1 through a
/// RemoteApp group only, and assigned the package beside Finance.
fn bob_estate() -> super::super::simulate::Sim {
    let mut sim = estate(package("1.0.0.0", json!({"soak": "1s"})), &RINGS);
    let v = sim.obs.backend.as_mut().unwrap();
    v.app_groups.push(group(
        REMOTE,
        "hp-r1",
        ApplicationGroupType::RemoteApp,
        &[BOB],
    ));
    sim.obs.inputs.user_assignments = vec![Arc::new(users(&[
        ("Group", "Finance", FINANCE),
        ("User", "bob@contoso.com", BOB),
    ]))];
    sim
}

/// The ring pools, with `groups` (JSON `remoteAppGroups`) on hp-r1.
fn assignment(groups: serde_json::Value) -> HostPoolAssignment {
    serde_json::from_value(json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": "app-pools", "namespace": NS, "generation": 2},
        "spec": {"packageRef": {"name": "app"}, "hostPools": [
            {"name": "hp-r0", "ring": 0},
            {"name": "hp-r1", "ring": 1, "remoteAppGroups": groups},
            {"name": "hp-r2", "ring": 2},
        ]}
    }))
    .unwrap()
}

fn publish(sim: &mut super::super::simulate::Sim, groups: serde_json::Value) {
    sim.obs.inputs.host_pool_assignments = vec![Arc::new(assignment(groups))];
}

/// The applications of a group in the backend.
fn apps(sim: &super::super::simulate::Sim, name: &str) -> Vec<Application> {
    sim.view()
        .app_groups
        .iter()
        .find(|g| g.name() == name)
        .map(|g| g.applications.clone())
        .unwrap_or_default()
}

/// A condition's status, reason and message.
fn condition_of(sim: &super::super::simulate::Sim, type_: &str) -> (String, String, String) {
    let c = sim
        .obs
        .package
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn degraded(sim: &super::super::simulate::Sim) -> (String, String, String) {
    condition_of(sim, "Degraded")
}

fn reached(sim: &super::super::simulate::Sim) -> Option<i32> {
    sim.obs.package.status.as_ref()?.reached_principal_count
}

#[test]
fn a_user_reaching_a_pool_only_through_a_remote_app_group_is_reported_until_published() {
    let mut sim = bob_estate();
    sim.run(20);
    assert!(ready(&sim));
    let (status, reason, message) = degraded(&sim);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PrincipalNotReached")
    );
    for needed in [
        "bob@contoso.com",
        "hp-r1",
        REMOTE,
        "not published",
        "remoteAppGroups",
    ] {
        assert!(message.contains(needed), "{needed} missing from: {message}");
    }
    assert_eq!(reached(&sim), Some(1), "Finance gets it, Bob does not");
    let warned = sim.decide();
    assert!(warned.writes.is_empty());

    publish(&mut sim, json!([{"name": REMOTE}]));
    let ds = sim.run(20);
    let published = apps(&sim, REMOTE);
    assert_eq!(published.len(), 1, "{published:?}");
    let app = &published[0];
    assert_eq!(
        application_name(app),
        naming::application_name("ns/app", "App")
    );
    assert_eq!(application_owner(app), Some("ns/app"));
    let p = &app.properties;
    assert_eq!(
        p.msix_package_family_name.as_deref(),
        Some(crate::domain::naming::family_name("Contoso.App", "CN=Contoso").as_str())
    );
    assert_eq!(p.msix_package_application_id.as_deref(), Some("App"));
    assert_eq!(degraded(&sim).0, "False");
    assert_eq!(reached(&sim), Some(2));
    assert!(
        ds.last().unwrap().writes.is_empty(),
        "a steady pass writes nothing"
    );
    let row = sim.obs.package.status.as_ref().unwrap();
    assert_eq!(row.principal_count, Some(2));

    // Unpublished again: the application goes and Bob is reported again.
    publish(&mut sim, json!([]));
    let ds = sim.run(20);
    assert!(
        writes(&ds)
            .iter()
            .any(|w| matches!(w, Write::DeleteApplication { .. }))
    );
    assert!(apps(&sim, REMOTE).is_empty());
    assert_eq!(degraded(&sim).1, "PrincipalNotReached");
}

#[test]
fn chosen_applications_get_their_display_name_and_icon() {
    let mut sim = bob_estate();
    publish(
        &mut sim,
        json!([{"name": REMOTE, "applications": [
            {"id": "App", "displayName": "Contoso App", "iconPath": "C:\\icons\\app.ico", "iconIndex": 2}
        ]}]),
    );
    sim.run(20);
    let published = apps(&sim, REMOTE);
    assert_eq!(published.len(), 1);
    let p = &published[0].properties;
    assert_eq!(p.friendly_name.as_deref(), Some("Contoso App"));
    assert_eq!(p.icon_path.as_deref(), Some("C:\\icons\\app.ico"));
    assert_eq!(p.icon_index, Some(2));
    // A new display name is a change in place, not a new application.
    publish(
        &mut sim,
        json!([{"name": REMOTE, "applications": [{"id": "App", "displayName": "Renamed"}]}]),
    );
    let ds = sim.run(20);
    let ws = writes(&ds);
    assert!(
        !ws.iter()
            .any(|w| matches!(w, Write::DeleteApplication { .. })),
        "{ws:?}"
    );
    assert_eq!(
        apps(&sim, REMOTE)[0].properties.friendly_name.as_deref(),
        Some("Renamed")
    );
}

#[test]
fn a_rollout_keeps_the_published_application_on_every_pool_at_every_step() {
    let mut sim = bob_estate();
    publish(&mut sim, json!([{"name": REMOTE}]));
    sim.run(20);
    assert_eq!(degraded(&sim).0, "False");
    respec(&mut sim, |p| to_version(p, "2.0.0.0"));
    let (ds, applied) = drive(&mut sim, 200, |_, _| None);
    assert!(everywhere_on(&sim, "2.0.0.0"), "{:?}", versions(&sim));
    // The family and application id do not change with the version: the application
    // stays as it is through every ring.
    assert!(
        !applied.iter().any(|w| matches!(
            w,
            Write::DeleteApplication { .. } | Write::PutApplication { .. }
        )),
        "{applied:?}"
    );
    for d in &ds {
        assert_eq!(d.status.reached_principal_count, Some(2), "{:?}", d.status);
    }
    assert_eq!(apps(&sim, REMOTE).len(), 1);
}

fn everywhere_on(sim: &super::super::simulate::Sim, version: &str) -> bool {
    versions(sim)
        .iter()
        .all(|(_, v)| v.as_deref() == Some(version))
}

#[test]
fn applications_made_elsewhere_are_never_touched() {
    let mut sim = bob_estate();
    let family = crate::domain::naming::family_name("Contoso.App", "CN=Contoso");
    let theirs: Application = serde_json::from_value(json!({
        "name": format!("{REMOTE}/Hand made"),
        "properties": {"commandLineSetting": "DoNotAllow", "applicationType": "MsixApplication",
                       "msixPackageFamilyName": family, "msixPackageApplicationId": "App",
                       "description": "published by hand"}
    }))
    .unwrap();
    let other: Application = serde_json::from_value(json!({
        "name": format!("{REMOTE}/notepad"),
        "properties": {"commandLineSetting": "Allow", "applicationType": "InBuilt",
                       "filePath": "C:\\Windows\\notepad.exe"}
    }))
    .unwrap();
    let v = sim.obs.backend.as_mut().unwrap();
    let g = v
        .app_groups
        .iter_mut()
        .find(|g| g.name() == REMOTE)
        .unwrap();
    g.applications = vec![theirs.clone(), other.clone()];
    publish(&mut sim, json!([{"name": REMOTE}]));
    let ds = sim.run(20);
    // The application is published already (by hand): none of ours is added beside it,
    // and Bob gets the package.
    assert!(writes(&ds).iter().all(|w| !matches!(
        w,
        Write::PutApplication { .. } | Write::DeleteApplication { .. }
    )));
    assert_eq!(apps(&sim, REMOTE), vec![theirs.clone(), other.clone()]);
    assert_eq!(degraded(&sim).0, "False");
    // Unassigning and deleting leave them too.
    publish(&mut sim, json!([]));
    sim.run(20);
    let cleanup = crate::controller::decide::cleanup(&sim.obs, &settings());
    assert!(
        cleanup
            .writes
            .iter()
            .all(|w| !matches!(w, Write::DeleteApplication { .. }))
    );
    assert_eq!(apps(&sim, REMOTE), vec![theirs, other]);
}

#[test]
fn deleting_the_package_removes_its_applications_first() {
    let mut sim = bob_estate();
    publish(&mut sim, json!([{"name": REMOTE}]));
    sim.run(20);
    let d = crate::controller::decide::cleanup(&sim.obs, &settings());
    let first_package = d
        .writes
        .iter()
        .position(|w| matches!(w, Write::DeletePackage { .. }))
        .unwrap();
    let app = d
        .writes
        .iter()
        .position(|w| matches!(w, Write::DeleteApplication { .. }))
        .expect("the application is removed");
    assert!(app < first_package, "{:?}", d.writes);
}

#[test]
fn a_misnamed_group_or_application_is_refused_with_the_field_and_the_fix() {
    let cases = [
        (
            json!([{"name": "ag-nowhere"}]),
            "ApplicationGroupNotFound",
            "remoteAppGroups[0].name",
        ),
        (
            json!([{"name": "hp-r1-desktop"}]),
            "ApplicationGroupNotRemoteApp",
            "Desktop application group",
        ),
        (
            json!([{"name": REMOTE, "applications": [{"id": "Nope"}]}]),
            "ApplicationNotInPackage",
            "applications[0].id",
        ),
    ];
    for (groups, reason, needed) in cases {
        let mut sim = bob_estate();
        publish(&mut sim, groups);
        let d = sim.pass();
        assert!(d.writes.is_empty(), "{reason}: {:?}", d.writes);
        let (status, why) = condition(&sim, "Ready").unwrap();
        assert_eq!((status.as_str(), why.as_str()), ("False", reason));
        let message = &sim.obs.package.status.as_ref().unwrap().conditions[0].message;
        assert!(message.contains(needed), "{needed} missing from {message}");
    }
    // A RemoteApp group of another host pool.
    let mut sim = bob_estate();
    let v = sim.obs.backend.as_mut().unwrap();
    v.app_groups.push(group(
        "ag-r2-remote",
        "hp-r2",
        ApplicationGroupType::RemoteApp,
        &[],
    ));
    publish(&mut sim, json!([{"name": "ag-r2-remote"}]));
    sim.pass();
    assert_eq!(
        condition(&sim, "Ready").unwrap().1,
        "ApplicationGroupOfAnotherHostPool"
    );
}

#[test]
fn a_principal_who_can_sign_in_nowhere_is_named_with_the_pools() {
    let mut sim = bob_estate();
    let carol = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b";
    sim.obs.inputs.user_assignments = vec![Arc::new(users(&[
        ("Group", "Finance", FINANCE),
        ("User", "carol@contoso.com", carol),
    ]))];
    sim.run(20);
    let (status, reason, message) = degraded(&sim);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PrincipalNotReached")
    );
    assert!(message.contains("carol@contoso.com"), "{message}");
    assert!(message.contains("hp-r0: cannot sign in"), "{message}");
    assert_eq!(reached(&sim), Some(1));
}

#[test]
fn without_a_directory_membership_through_groups_is_unknown_not_reported() {
    let mut sim = bob_estate();
    sim.obs.backend.as_mut().unwrap().directory = None;
    // Alice is assigned directly, and signs in through Finance: without a directory the
    // controller cannot tell, and says so rather than warn.
    sim.obs.inputs.user_assignments = vec![Arc::new(users(&[("User", "alice", ALICE)]))];
    sim.run(20);
    assert_eq!(degraded(&sim).0, "False");
    assert_eq!(reached(&sim), Some(0));
    let ready = condition_of(&sim, "Ready").2;
    assert!(ready.contains("1 not known"), "{ready}");
}

#[test]
fn msix_app_attach_publishes_the_package_of_the_pool_too() {
    let mut sim = estate(msix_package("1.0.0.0", json!({})), &RINGS);
    let v = sim.obs.backend.as_mut().unwrap();
    v.app_groups.push(group(
        REMOTE,
        "hp-r1",
        ApplicationGroupType::RemoteApp,
        &[BOB],
    ));
    publish(&mut sim, json!([{"name": REMOTE}]));
    sim.run(20);
    let published = apps(&sim, REMOTE);
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        published[0].properties.msix_package_family_name.as_deref(),
        Some(crate::domain::naming::family_name("Contoso.App", "CN=Contoso").as_str())
    );
    let hpa = sim.decide().assignments;
    let rows = hpa
        .iter()
        .find_map(|a| match a {
            crate::controller::decide::AssignmentStatus::HostPools(_, st) => Some(st.clone()),
            _ => None,
        })
        .unwrap();
    let r1 = rows.host_pools.iter().find(|r| r.name == "hp-r1").unwrap();
    assert_eq!(r1.published_applications, Some(1));
}

#[test]
fn an_application_on_another_family_is_made_again_not_changed_in_place() {
    // The service sets family name and application id at creation only: a pool whose
    // version has another family (or an application changed behind our back) gets its
    // application deleted and created again, in that order.
    let mut sim = bob_estate();
    publish(&mut sim, json!([{"name": REMOTE}]));
    sim.run(20);
    let v = sim.obs.backend.as_mut().unwrap();
    let g = v
        .app_groups
        .iter_mut()
        .find(|g| g.name() == REMOTE)
        .unwrap();
    g.applications[0].properties.msix_package_family_name = Some("Contoso.Old_abc".into());
    let d = sim.pass();
    let name = naming::application_name("ns/app", "App");
    let kinds: Vec<(&str, &str)> = d
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::DeleteApplication { name, .. } => Some(("delete", name.as_str())),
            Write::PutApplication { name, .. } => Some(("put", name.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![("delete", name.as_str()), ("put", name.as_str())]
    );
    assert_eq!(
        apps(&sim, REMOTE)[0]
            .properties
            .msix_package_family_name
            .as_deref(),
        Some(crate::domain::naming::family_name("Contoso.App", "CN=Contoso").as_str())
    );
}
