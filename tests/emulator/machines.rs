//! The session hosts' virtual machines over HTTP: the emulator serves
//! `Microsoft.Compute/virtualMachines` (list by resource group, every page, and one VM)
//! with the image and licence type the world gives each host, and the session hosts name
//! them.

use serde_json::{Value, json};

use crate::support::*;

const COMPUTE: &str = "api-version=2024-07-01";

fn vms_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines")
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
