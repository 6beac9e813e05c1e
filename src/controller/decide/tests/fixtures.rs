//! Estates to decide on, with no server: a package, its assignments, and a backend view
//! with host pools, session hosts and user sessions, moved pass by pass by the simulator.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::super::simulate::Sim;
use super::super::{Decision, Settings, Write};
use crate::arm::Scope;
use crate::controller::observe::{BackendView, GroupView, Inputs, Observation, PoolView};
use crate::domain::directory::Directory;
use std::collections::{BTreeMap, BTreeSet};

use crate::resources::{AppAttachPackage, HostPoolAssignment, PackageMode, UserAssignment};

pub const NS: &str = "ns";
pub const FINANCE: &str = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";
pub const ALICE: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
pub const BOB: &str = "4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a";

pub fn scope() -> Scope {
    Scope {
        subscription: "00000000-0000-0000-0000-000000000000".into(),
        resource_group: "rg".into(),
    }
}

pub fn t0() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

pub fn image(version: &str) -> String {
    format!(r"\\fs\apps\app_{version}.vhdx")
}

/// The package `app` at `version`, in app attach mode with these rollout settings.
pub fn package(version: &str, rollout: Value) -> AppAttachPackage {
    serde_json::from_value(json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "AppAttachPackage",
        "metadata": {"name": "app", "namespace": NS, "generation": 1,
                     "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "location": "westeurope",
            "image": {"path": image(version)},
            "package": {"type": "Msix", "name": "Contoso.App", "publisher": "CN=Contoso",
                        "version": version, "applications": [{"id": "App"}]},
            "rollout": rollout,
        }
    }))
    .unwrap()
}

pub fn msix_package(version: &str, rollout: Value) -> AppAttachPackage {
    let mut p = package(version, rollout);
    p.spec.mode = crate::resources::PackageMode::MsixAppAttach;
    p
}

pub fn hpa(pools: &[(&str, i32)]) -> HostPoolAssignment {
    let pools: Vec<Value> = pools
        .iter()
        .map(|(n, r)| json!({"name": n, "ring": r}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": "app-pools", "namespace": NS, "generation": 1},
        "spec": {"packageRef": {"name": "app"}, "hostPools": pools}
    }))
    .unwrap()
}

pub fn ua() -> UserAssignment {
    users(&[("Group", "Finance", FINANCE)])
}

/// A UserAssignment of `app` to these principals (kind, name, object id).
pub fn users(principals: &[(&str, &str, &str)]) -> UserAssignment {
    let principals: Vec<Value> = principals
        .iter()
        .map(|(k, n, o)| json!({"kind": k, "name": n, "objectId": o}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "UserAssignment",
        "metadata": {"name": "app-users", "namespace": NS, "generation": 1},
        "spec": {"packageRef": {"name": "app"}, "principals": principals}
    }))
    .unwrap()
}

/// A host pool in westeurope with `hosts` Windows 11 session hosts named `{name}-{i}`.
pub fn pool(name: &str, ring: i32, hosts: usize) -> PoolView {
    let id = scope().host_pool_id(name);
    let hosts = (0..hosts)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("{id}/sessionHosts/{name}-{i}"),
                "name": format!("{name}/{name}-{i}"),
                "properties": {"status": "Available", "osVersion": "10.0.26100",
                               "allowNewSession": true, "sessions": 0}
            }))
            .unwrap()
        })
        .collect();
    PoolView {
        name: name.into(),
        field: format!("HostPoolAssignment/app-pools spec.hostPools[{ring}].name"),
        id: id.clone(),
        ring,
        pool: serde_json::from_value(json!({
            "id": id, "name": name, "location": "westeurope",
            "tags": {"appattach.io/identity-provider": "ADDS"},
            "properties": {"hostPoolType": "Pooled", "loadBalancerType": "BreadthFirst",
                           "preferredAppGroupType": "Desktop"}
        }))
        .unwrap(),
        hosts,
        msix: vec![],
        sessions: vec![],
    }
}

/// A user session on a pool's first host, started at `at`.
pub fn session(
    pool: &PoolView,
    user: &str,
    n: usize,
    at: Timestamp,
) -> crate::arm::models::UserSession {
    let host = pool.hosts[0].id.clone().unwrap();
    serde_json::from_value(json!({
        "id": format!("{host}/userSessions/{n}"),
        "name": format!("{}/{n}", pool.name),
        "properties": {"objectId": user, "userPrincipalName": format!("{user}@contoso.com"),
                       "sessionState": "Active", "createTime": crate::controller::planner::format_time(at)}
    }))
    .unwrap()
}

pub fn directory() -> Directory {
    Directory::new([(ALICE, vec![FINANCE]), (BOB, vec![])])
}

/// The three ring pools of the tests: hp-r0 (two hosts), hp-r1, hp-r2.
pub const RINGS: [(&str, i32); 3] = [("hp-r0", 0), ("hp-r1", 1), ("hp-r2", 2)];

pub fn settings() -> Settings {
    Settings {
        rollout_poll: Duration::from_secs(5),
    }
}

/// An application group of a host pool, with these members (object ids).
pub fn group(
    name: &str,
    pool: &str,
    kind: crate::arm::models::ApplicationGroupType,
    members: &[&str],
) -> GroupView {
    GroupView {
        id: format!(
            "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.DesktopVirtualization/applicationGroups/{name}",
            scope().subscription
        ),
        pool_id: scope().host_pool_id(pool),
        kind,
        members: members.iter().map(|m| m.to_ascii_lowercase()).collect(),
        applications: vec![],
    }
}

/// An estate with `pkg` assigned to `rings` (and to Finance) and nothing in the backend;
/// Finance signs in to every pool through its Desktop application group.
pub fn estate(pkg: AppAttachPackage, rings: &[(&str, i32)]) -> Sim {
    let pools = rings
        .iter()
        .map(|(n, r)| pool(n, *r, if *r == 0 { 2 } else { 1 }))
        .collect();
    let app_groups = rings
        .iter()
        .map(|(n, _)| {
            group(
                &format!("{n}-desktop"),
                n,
                crate::arm::models::ApplicationGroupType::Desktop,
                &[FINANCE],
            )
        })
        .collect();
    let view = BackendView {
        pools,
        app_groups,
        directory: Some(std::sync::Arc::new(directory())),
        sessions_read: true,
        ..BackendView::default()
    };
    let obs = Observation {
        package: Arc::new(pkg),
        inputs: Inputs {
            host_pool_assignments: vec![Arc::new(hpa(rings))],
            user_assignments: vec![Arc::new(ua())],
            same_full_name: vec![],
            trust: None,
        },
        backend: Some(view),
        scope: scope(),
        now: t0(),
    };
    Sim::new(obs, settings())
}

/// An estate where the backend runs `pkg` on every pool already.
pub fn steady(pkg: AppAttachPackage, rings: &[(&str, i32)]) -> Sim {
    let mut sim = estate(pkg, rings);
    sim.run(20);
    assert!(ready(&sim), "not steady: {:?}", sim.obs.package.status);
    sim
}

/// Whether the package's status says Ready=True.
pub fn ready(sim: &Sim) -> bool {
    condition(sim, "Ready").is_some_and(|c| c.0 == "True")
}

/// A condition's status and reason.
pub fn condition(sim: &Sim, type_: &str) -> Option<(String, String)> {
    sim.obs
        .package
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Changes the spec as an apply would: a new generation.
pub fn respec(sim: &mut Sim, change: impl FnOnce(&mut AppAttachPackage)) {
    let mut pkg = (*sim.obs.package).clone();
    change(&mut pkg);
    pkg.metadata.generation = Some(pkg.metadata.generation.unwrap_or(1) + 1);
    sim.obs.package = Arc::new(pkg);
}

/// Sets the spec's version and its image.
pub fn to_version(pkg: &mut AppAttachPackage, version: &str) {
    pkg.spec.package.version = version.into();
    pkg.spec.image.path = image(version);
}

/// The versions each pool (by lower-case id) runs in a view.
pub fn held(v: &BackendView, mode: PackageMode) -> BTreeMap<String, BTreeSet<String>> {
    v.pools
        .iter()
        .map(|p| {
            let versions = match mode {
                PackageMode::AppAttach => v
                    .packages
                    .iter()
                    .filter(|k| {
                        k.package
                            .properties
                            .host_pool_references
                            .iter()
                            .flatten()
                            .any(|r| r.eq_ignore_ascii_case(&p.id))
                    })
                    .filter_map(|k| k.package.properties.image.as_ref()?.version.clone())
                    .collect(),
                PackageMode::MsixAppAttach => p
                    .msix
                    .iter()
                    .filter_map(|m| m.properties.version.clone())
                    .collect(),
            };
            (p.id.to_ascii_lowercase(), versions)
        })
        .collect()
}

/// The (highest) version each pool runs, by the backend, by pool name (app attach).
pub fn versions(sim: &Sim) -> Vec<(String, Option<String>)> {
    let v = sim.view();
    let by_id = held(v, PackageMode::AppAttach);
    v.pools
        .iter()
        .map(|p| {
            let runs = &by_id[&p.id.to_ascii_lowercase()];
            (p.name.clone(), runs.iter().max().cloned())
        })
        .collect()
}

/// The status rows' (pool, version) pairs.
pub fn rows(sim: &Sim) -> Vec<(String, Option<String>)> {
    sim.obs
        .package
        .status
        .iter()
        .flat_map(|s| &s.host_pools)
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

/// The pools a package write gives a backend package, by name.
pub fn refs_of(w: &Write) -> Option<(String, Vec<String>)> {
    match w {
        Write::PutPackage { name, body } => Some((
            name.clone(),
            body.properties
                .host_pool_references
                .iter()
                .flatten()
                .map(|r| r.rsplit('/').next().unwrap().to_string())
                .collect(),
        )),
        _ => None,
    }
}

/// Every write of these decisions.
pub fn writes(ds: &[Decision]) -> Vec<&Write> {
    ds.iter().flat_map(|d| &d.writes).collect()
}
