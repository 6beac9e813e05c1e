//! The seed's RemoteApp rule end to end: a user who reaches a host pool only through a
//! RemoteApp application group gets the app once it is published there, keeps it through
//! a rollout, loses it when it is unpublished, and is reported while they get nothing.

use serde_json::{Value, json};

use crate::harness::*;
use crate::rollout_support::{at, manifest, put_image, wait_rollout};

fn world() -> appattach_operator::emulator::World {
    serde_yaml_ng::from_str(&format!(
        r#"
subscription: {SUB}
resourceGroup: {RG}
hostPools:
  - {{name: hp-r0, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r0-0, os: Windows11}}]}}
  - {{name: hp-r1, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r1-0, os: Windows11}}]}}
  - {{name: hp-r2, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r2-0, os: Windows11}}]}}
applicationGroups:
  - {{name: ag-r0, hostPool: hp-r0, type: Desktop, members: [Finance]}}
  - {{name: ag-r1-remote, hostPool: hp-r1, type: RemoteApp, members: [Designers]}}
  - {{name: ag-r2, hostPool: hp-r2, type: Desktop, members: [Finance]}}
directory:
  groups: [{{name: Finance, objectId: {FINANCE}}}, {{name: Designers, objectId: {DESIGNERS}}}]
  users:
    - {{upn: alice@contoso.com, objectId: 3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f, groups: [Finance]}}
    - {{upn: dave@contoso.com, objectId: 5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b, groups: [Designers]}}
"#
    ))
    .unwrap()
}

fn ring_pools(remote: Value) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": "design-pools"},
        "spec": {"packageRef": {"name": "design"}, "hostPools": [
            {"name": "hp-r0", "ring": 0},
            {"name": "hp-r1", "ring": 1, "remoteAppGroups": remote},
            {"name": "hp-r2", "ring": 2},
        ]}
    })
}

/// The versions Dave gets at sign-in to hp-r1.
async fn dave_gets(env: &Env) -> Vec<String> {
    env.signin("dave@contoso.com", "hp-r1").await["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["version"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until the package reports a principal who gets it nowhere.
async fn not_reached(env: &Env) -> Value {
    env.wait_condition(
        "AppAttachPackage",
        "design",
        "Degraded",
        "True",
        Some("PrincipalNotReached"),
    )
    .await
}

async fn applications(env: &Env) -> Vec<Value> {
    let (code, body) = env
        .get(&format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization/applicationGroups/ag-r1-remote/applications"
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    body["value"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_app_user_gets_the_app_once_published_keeps_it_through_a_rollout_and_loses_it_unpublished()
 {
    let env = Env::staging_with_world("remote_app", world()).await;
    put_image(&env, "design", "1.0.0.0");
    env.ns
        .apply(&manifest("design", "1.0.0.0", json!({"soak": "1s"})))
        .await
        .unwrap();
    env.ns.apply(&ring_pools(json!([]))).await.unwrap();
    let principals = [
        ("Group", "Finance", Some(FINANCE)),
        ("Group", "Designers", Some(DESIGNERS)),
    ];
    env.ns
        .apply(&users("design-users", "design", &principals))
        .await
        .unwrap();
    env.wait_package("design", 3, 2).await;

    // Designers sign in to hp-r1 through its RemoteApp group only: nothing is published.
    let obj = not_reached(&env).await;
    let message = obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()["message"]
        .to_string();
    for needed in ["Designers", "hp-r1", "ag-r1-remote", "not published"] {
        assert!(message.contains(needed), "{needed} missing: {message}");
    }
    assert_eq!(obj["status"]["reachedPrincipalCount"], 1);
    env.wait_warning("design", "PrincipalNotReached").await;
    assert!(dave_gets(&env).await.is_empty());

    // Published: Dave gets it, and nobody is reported.
    env.ns
        .apply(&ring_pools(json!([{"name": "ag-r1-remote"}])))
        .await
        .unwrap();
    let obj = env
        .wait_condition("AppAttachPackage", "design", "Degraded", "False", None)
        .await;
    assert_eq!(obj["status"]["reachedPrincipalCount"], 2);
    assert_eq!(dave_gets(&env).await, vec!["1.0.0.0".to_string()]);
    let apps = applications(&env).await;
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["properties"]["msixPackageApplicationId"], "App");
    assert_eq!(
        apps[0]["properties"]["description"],
        format!("appattach.io/owner={}/design", env.ns.name)
    );
    let hpa = env.wait_ready("HostPoolAssignment", "design-pools").await;
    let r1 = hpa["status"]["hostPools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "hp-r1")
        .cloned()
        .unwrap();
    assert_eq!(r1["publishedApplications"], 1, "{r1}");

    // A rollout: at every moment we look, Dave gets a version on hp-r1.
    put_image(&env, "design", "2.0.0.0");
    let v2 = manifest("design", "2.0.0.0", json!({"soak": "1s"}));
    env.ns.apply(&v2).await.unwrap();
    poll(
        "the rollout to 2.0.0.0 completes, Dave getting the app throughout",
        || async {
            let got = dave_gets(&env).await;
            assert_eq!(
                got.len(),
                1,
                "Dave lost the app during the rollout: {got:?}"
            );
            let st = crate::rollout_support::status(&env, "design").await;
            if at(&st["rollout"], "Complete") && st["currentVersion"] == "2.0.0.0" {
                Ok(got)
            } else {
                Err(format!("rollout {}", st["rollout"]))
            }
        },
    )
    .await;
    wait_rollout(&env, "design", "complete", |r| at(r, "Complete")).await;
    assert_eq!(dave_gets(&env).await, vec!["2.0.0.0".to_string()]);
    assert_eq!(applications(&env).await.len(), 1);

    // Unpublished: the application goes, Dave loses the app and is reported again.
    env.ns.apply(&ring_pools(json!([]))).await.unwrap();
    not_reached(&env).await;
    assert!(applications(&env).await.is_empty());
    assert!(dave_gets(&env).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_is_not_a_remote_app_group_of_the_pool_is_refused() {
    let env = Env::with_world(
        "remote_app_bad",
        std::time::Duration::from_secs(600),
        world(),
    )
    .await;
    env.ns.apply(&package("design")).await.unwrap();
    env.ns
        .apply(&ring_pools(json!([{"name": "ag-r0"}])))
        .await
        .unwrap();
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "design",
            "Ready",
            "False",
            Some("ApplicationGroupNotRemoteApp"),
        )
        .await;
    let msg = obj["status"]["conditions"][0]["message"].to_string();
    assert!(msg.contains("remoteAppGroups[0].name"), "{msg}");
    // Nothing was written.
    let (code, _) = env.get(&env.package_path("design")).await;
    assert_eq!(code, 404);
}
