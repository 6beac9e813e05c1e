//! The controller reads the backend through one picture filled by list calls: reads do not
//! grow with packages × host pools, and a picture too old to act on makes writes wait,
//! saying why on /readyz and in the package's status.

use std::time::Duration;

use appattach_operator::emulator::World;
use serde_json::json;

use crate::harness::*;

/// A world of `n` host pools of two session hosts, each with a Desktop application group
/// for Finance.
fn pools_world(n: usize) -> World {
    let pools: Vec<_> = (0..n)
        .map(|i| {
            json!({"name": format!("hp-{i}"), "location": "westeurope", "identityProvider": "EntraID",
                   "sessionHosts": [{"name": format!("h{i}-0"), "os": "Windows11"},
                                    {"name": format!("h{i}-1"), "os": "Windows11"}]})
        })
        .collect();
    let groups: Vec<_> = (0..n)
        .map(|i| json!({"name": format!("ag-{i}"), "hostPool": format!("hp-{i}"), "type": "Desktop", "members": ["Finance"]}))
        .collect();
    serde_json::from_value(json!({
        "subscription": SUB, "resourceGroup": RG,
        "hostPools": pools, "applicationGroups": groups,
        "directory": {"groups": [{"name": "Finance", "objectId": FINANCE}],
                      "users": [{"upn": "alice@contoso.com", "objectId": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "groups": ["Finance"]}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_grow_with_packages_times_pools() {
    const POOLS: usize = 12;
    const PACKAGES: usize = 12;
    let env = Env::with_world("reads-bound", Duration::from_secs(600), pools_world(POOLS)).await;
    let every: Vec<(String, i32)> = (0..POOLS)
        .map(|i| (format!("hp-{i}"), (i % 3) as i32))
        .collect();
    let every: Vec<(&str, i32)> = every.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    for p in 0..PACKAGES {
        env.apply_assigned(&format!("app-{p}"), &every).await;
    }
    for p in 0..PACKAGES {
        env.wait_package(&format!("app-{p}"), POOLS as u64, 1).await;
    }
    let counts = env.counts().await;
    let reads = counts["byMethod"]["GET"].as_u64().unwrap_or(0);
    // One picture: the pools, each pool's session hosts and MSIX packages, the packages,
    // the role assignments, the application groups, the directory. A controller that read
    // each package's pools would read 3 × 12 × 12 = 432 times at the least.
    assert!(
        reads <= 3 * POOLS as u64 + 10,
        "{reads} reads for {PACKAGES} packages on {POOLS} pools each: {counts}"
    );
    // A package, its host pools when they arrive after it, its role assignment.
    assert!(
        counts["writes"].as_u64().unwrap() <= 3 * PACKAGES as u64,
        "{counts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_too_old_makes_writes_wait_and_says_why() {
    // The picture is read every 300 ms: older than 900 ms, it is too old to act on.
    let env = Env::new("stale-picture", Duration::from_millis(300)).await;
    env.apply_assigned("app", &[("hp-a", 0)]).await;
    env.wait_package("app", 1, 1).await;
    // A storm of 429s on the package list: every refresh fails from now on.
    let (code, body) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/faults",
            Some(
                json!({"pathContains": "appAttachPackages", "method": "GET", "status": 429,
                        "retryAfterSeconds": 1, "fraction": 1.0}),
            ),
        )
        .await;
    assert!(code < 300, "{body}");
    env.eventually("the process says the picture is too old", || async {
        !env.metrics.is_synced()
            && env
                .metrics
                .not_ready()
                .is_some_and(|why| why.contains("picture of the backend"))
    })
    .await;
    env.reset_counts().await;
    // A change meanwhile is not written from the old picture, and status says why.
    env.ns
        .apply(&pools("app-pools", "app", &[("hp-a", 0), ("hp-b", 1)]))
        .await
        .unwrap();
    let st = env
        .wait_condition(
            "AppAttachPackage",
            "app",
            "Synced",
            "False",
            Some("BackendSnapshotStale"),
        )
        .await;
    let synced = st["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Synced")
        .unwrap()
        .clone();
    assert!(
        synced["message"]
            .as_str()
            .unwrap()
            .contains("nothing is written"),
        "{synced}"
    );
    let counts = env.counts().await;
    assert_eq!(counts["applied"], json!([]), "nothing written: {counts}");
    // Once the backend answers again, the change goes through.
    env.arm(reqwest::Method::DELETE, "/_emulator/faults", None)
        .await;
    env.wait_package("app", 2, 1).await;
    env.eventually("ready again", || async { env.metrics.is_synced() })
        .await;
}
