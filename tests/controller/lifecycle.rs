//! Suspend, reconcile policies, deletion, and restarts.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::harness::*;
use crate::support::set;

async fn ready_package(env: &Env, name: &str) {
    env.apply_assigned(name, &[("hp-a", 0)]).await;
    env.wait_package(name, 1, 1).await;
}

async fn annotate(env: &Env, name: &str, policy: &str) {
    let patch = json!({"metadata": {"annotations": {"appattach.io/reconcile-policy": policy}}});
    env.ns
        .api("AppAttachPackage")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_package_writes_nothing() {
    let env = Env::new("suspend", Duration::from_millis(500)).await;
    ready_package(&env, "expenses").await;
    let suspended = set(package("expenses"), "/spec/suspend", json!(true));
    env.ns
        .apply(&set(suspended, "/spec/state", json!("Inactive")))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "expenses",
        "Synced",
        "False",
        Some("Suspended"),
    )
    .await;
    let (_, b) = env.get(&env.package_path("expenses")).await;
    assert_eq!(
        b["properties"]["image"]["isActive"], true,
        "a suspended change is not written"
    );
    env.ns
        .apply(&set(package("expenses"), "/spec/state", json!("Inactive")))
        .await
        .unwrap();
    env.eventually("resumed and written", || async {
        env.get(&env.package_path("expenses")).await.1["properties"]["image"]["isActive"] == false
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_reports_drift_and_never_corrects_it() {
    let env = Env::new("skip_policy", Duration::from_millis(500)).await;
    ready_package(&env, "expenses").await;
    annotate(&env, "expenses", "skip").await;
    // Drift made before the controller works under the policy would be corrected by a pass
    // still under the old one: wait until a pass says it only observes.
    poll("a pass under the skip policy", || async {
        let pkg = env
            .ns
            .api("AppAttachPackage")
            .get("expenses")
            .await
            .map_err(|e| e.to_string())?;
        let ready = pkg.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap_or_default();
        let message = ready["message"].as_str().unwrap_or_default();
        if message.contains("reconcile policy skip") {
            Ok(())
        } else {
            Err(ready.to_string())
        }
    })
    .await;
    env.arm(
        reqwest::Method::PATCH,
        &env.package_path("expenses"),
        Some(json!({"properties": {"image": {"isActive": false}}})),
    )
    .await;
    env.wait_condition(
        "AppAttachPackage",
        "expenses",
        "Ready",
        "False",
        Some("DriftDetected"),
    )
    .await;
    env.reset_counts().await;
    let passes = env.passes("AppAttachPackage") + 2;
    env.eventually("two more passes", || async {
        env.passes("AppAttachPackage") >= passes
    })
    .await;
    assert_eq!(env.counts().await["writes"], 0);
    assert_eq!(
        env.get(&env.package_path("expenses")).await.1["properties"]["image"]["isActive"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_removes_the_backend_resources_unless_detached() {
    let env = Env::new("deletion", Duration::from_secs(300)).await;
    ready_package(&env, "managed").await;
    ready_package(&env, "detached").await;
    annotate(&env, "detached", "detach-on-delete").await;
    env.wait_ready("AppAttachPackage", "detached").await;
    // A user is signed in with the managed package: its image must stay on the share.
    let session = env.signin("alice@contoso.com", "hp-a").await;
    assert_eq!(session["packages"].as_array().unwrap().len(), 2);
    for name in ["managed", "detached"] {
        env.delete("AppAttachPackage", name).await;
    }
    env.eventually("both objects are gone", || async {
        !env.exists("AppAttachPackage", "managed").await
            && !env.exists("AppAttachPackage", "detached").await
    })
    .await;
    assert_eq!(
        env.get(&env.package_path("managed")).await.0,
        404,
        "the managed package was removed"
    );
    assert!(
        env.roles("managed").await.is_empty(),
        "and its role assignments"
    );
    assert_eq!(
        env.get(&env.package_path("detached")).await.0,
        200,
        "the detached package stays"
    );
    assert_eq!(env.roles("detached").await.len(), 1);
    let in_use = env.wait_warning("managed", "ImageInUse").await;
    let note = in_use.note.unwrap_or_default();
    assert!(
        note.contains("1 session(s)") && note.contains(r"\\fs\apps\managed_1.0.0.0.vhdx"),
        "{note}"
    );
    // Its assignments now point at nothing, and say so.
    env.wait_condition(
        "HostPoolAssignment",
        "managed-pools",
        "Ready",
        "False",
        Some("PackageNotFound"),
    )
    .await;
    // The passes were counted, by kind and result, and timed.
    let metrics = env.metrics.render();
    for series in [
        r#"appattach_reconciles_total{kind="AppAttachPackage",result="success"} "#,
        r#"appattach_reconciles_total{kind="HostPoolAssignment",result="success"} "#,
        r#"appattach_reconcile_duration_seconds_count{kind="AppAttachPackage"} "#,
    ] {
        let count: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 1.0, "{series}{count}");
    }
}

/// The real binary, as its own process, so a restart is a kill -9 and nothing survives it.
fn spawn_controller(env: &Env) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_appattach"))
        .arg("controller")
        .args(env.controller_args())
        .env("KUBECONFIG", env.ns.cp.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("appattach controller starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_converges_without_duplicates() {
    let mut env = Env::new("restart", Duration::from_secs(300)).await;
    env.stop_controller().await;
    // Slow the backend's writes, so the process dies in the middle of a pass.
    env.arm(
        reqwest::Method::POST,
        "/_emulator/faults",
        Some(json!({"method": "PUT", "delayMs": 400, "count": 2})),
    )
    .await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("pilot", "expenses", &[("hp-a", 0), ("hp-b", 1)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "people",
            "expenses",
            &[
                ("Group", "Finance", Some(FINANCE)),
                ("Group", "Sales", Some(SALES)),
            ],
        ))
        .await
        .unwrap();
    let mut first = spawn_controller(&env);
    env.eventually("the first backend write is under way", || async {
        env.counts().await["byMethod"]["PUT"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_controller(&env);
    env.wait_package("expenses", 2, 2).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        env.roles("expenses").await.len(),
        2,
        "no duplicate role assignments"
    );
    let (_, list) = env.get("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-avd/providers/Microsoft.DesktopVirtualization/appAttachPackages").await;
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        1,
        "no duplicate packages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_after_the_objects_with_one_slot_reconciles_them_all() {
    // Every reconcile slot taken before the assignment caches are listed must not stall
    // the controller (a pass never waits for a cache; it comes back shortly).
    let mut env = Env::new("late_start", Duration::from_secs(300)).await;
    env.stop_controller().await;
    for name in ["one", "two", "three"] {
        env.apply_assigned(name, &[("hp-a", 0)]).await;
    }
    env.concurrency = 1;
    env.start_controller();
    for name in ["one", "two", "three"] {
        env.wait_package(name, 1, 1).await;
    }
}
