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
