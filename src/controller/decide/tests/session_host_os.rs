//! The session hosts' operating systems, as their virtual machines tell them: app attach
//! applications run on Windows client session hosts only, and Windows Server 2025 shares
//! its build (26100) with Windows 11 24H2, so only the VM's image or licence tells them
//! apart.

use serde_json::json;

use super::super::simulate::Sim;
use super::fixtures::*;
use crate::controller::observe::BackendView;
use crate::domain::host_os::{VmFacts, VmRead};

const BUILD_26100: &str = "10.0.26100.2894";

fn marketplace(publisher: &str, offer: &str, sku: &str, license: Option<&str>) -> VmRead {
    VmRead::Listed(VmFacts {
        publisher: Some(publisher.into()),
        offer: Some(offer.into()),
        sku: Some(sku.into()),
        image_id: None,
        license_type: license.map(str::to_string),
    })
}

fn server_2025() -> VmRead {
    marketplace(
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2025-datacenter-azure-edition",
        None,
    )
}

fn windows_11() -> VmRead {
    marketplace(
        "MicrosoftWindowsDesktop",
        "windows-11",
        "win11-24h2-avd",
        Some("Windows_Client"),
    )
}

/// Makes every session host of `pool` a VM read as `vm`, reporting build 26100.
fn hosts_are(sim: &mut Sim, pool: &str, vm: &VmRead) {
    let BackendView {
        pools, machines, ..
    } = sim.obs.backend.as_mut().expect("a backend");
    let p = pools.iter_mut().find(|p| p.name == pool).expect("the pool");
    for (i, h) in p.hosts.iter_mut().enumerate() {
        let id = crate::arm::compute::vm_id("s", "rg-hosts", &format!("{pool}-{i}"));
        h.properties.resource_id = Some(id.clone());
        h.properties.os_version = Some(BUILD_26100.into());
        machines.insert(id.to_ascii_lowercase(), vm.clone());
    }
}

/// The package on `pool`, its hosts VMs read as `vm`, with this image, run until quiet.
fn on(pool: &str, vm: &VmRead, image: &str) -> (Sim, Vec<super::super::Decision>) {
    let mut pkg = package("1.0.0.0", json!({}));
    pkg.spec.image.path = image.into();
    let mut sim = estate(pkg, &[(pool, 0)]);
    hosts_are(&mut sim, pool, vm);
    let decisions = sim.run(20);
    (sim, decisions)
}

fn message(sim: &Sim, type_: &str) -> String {
    sim.obs
        .package
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn warned(ds: &[super::super::Decision], reason: &str) -> bool {
    ds.iter()
        .flat_map(|d| &d.events)
        .any(|e| e.warning && e.reason == reason)
}

#[test]
fn a_package_on_windows_server_2025_hosts_is_degraded_and_says_what_to_do() {
    let (sim, ds) = on("hp-r0", &server_2025(), r"\\fs\apps\app_1.0.0.0.vhdx");
    // Still reconciled: a warning, not a refusal.
    assert!(ready(&sim), "{:?}", sim.obs.package.status);
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("True".into(), "WindowsServerSessionHosts".into()))
    );
    let m = message(&sim, "Degraded");
    assert!(
        m.contains("2 of the 2 session host(s) of host pool hp-r0 run Windows Server")
            && m.contains("Windows client session hosts only"),
        "{m}"
    );
    assert!(warned(&ds, "WindowsServerSessionHosts"));
    // Said once: the steady state repeats no event.
    let again = sim.decide();
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn a_cimfs_image_on_windows_server_2025_hosts_is_not_on_windows_11() {
    let (sim, ds) = on("hp-r0", &server_2025(), r"\\fs\apps\app_1.0.0.0.cim");
    let reasons: Vec<&str> = crate::controller::decide::check(&sim.obs)
        .iter()
        .map(|f| f.reason)
        .collect();
    assert_eq!(
        reasons,
        ["WindowsServerSessionHosts", "CimFSNeedsWindows11"]
    );
    assert!(warned(&ds, "CimFSNeedsWindows11"));
    assert!(message(&sim, "Degraded").contains("do not run Windows 11"));
}

#[test]
fn a_windows_11_pool_on_the_same_build_warns_of_neither() {
    let (sim, ds) = on("hp-r0", &windows_11(), r"\\fs\apps\app_1.0.0.0.cim");
    assert!(ready(&sim));
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("False".into(), "NoWarnings".into()))
    );
    assert_eq!(message(&sim, "Degraded"), "no warnings");
    assert!(ds.iter().flat_map(|d| &d.events).all(|e| !e.warning));
}

#[test]
fn hosts_whose_vms_cannot_be_read_are_said_once_without_degrading_the_package() {
    let denied = VmRead::Unreadable {
        resource_group: "rg-hosts".into(),
        status: 403,
        code: "AuthorizationFailed".into(),
    };
    let (sim, ds) = on("hp-r0", &denied, r"\\fs\apps\app_1.0.0.0.cim");
    assert!(ready(&sim));
    // Not Degraded: a missing optional permission is no fault of the package. Build 26100
    // is taken for Windows 11, as before the VMs were read.
    assert_eq!(
        condition(&sim, "Degraded"),
        Some(("False".into(), "NoWarnings".into()))
    );
    let m = message(&sim, "Degraded");
    assert!(
        m.starts_with("no warnings; HostPoolAssignment/app-pools spec.hostPools[0].name: whether 2 session host(s) of host pool hp-r0 run Windows Server is not known")
            && m.contains("cannot read Microsoft.Compute/virtualMachines in resource group rg-hosts")
            && m.contains("Microsoft.Compute/virtualMachines/read"),
        "{m}"
    );
    let notes: Vec<_> = ds
        .iter()
        .flat_map(|d| &d.events)
        .filter(|e| e.reason == "SessionHostOsUnknown")
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(!notes[0].warning);
}
