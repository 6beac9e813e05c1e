//! App attach applications run on Windows client session hosts only. The controller tells
//! Windows Server from Windows client by the session hosts' virtual machines (Windows
//! Server 2025 and Windows 11 24H2 share build 26100), warns of a pool of Windows Server
//! hosts, and, where its identity may not read the VMs, says so without degrading the
//! package.

use std::time::Duration;

use appattach_operator::emulator::World;
use k8s_openapi::api::events::v1::Event;
use serde_json::{Value, json};

use crate::harness::*;

/// Windows 11 24H2 hosts in the world's resource group; Windows Server 2025 hosts (the
/// same build, 26100) with their VMs in `rg-servers`, and in `rg-hidden`, which the
/// controller may not read.
fn world() -> World {
    let pool = |name: &str, os: &str, rg: &str, hosts: &[&str]| {
        let hosts: Vec<Value> = hosts.iter().map(|h| json!({"name": h, "os": os})).collect();
        let mut p = json!({"name": name, "location": "westeurope", "identityProvider": "EntraID",
                           "sessionHosts": hosts});
        if rg != RG {
            p["vmResourceGroup"] = json!(rg);
        }
        p
    };
    let group = |pool: &str| json!({"name": format!("ag-{pool}"), "hostPool": pool, "type": "Desktop", "members": ["Finance"]});
    serde_json::from_value(json!({
        "subscription": SUB, "resourceGroup": RG,
        "hostPools": [
            pool("hp-win11", "Windows11-24H2", RG, &["w-0", "w-1"]),
            pool("hp-server", "WindowsServer2025", "rg-servers", &["s-0", "s-1"]),
            pool("hp-hidden", "WindowsServer2025", "rg-hidden", &["h-0"]),
        ],
        "applicationGroups": [group("hp-win11"), group("hp-server"), group("hp-hidden")],
        "directory": {"groups": [{"name": "Finance", "objectId": FINANCE}],
                      "users": [{"upn": "alice@contoso.com", "objectId": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f", "groups": ["Finance"]}]}
    }))
    .unwrap()
}

/// Package `name` with a CimFS image, on `pool`, for Finance.
async fn apply_cim(env: &Env, name: &str, pool: &str) {
    let mut pkg = package(name);
    pkg["spec"]["image"]["path"] = json!(format!(r"\\fs\apps\{name}\{name}_1.0.0.0.cim"));
    env.ns.apply(&pkg).await.unwrap();
    env.ns
        .apply(&pools(&format!("{name}-pools"), name, &[(pool, 0)]))
        .await
        .unwrap();
    env.ns
        .apply(&users(
            &format!("{name}-users"),
            name,
            &[("Group", "Finance", Some(FINANCE))],
        ))
        .await
        .unwrap();
}

fn degraded(obj: &Value) -> (String, String, String) {
    let c = obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

fn of_reason<'a>(events: &'a [Event], reason: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_server_hosts_warn_and_unreadable_vms_are_said_without_degrading() {
    let mut env = Env::with_world("host-os", Duration::from_secs(600), world()).await;
    // The controller's identity may not read the VMs of rg-hidden: from its first refresh.
    env.stop_controller().await;
    let (code, body) = env
        .arm(
            reqwest::Method::POST,
            "/_emulator/faults",
            Some(json!({"pathContains": "/resourceGroups/rg-hidden/providers/Microsoft.Compute/",
                        "method": "GET", "status": 403, "code": "AuthorizationFailed",
                        "message": "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachines/read'.",
                        "fraction": 1.0})),
        )
        .await;
    assert!(code < 300, "{body}");
    env.start_controller();

    // Windows Server 2025 (build 26100): warned of, and not Windows 11 for CimFS; still
    // reconciled.
    apply_cim(&env, "on-server", "hp-server").await;
    let obj = env
        .wait_condition(
            "AppAttachPackage",
            "on-server",
            "Degraded",
            "True",
            Some("WindowsServerSessionHosts"),
        )
        .await;
    let (_, _, message) = degraded(&obj);
    assert!(
        message.contains("2 of the 2 session host(s) of host pool hp-server run Windows Server")
            && message.contains("do not run Windows 11"),
        "{message}"
    );
    env.wait_package("on-server", 1, 1).await;
    env.wait_warning("on-server", "WindowsServerSessionHosts")
        .await;
    env.wait_warning("on-server", "CimFSNeedsWindows11").await;

    // Windows 11 24H2, on the same build: neither.
    apply_cim(&env, "on-win11", "hp-win11").await;
    let obj = env.wait_package("on-win11", 1, 1).await;
    assert_eq!(
        degraded(&obj),
        ("False".into(), "NoWarnings".into(), "no warnings".into())
    );
    let events = env.events("on-win11").await;
    assert!(
        events.iter().all(|e| e.type_.as_deref() != Some("Warning")),
        "{events:?}"
    );

    // VMs the identity may not read: unknown, said once, and not Degraded; build 26100 is
    // taken for Windows 11 for CimFS, as before.
    apply_cim(&env, "on-hidden", "hp-hidden").await;
    let obj = env.wait_package("on-hidden", 1, 1).await;
    let (status, reason, message) = degraded(&obj);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoWarnings"));
    assert!(
        message.contains(
            "whether 1 session host(s) of host pool hp-hidden run Windows Server is not known"
        ) && message
            .contains("cannot read Microsoft.Compute/virtualMachines in resource group rg-hidden")
            && message.contains("Microsoft.Compute/virtualMachines/read"),
        "{message}"
    );
    let notes = poll("a Normal event says the OS kind is unknown", || async {
        let events = env.events("on-hidden").await;
        if of_reason(&events, "SessionHostOsUnknown").is_empty() {
            Err(format!("events {events:?}"))
        } else {
            Ok(events)
        }
    })
    .await;
    assert_eq!(
        of_reason(&notes, "SessionHostOsUnknown").len(),
        1,
        "{notes:?}"
    );
    let note = of_reason(&notes, "SessionHostOsUnknown")[0];
    assert_eq!(note.type_.as_deref(), Some("Normal"));
    assert!(
        notes.iter().all(|e| e.type_.as_deref() != Some("Warning")),
        "{notes:?}"
    );
}
