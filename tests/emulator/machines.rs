//! The session hosts' virtual machines over HTTP: the emulator serves
//! `Microsoft.Compute/virtualMachines` (list by resource group, every page, and one VM)
//! with the image and licence type the world gives each host, the session hosts name
//! them, and the controller's picture reads them with one list per resource group. An
//! identity that may not read them (403) leaves their kind unknown and the rest of the
//! picture good.

use appattach_operator::backend::snapshot::Snapshot;
use appattach_operator::backend::{ArmClient, Auth, Backend};
use appattach_operator::domain::host_os::VmRead;
use serde_json::{Value, json};

use crate::support::*;

const COMPUTE: &str = "api-version=2024-07-01";

fn vms_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines")
}

fn client(em: &TestEmulator) -> ArmClient {
    ArmClient::new(&em.served.url(), SUB, RG, Auth::None)
}

/// The test world, with hp-b's host on Windows Server 2025, its VM in `rg-servers`.
async fn two_resource_groups() -> TestEmulator {
    TestEmulator::start_with(|c| {
        let w = c.world.as_mut().unwrap();
        w.host_pools[1].vm_resource_group = Some("rg-servers".into());
        w.host_pools[1].session_hosts[0].os =
            appattach_operator::emulator::world::Os::WindowsServer2025;
    })
    .await
}

fn names(list: &Value) -> Vec<&str> {
    list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_session_hosts_name_vms_that_say_their_image_and_licence() {
    let em = two_resource_groups().await;
    let (code, list) = em.get(&format!("{}?{COMPUTE}", vms_path(RG))).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(names(&list), ["a-0", "a-1"]);
    let a0 = &list["value"][0];
    assert_eq!(a0["type"], "Microsoft.Compute/virtualMachines");
    assert_eq!(a0["location"], "westeurope");
    assert_eq!(
        a0["properties"]["storageProfile"]["imageReference"]["publisher"],
        "MicrosoftWindowsDesktop"
    );
    assert_eq!(a0["properties"]["licenseType"], "Windows_Client");
    // The session host names its VM, and the VM can be read by that id.
    let (_, host) = em
        .get(&format!("{}/sessionHosts/a-0.contoso.com", pool_id("hp-a")))
        .await;
    assert_eq!(host["properties"]["resourceId"], a0["id"]);
    let (code, one) = em
        .get(&format!("{}?{COMPUTE}", a0["id"].as_str().unwrap()))
        .await;
    assert_eq!((code, &one), (200, a0));
    // Windows Server 2025 in its own resource group: build 26100, a server image, no
    // licence type.
    let (_, servers) = em
        .get(&format!("{}?{COMPUTE}", vms_path("rg-servers")))
        .await;
    assert_eq!(names(&servers), ["b-0"]);
    let b0 = &servers["value"][0]["properties"];
    assert_eq!(
        b0["storageProfile"]["imageReference"]["offer"],
        "WindowsServer"
    );
    assert_eq!(
        b0["storageProfile"]["imageReference"]["sku"],
        "2025-datacenter-azure-edition"
    );
    assert!(b0.get("licenseType").is_none(), "{b0}");
    let (_, host) = em
        .get(&format!("{}/sessionHosts/b-0.contoso.com", pool_id("hp-b")))
        .await;
    assert_eq!(host["properties"]["osVersion"], "10.0.26100.2894");
}

#[tokio::test]
async fn the_vm_list_pages_and_refuses_what_arm_refuses() {
    let em = TestEmulator::start().await;
    let (_, first) = em
        .get(&format!("{}?{COMPUTE}&pagesize=2", vms_path(RG)))
        .await;
    assert_eq!(names(&first), ["a-0", "a-1"]);
    let next = first["nextLink"].as_str().expect("a next page").to_string();
    let (_, second) = em.get(&next).await;
    assert_eq!(names(&second), ["b-0"]);
    assert!(second.get("nextLink").is_none());
    // And the client follows every page.
    let all = client(&em)
        .list_virtual_machines(&format!("/subscriptions/{SUB}/resourceGroups/{RG}"))
        .await
        .unwrap();
    assert_eq!(all.len(), 3);

    let (code, e) = em
        .get(&format!("{}?api-version=2024-04-03", vms_path(RG)))
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (400, Some("InvalidApiVersionParameter"))
    );
    let (code, e) = em
        .get(&format!("{}?{COMPUTE}", vms_path("rg-nowhere")))
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("ResourceGroupNotFound"))
    );
    let (code, e) = em.get(&format!("{}/nope?{COMPUTE}", vms_path(RG))).await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    let (code, _) = em
        .put(
            &format!("{}/a-0?{COMPUTE}", vms_path(RG)),
            json!({"location": "westeurope"}),
        )
        .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn a_refresh_reads_the_vms_once_per_resource_group() {
    let em = two_resource_groups().await;
    em.send(reqwest::Method::DELETE, "/_emulator/requests", None)
        .await;
    let snapshot = Snapshot::new();
    snapshot.refresh(&client(&em)).await.unwrap();
    let (_, counts) = em.get("/_emulator/requests").await;
    for rg in [RG, "rg-servers"] {
        let path = vms_path(rg).to_ascii_lowercase();
        let read: Vec<&Value> = counts["byPath"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["path"] == path.as_str())
            .collect();
        assert_eq!(read.len(), 1, "{path}: {counts}");
        assert_eq!(read[0]["count"], 1, "{path}: {counts}");
    }
    // Two pools' session hosts and MSIX packages, five lists, two VM lists.
    assert_eq!(counts["byMethod"]["GET"], 2 * 2 + 5 + 2, "{counts}");
    assert_eq!(snapshot.health().calls, 2 * 2 + 5 + 2);
    let reads = snapshot.with(|p| {
        p.session_hosts
            .values()
            .flatten()
            .map(|h| p.machines.read_of(h))
            .collect::<Vec<_>>()
    });
    assert_eq!(reads.len(), 3);
    assert!(
        reads.iter().all(|r| matches!(r, VmRead::Listed(_))),
        "{reads:?}"
    );
}

#[tokio::test]
async fn vms_the_identity_may_not_read_are_unknown_and_the_rest_of_the_picture_is_good() {
    let em = two_resource_groups().await;
    // The identity may read the VMs of rg-avd, not those of rg-servers.
    let (code, got) = em
        .post(
            "/_emulator/faults",
            json!({"pathContains": "/resourceGroups/rg-servers/providers/Microsoft.Compute/",
                   "method": "GET", "status": 403, "code": "AuthorizationFailed",
                   "message": "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachines/read'.",
                   "fraction": 1.0}),
        )
        .await;
    assert!(code < 300, "{got}");
    let (code, e) = em
        .get(&format!("{}?{COMPUTE}", vms_path("rg-servers")))
        .await;
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed"))
    );

    let snapshot = Snapshot::new();
    let arm = client(&em);
    snapshot
        .refresh(&arm)
        .await
        .expect("a refused VM list fails no refresh");
    let h = snapshot.health();
    assert!(h.last_error.is_none(), "{h:?}");
    let hp_b = pool_id("hp-b").to_ascii_lowercase();
    snapshot.with(|p| {
        assert_eq!(p.host_pools.len(), 2);
        let b0 = &p.session_hosts[&hp_b][0];
        assert_eq!(
            p.machines.read_of(b0),
            VmRead::Unreadable {
                resource_group: "rg-servers".into(),
                status: 403,
                code: "AuthorizationFailed".into()
            }
        );
        let a0 = &p.session_hosts[&pool_id("hp-a").to_ascii_lowercase()][0];
        assert!(matches!(p.machines.read_of(a0), VmRead::Listed(_)));
    });
    // Asked once per refresh, not retried: the 403 is for good.
    let (_, counts) = em.get("/_emulator/requests").await;
    let refused: u64 = counts["byPath"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["path"].as_str().unwrap().contains("rg-servers"))
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 2, "the test's own GET and the refresh's: {counts}");

    // A failure that may pass fails the refresh as every list's does, and the last good
    // picture stays.
    em.delete("/_emulator/faults").await;
    let (code, got) = em
        .post(
            "/_emulator/faults",
            json!({"pathContains": "Microsoft.Compute", "method": "GET", "status": 500, "fraction": 1.0}),
        )
        .await;
    assert!(code < 300, "{got}");
    assert!(snapshot.refresh(&arm).await.is_err());
    assert!(snapshot.health().last_error.is_some());
    snapshot.with(|p| assert_eq!(p.host_pools.len(), 2));
}
