//! What the schema cannot check ends in Ready=False with a stable reason and a Warning
//! event, and other packages keep reconciling.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::support::set;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_contradictions_are_reported_and_others_keep_going() {
    let env = Env::new("contradictions", Duration::from_secs(300)).await;
    let cases = [
        (
            "unknown-pool",
            pools("unknown-pool-a", "unknown-pool", &[("hp-nowhere", 0)]),
            "HostPoolNotFound",
            "hp-nowhere",
        ),
        (
            "wrong-region",
            pools("wrong-region-a", "wrong-region", &[("hp-north", 0)]),
            "RegionMismatch",
            "northeurope",
        ),
        (
            "entra-ds",
            pools("entra-ds-a", "entra-ds", &[("hp-entrads", 0)]),
            "IdentityProviderNotSupported",
            "EntraDS",
        ),
    ];
    for (name, assignment, _, _) in &cases {
        env.ns.apply(&package(name)).await.unwrap();
        env.ns.apply(assignment).await.unwrap();
    }
    // MSIX app attach on an Entra ID pool.
    env.ns
        .apply(&set(
            package("legacy"),
            "/spec/mode",
            json!("MsixAppAttach"),
        ))
        .await
        .unwrap();
    env.ns
        .apply(&pools("legacy-a", "legacy", &[("hp-a", 0)]))
        .await
        .unwrap();
    // A principal without an object id.
    env.ns.apply(&package("no-oid")).await.unwrap();
    env.ns
        .apply(&pools("no-oid-a", "no-oid", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "no-oid-u",
            "no-oid",
            &[("User", "alice@contoso.com", None)],
        ))
        .await
        .unwrap();
    // And one good package beside them.
    env.ns.apply(&package("good")).await.unwrap();
    env.ns
        .apply(&pools("good-a", "good", &[("hp-a", 0)]))
        .await
        .unwrap();

    for (name, _, reason, names) in &cases {
        let obj = env
            .wait_condition("AppAttachPackage", name, "Ready", "False", Some(reason))
            .await;
        let ready = obj["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert!(
            ready["message"].as_str().unwrap().contains(names),
            "{ready}"
        );
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("spec.hostPools[0]"),
            "the message names the field: {ready}"
        );
        env.wait_warning(name, reason).await;
        let (_, backend) = env.get(&env.package_path(name)).await;
        assert!(
            backend["properties"]["hostPoolReferences"]
                .as_array()
                .is_none_or(|r| r.is_empty()),
            "the refused host pool was not written for {name}: {backend}"
        );
    }
    env.wait_condition(
        "AppAttachPackage",
        "legacy",
        "Ready",
        "False",
        Some("IdentityProviderNotSupported"),
    )
    .await;
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "no-oid",
            "Ready",
            "False",
            Some("PrincipalObjectIdMissing"),
        )
        .await;
    assert!(
        obj["status"]["conditions"]
            .to_string()
            .contains("spec.principals[0].objectId")
    );
    env.wait_ready("AppAttachPackage", "good").await;
    // The assignment mirrors its package's reason.
    env.wait_condition(
        "HostPoolAssignment",
        "wrong-region-a",
        "Ready",
        "False",
        Some("RegionMismatch"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_to_a_missing_package_says_so() {
    let env = Env::new("missing_package", Duration::from_secs(300)).await;
    env.ns
        .apply(&pools("orphan", "does-not-exist", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            "orphan-u",
            "does-not-exist",
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
    let obj = env
        .wait_condition(
            "HostPoolAssignment",
            "orphan",
            "Ready",
            "False",
            Some("PackageNotFound"),
        )
        .await;
    assert!(
        obj["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.packageRef.name")
    );
    env.wait_condition(
        "UserAssignment",
        "orphan-u",
        "Ready",
        "False",
        Some("PackageNotFound"),
    )
    .await;
    env.wait_warning("orphan", "PackageNotFound").await;
    // Creating the package heals it.
    env.ns.apply(&package("does-not-exist")).await.unwrap();
    env.wait_ready("HostPoolAssignment", "orphan").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_events_and_a_degraded_condition() {
    let env = Env::new("warnings", Duration::from_secs(300)).await;
    let vhd = set(
        package("old-tool"),
        "/spec/image/path",
        json!(r"\\fs\apps\old-tool_1.0.0.0.vhd"),
    );
    env.ns.apply(&vhd).await.unwrap();
    env.ns
        .apply(&pools("old-tool-a", "old-tool", &[("hp-a", 0)]))
        .await
        .unwrap();
    env.wait_ready("AppAttachPackage", "old-tool").await;
    env.wait_condition(
        "AppAttachPackage",
        "old-tool",
        "Degraded",
        "True",
        Some("VhdNotRecommended"),
    )
    .await;
    env.wait_warning("old-tool", "VhdNotRecommended").await;
    // CimFS on a pool whose session hosts do not run Windows 11 (Windows Server 2022, of
    // which app attach warns first).
    let cim = set(
        package("cim-app"),
        "/spec/image/path",
        json!(r"\\fs\apps\cim-app_1.0.0.0.cim"),
    );
    env.ns.apply(&cim).await.unwrap();
    env.ns
        .apply(&pools("cim-app-a", "cim-app", &[("hp-server", 0)]))
        .await
        .unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "cim-app",
        "Degraded",
        "True",
        Some("WindowsServerSessionHosts"),
    )
    .await;
    env.wait_ready("AppAttachPackage", "cim-app").await;
    env.wait_warning("cim-app", "WindowsServerSessionHosts")
        .await;
    env.wait_warning("cim-app", "CimFSNeedsWindows11").await;
    // An expired certificate on a package that is not timestamped is not Ready.
    let expired = set(
        package("expired"),
        "/spec/certificate",
        json!({"subject": "CN=Contoso", "expiry": "2020-01-01T00:00:00Z"}),
    );
    env.ns.apply(&expired).await.unwrap();
    env.wait_condition(
        "AppAttachPackage",
        "expired",
        "Ready",
        "False",
        Some("CertificateExpired"),
    )
    .await;
    env.wait_condition(
        "AppAttachPackage",
        "expired",
        "CertificateValid",
        "False",
        Some("CertificateExpired"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_the_directory_does_not_know_is_reported() {
    let env = Env::new("unknown_principal", Duration::from_secs(300)).await;
    env.ns.apply(&package("expenses")).await.unwrap();
    env.ns
        .apply(&pools("expenses-pools", "expenses", &[("hp-a", 0)]))
        .await
        .unwrap();
    let stranger = "11111111-2222-4333-8444-555555555555";
    env.ns
        .apply(&users(
            "expenses-users",
            "expenses",
            &[("User", "stranger@contoso.com", Some(stranger))],
        ))
        .await
        .unwrap();
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "expenses",
            "Ready",
            "False",
            Some("PrincipalNotFound"),
        )
        .await;
    assert!(
        obj["status"]["conditions"].to_string().contains(stranger),
        "{}",
        obj["status"]
    );
    env.wait_warning("expenses", "PrincipalNotFound").await;
    env.wait_condition(
        "UserAssignment",
        "expenses-users",
        "Ready",
        "False",
        Some("PrincipalNotFound"),
    )
    .await;
}
