//! The controller's picture of the backend, filled by ARM's list calls against the emulator
//! over HTTP: what one refresh reads, and that a refresh is all or nothing (a list that
//! fails midway, or one that never ends, leaves the last good picture).

use appattach_operator::backend::snapshot::Snapshot;
use appattach_operator::backend::{ArmClient, Auth, Backend, BackendError};
use serde_json::json;

use crate::support::*;

fn client(em: &TestEmulator) -> ArmClient {
    ArmClient::new(&em.served.url(), SUB, RG, Auth::None)
}

#[tokio::test]
async fn one_refresh_reads_every_collection_with_list_calls() {
    let em = TestEmulator::start().await;
    em.share_file("a.vhdx");
    let mut body = package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a"]);
    body["tags"] = json!({"appattach.io/owner": "ns/a"});
    em.create_package("ns-a", body).await;
    let (code, got) = em.assign(&package_path("ns-a"), FINANCE).await;
    assert!(code < 300, "{got}");
    em.send(reqwest::Method::DELETE, "/_emulator/requests", None)
        .await;

    let snapshot = Snapshot::new();
    assert!(!snapshot.is_ready());
    snapshot.refresh(&client(&em)).await.unwrap();
    assert!(snapshot.is_ready());
    snapshot.with(|p| {
        assert_eq!(p.host_pools.len(), 2);
        let hp_a = pool_id("hp-a").to_ascii_lowercase();
        assert_eq!(p.session_hosts[&hp_a].len(), 2);
        assert_eq!(p.owned_by("ns/a").collect::<Vec<_>>(), ["ns-a"]);
        let roles = &p.roles[&package_path("ns-a").to_ascii_lowercase()];
        assert_eq!(roles.len(), 1);
        assert_eq!(&*roles[0].principal, FINANCE);
        // The world's own application group members are there too, at their groups.
        assert!(
            p.roles
                .keys()
                .any(|k| k.contains("applicationgroups/ag-a-desktop"))
        );
        assert!(p.directory.is_some());
    });
    // Each pool's session hosts and MSIX packages, the pools, the packages, the role
    // assignments, the application groups, the RemoteApp group's applications, the
    // session hosts' VMs (one resource group), the directory: nothing per package.
    let (_, counts) = em.get("/_emulator/requests").await;
    // (The directory is the emulator's own route, which it does not count.)
    assert_eq!(counts["byMethod"]["GET"], 2 * 2 + 6, "{counts}");
    assert_eq!(snapshot.health().calls, 2 * 2 + 6);
}

#[tokio::test]
async fn a_refresh_that_fails_midway_keeps_the_last_good_picture() {
    let em = TestEmulator::start().await;
    let mut body = package_body(r"\\fs\apps\a.vhdx", "1.0.0.0", &["hp-a"]);
    body["tags"] = json!({"appattach.io/owner": "ns/a"});
    em.create_package("ns-a", body).await;
    let snapshot = Snapshot::new();
    let arm = client(&em);
    snapshot.refresh(&arm).await.unwrap();
    // The package goes, then the role assignment list fails (after the package list).
    em.delete(&package_path("ns-a")).await;
    let (code, got) = em
        .post(
            "/_emulator/faults",
            json!({"pathContains": "roleAssignments", "method": "GET", "status": 500, "fraction": 1.0}),
        )
        .await;
    assert!(code < 300, "{got}");
    let e = snapshot.refresh(&arm).await.unwrap_err();
    em.delete("/_emulator/faults").await;
    assert!(
        matches!(e, BackendError::Arm(ref a) if a.status == 500),
        "{e}"
    );
    // Nothing is decided from a partial list: the package is still in the picture.
    assert!(snapshot.with(|p| p.packages.contains_key("ns-a")));
    let h = snapshot.health();
    assert!(h.last_error.is_some() && h.age.is_some(), "{h:?}");
    // The next refresh succeeds, and the picture follows the backend.
    let changed = snapshot.refresh(&arm).await.unwrap();
    assert!(!snapshot.with(|p| p.packages.contains_key("ns-a")));
    assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["ns/a"]);
    assert!(snapshot.health().last_error.is_none());
}

/// A list whose every page points back at itself.
async fn endless_list() -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let next = format!(
        "{url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization/hostPools?api-version=2024-04-03&page=again"
    );
    let app = axum::Router::new().fallback(get(move || {
        let next = next.clone();
        async move { axum::Json(json!({"value": [], "nextLink": next})) }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_list_that_never_ends_is_an_error_not_a_partial_answer() {
    let url = endless_list().await;
    let arm = ArmClient::new(&url, SUB, RG, Auth::None);
    let e = arm.list_host_pools().await.unwrap_err();
    assert!(e.to_string().contains("does not end"), "{e}");
    let snapshot = Snapshot::new();
    assert!(snapshot.refresh(&arm).await.is_err());
    assert!(!snapshot.is_ready());
}
