//! MSIX app attach (the legacy feature), and the rules that keep the two features and
//! duplicate packages apart on one host pool.

use std::time::Duration;

use appattach_operator::domain::naming;
use serde_json::json;

use crate::harness::*;
use crate::support::set;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msix_app_attach_adds_the_package_under_each_pool_and_removes_it_when_unassigned() {
    let env = Env::new("msix_mode", Duration::from_secs(300)).await;
    env.ns
        .apply(&set(
            package("legacy"),
            "/spec/mode",
            json!("MsixAppAttach"),
        ))
        .await
        .unwrap();
    env.ns
        .apply(&pools("legacy-pools", "legacy", &[("hp-b", 0)]))
        .await
        .unwrap();
    env.wait_package("legacy", 1, 0).await;
    let full = naming::full_name("Contoso.legacy", "1.0.0.0", "x64", "CN=Contoso");
    let path = format!("{}/msixPackages/{full}", env.pool_id("hp-b"));
    let (status, msix) = env.get(&path).await;
    assert_eq!(status, 200, "{msix}");
    assert_eq!(msix["properties"]["isActive"], true);
    assert_eq!(
        msix["properties"]["imagePath"],
        r"\\fs\apps\legacy_1.0.0.0.vhdx"
    );
    // Every desktop user of the pool gets it: assignment is by application group.
    let bob = env.signin("bob@contoso.com", "hp-b").await;
    assert_eq!(bob["packages"][0]["feature"], "MsixAppAttach");
    // An app attach package cannot join a pool that uses MSIX app attach.
    env.ns.apply(&package("modern")).await.unwrap();
    env.ns
        .apply(&pools("modern-pools", "modern", &[("hp-b", 0)]))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "modern",
        "Ready",
        "False",
        Some("HostPoolFeatureConflict"),
    )
    .await;
    env.wait_warning("modern", "HostPoolFeatureConflict").await;
    // Unassigned, the MSIX package leaves the pool.
    env.ns
        .api("HostPoolAssignment")
        .delete("legacy-pools", &Default::default())
        .await
        .unwrap();
    env.eventually("the MSIX package is removed from hp-b", || async {
        env.get(&path).await.0 == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_active_package_with_the_same_full_name_on_a_pool_is_refused() {
    let env = Env::new("duplicate_full_name", Duration::from_secs(300)).await;
    let first = package("expenses");
    env.ns.apply(&first).await.unwrap();
    env.ns
        .apply(&pools("first-pools", "expenses", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_package("expenses", 1, 0).await;
    // Same name, publisher, version and architecture: the same package full name.
    let mut copy = first.clone();
    copy["metadata"]["name"] = json!("expenses-copy");
    env.ns.apply(&copy).await.unwrap();
    env.ns
        .apply(&pools("copy-pools", "expenses-copy", &[("hp-a", 0)]))
        .await
        .unwrap();
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "expenses-copy",
            "Ready",
            "False",
            Some("DuplicatePackageOnHostPool"),
        )
        .await;
    assert!(
        obj["status"]["conditions"].to_string().contains("expenses"),
        "{}",
        obj["status"]
    );
    env.wait_ready("AppAttachPackage", "expenses").await;
    // Made inactive, the copy is fine.
    env.ns
        .apply(&set(copy, "/spec/state", json!("Inactive")))
        .await
        .unwrap();
    env.wait_ready("AppAttachPackage", "expenses-copy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_msix_prints_manifests_that_move_a_pool_to_app_attach() {
    let env = Env::new("migrate_msix", Duration::from_secs(300)).await;
    let full = naming::full_name("Contoso.Legacy", "3.1.0.0", "x64", "CN=Contoso");
    let (code, body) = env
        .arm(
            reqwest::Method::PUT,
            &format!("{}/msixPackages/{full}", env.pool_id("hp-b")),
            Some(json!({"properties": {
                "imagePath": r"\\fs\apps\legacy_3.1.0.0.vhdx", "packageName": "Contoso.Legacy",
                "packageFamilyName": naming::family_name("Contoso.Legacy", "CN=Contoso"),
                "displayName": "Legacy", "packageRelativePath": format!(r"\apps\{full}"),
                "isRegularRegistration": false, "isActive": true, "version": "3.1.0.0",
                "packageDependencies": [], "packageApplications": [{"appId": "App", "friendlyName": "Legacy"}]}})),
        )
        .await;
    assert!(code < 300, "{body}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .args([
            "migrate",
            "msix",
            "--host-pool",
            "hp-b",
            "--arm-endpoint",
            &env.emulator.url(),
        ])
        .args([
            "--subscription",
            SUB,
            "--resource-group",
            RG,
            "-n",
            &env.ns.name,
        ])
        .output()
        .await
        .unwrap();
    let (ok, text) = crate::support::outcome(&out);
    assert!(ok, "{text}");
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .split("\n---\n")
        .flat_map(|d| d.split("---\n"))
        .filter(|d| d.contains("apiVersion"))
        .map(|d| serde_yaml_ng::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "{text}");
    let pkg = &docs[0];
    assert_eq!(pkg["spec"]["package"]["fullName"], full.as_str());
    assert_eq!(
        pkg["spec"]["image"]["path"],
        r"\\fs\apps\legacy_3.1.0.0.vhdx"
    );
    let principals = docs[2]["spec"]["principals"].to_string();
    assert!(
        principals.contains(FINANCE) && principals.contains(SALES),
        "{principals}"
    );
    // The API server takes them as they are.
    for d in &docs {
        env.ns.apply(d).await.unwrap();
    }
    // The pool still has the MSIX package: the two features never mix on a pool.
    env.wait_condition(
        "AppAttachPackage",
        "contoso-legacy",
        "Ready",
        "False",
        Some("HostPoolFeatureConflict"),
    )
    .await;
    let (code, _) = env
        .arm(
            reqwest::Method::DELETE,
            &format!("{}/msixPackages/{full}", env.pool_id("hp-b")),
            None,
        )
        .await;
    assert!(code < 300);
    // The backend is not watched: a pass comes at the next resync, or now, on any
    // annotation change (as `kubectl annotate` does).
    let mut pkg = docs[0].clone();
    pkg["metadata"]["annotations"] = json!({"appattach.io/migrated-from": "hp-b"});
    env.ns.apply(&pkg).await.unwrap();
    env.wait_package("contoso-legacy", 1, 2).await;
}
