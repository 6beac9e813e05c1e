//! Packages and assignments reach the backend, and users get what they are entitled to.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_with_assignments_reaches_the_backend_and_the_right_users() {
    let env = Env::new("reaches_backend", Duration::from_secs(300)).await;
    env.apply_assigned("expenses", &[("hp-a", 0)]).await;
    let obj = env.wait_package("expenses", 1, 1).await;
    assert_eq!(obj["status"]["backendName"], env.backend_name("expenses"));
    assert_eq!(obj["status"]["currentVersion"], "1.0.0.0");
    assert_eq!(obj["status"]["hostPoolCount"], 1);
    assert_eq!(obj["status"]["principalCount"], 1);
    assert_eq!(obj["status"]["sessionHostCount"], 2);
    assert!(
        obj["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .contains(&json!("appattach.io/cleanup"))
    );

    let (status, backend) = env.get(&env.package_path("expenses")).await;
    assert_eq!(status, 200);
    assert_eq!(
        backend["properties"]["hostPoolReferences"],
        json!([env.pool_id("hp-a")])
    );
    assert_eq!(backend["properties"]["image"]["version"], "1.0.0.0");
    assert_eq!(backend["properties"]["image"]["isActive"], true);
    assert_eq!(
        backend["tags"]["appattach.io/owner"],
        format!("{}/expenses", env.ns.name)
    );
    let roles = env.roles("expenses").await;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["properties"]["principalId"], FINANCE);
    assert!(
        roles[0]["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap()
            .ends_with("1d18fff3-a72a-46b5-b4a9-0b38a3cd7e63")
    );

    env.wait_ready("HostPoolAssignment", "expenses-pools").await;
    let ua = env.wait_ready("UserAssignment", "expenses-users").await;
    assert_eq!(
        ua["status"]["principals"][0]["roleAssignment"],
        roles[0]["name"]
    );

    // alice (Finance) on hp-a gets it; bob (Sales) may use hp-b, where it is not assigned.
    let alice = env.signin("alice@contoso.com", "hp-a").await;
    assert_eq!(
        alice["packages"][0]["packageId"],
        env.package_path("expenses")
    );
    let bob = env.signin("bob@contoso.com", "hp-b").await;
    assert_eq!(bob["packages"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_follows_assignments_as_they_come_and_go() {
    let env = Env::new("follows_assignments", Duration::from_secs(300)).await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("pilot", "expenses", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "finance",
            "expenses",
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
    env.wait_package("expenses", 1, 1).await;

    env.ns
        .apply(&pools("prod", "expenses", &[("hp-b", 1)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "sales",
            "expenses",
            &[("Group", "Sales", Some(SALES))],
        ))
        .await
        .unwrap();
    env.eventually("two host pools and two role assignments", || async {
        let (_, b) = env.get(&env.package_path("expenses")).await;
        b["properties"]["hostPoolReferences"]
            .as_array()
            .map(Vec::len)
            == Some(2)
            && env.roles("expenses").await.len() == 2
    })
    .await;
    let bob = env.signin("bob@contoso.com", "hp-b").await;
    assert_eq!(
        bob["packages"].as_array().unwrap().len(),
        1,
        "Sales on hp-b now gets it"
    );

    // Deleting the last assignment of a principal removes its role assignment.
    env.ns
        .api("UserAssignment")
        .delete("sales", &Default::default())
        .await
        .unwrap();
    env.ns
        .api("HostPoolAssignment")
        .delete("prod", &Default::default())
        .await
        .unwrap();
    env.eventually("back to one host pool and one role assignment", || async {
        let (_, b) = env.get(&env.package_path("expenses")).await;
        b["properties"]["hostPoolReferences"] == json!([env.pool_id("hp-a")])
            && env
                .roles("expenses")
                .await
                .iter()
                .map(|r| r["properties"]["principalId"].clone())
                .collect::<Vec<_>>()
                == [json!(FINANCE)]
    })
    .await;
    env.wait_package("expenses", 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_the_backend_is_corrected_at_the_next_resync() {
    let env = Env::new("drift_corrected", Duration::from_millis(500)).await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("pilot", "expenses", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_package("expenses", 1, 0).await;
    let (status, _) = env
        .arm(
            reqwest::Method::PATCH,
            &env.package_path("expenses"),
            Some(json!({"properties": {"image": {"isActive": false}, "hostPoolReferences": []}})),
        )
        .await;
    assert_eq!(status, 200);
    env.eventually("the drift is corrected", || async {
        let (_, b) = env.get(&env.package_path("expenses")).await;
        b["properties"]["image"]["isActive"] == true
            && b["properties"]["hostPoolReferences"] == json!([env.pool_id("hp-a")])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_writes_nothing_to_the_backend_or_the_api_server() {
    let env = Env::new("steady_state", Duration::from_millis(300)).await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("pilot", "expenses", &[("hp-a", 0), ("hp-b", 1)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "finance",
            "expenses",
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
    env.wait_package("expenses", 2, 1).await;
    env.wait_ready("HostPoolAssignment", "pilot").await;
    env.wait_ready("UserAssignment", "finance").await;
    // Let the passes that the status writes themselves triggered settle: one resync pass.
    let settled = env.passes("AppAttachPackage") + 1;
    env.eventually("a resync pass", || async {
        env.passes("AppAttachPackage") >= settled
    })
    .await;
    env.reset_counts().await;
    let versions = |objs: Vec<serde_json::Value>| {
        objs.into_iter()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect::<Vec<_>>()
    };
    let snapshot = || async {
        let mut out = Vec::new();
        for (kind, name) in [
            ("AppAttachPackage", "expenses"),
            ("HostPoolAssignment", "pilot"),
            ("UserAssignment", "finance"),
        ] {
            out.push(serde_json::to_value(env.ns.api(kind).get(name).await.unwrap()).unwrap());
        }
        versions(out)
    };
    let before = snapshot().await;
    // Wait (on a condition, not a clock) for three more resync passes, and two refreshes
    // of the controller's picture of the backend (each lists the packages).
    let passes = env.passes("AppAttachPackage") + 3;
    let list = format!(
        "/subscriptions/{}/resourcegroups/{}/providers/microsoft.desktopvirtualization/appattachpackages",
        crate::harness::SUB,
        crate::harness::RG
    )
    .to_ascii_lowercase();
    env.eventually("three resync passes and two refreshes", || async {
        let refreshes = env.counts().await["byPath"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["method"] == "GET" && c["path"] == list && c["count"].as_u64().unwrap_or(0) >= 2
            });
        refreshes && env.passes("AppAttachPackage") >= passes
    })
    .await;
    let counts = env.counts().await;
    assert_eq!(
        counts["writes"], 0,
        "backend writes in steady state: {counts}"
    );
    assert_eq!(
        snapshot().await,
        before,
        "status was patched in steady state"
    );
}
