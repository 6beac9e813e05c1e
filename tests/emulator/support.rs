//! An emulator per test, a small ARM client, and the world the tests share.

use std::path::{Path, PathBuf};

use appattach_operator::emulator::{Config, Emulator, Served, ShareMapping, World};
use reqwest::Method;
use serde_json::{Value, json};

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const RG: &str = "rg-avd";
pub const API: &str = "api-version=2024-04-03";
pub const FINANCE: &str = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";
pub const ALICE: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
pub const DVU: &str = "1d18fff3-a72a-46b5-b4a9-0b38a3cd7e63";

/// The resource group's provider path.
pub fn rg_path() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization")
}

/// The ARM id of a host pool.
pub fn pool_id(name: &str) -> String {
    format!("{}/hostPools/{name}", rg_path())
}

/// The ARM path of an app attach package.
pub fn package_path(name: &str) -> String {
    format!("{}/appAttachPackages/{name}", rg_path())
}

/// A small world: two host pools (one Windows 11 with two hosts, one Windows Server),
/// a Desktop and a RemoteApp application group, and three users in two groups.
pub fn world() -> World {
    serde_yaml_ng::from_str(&format!(
        r#"
subscription: {SUB}
resourceGroup: {RG}
hostPools:
  - name: hp-a
    location: westeurope
    identityProvider: EntraID
    sessionHosts: [{{name: a-0.contoso.com, os: Windows11}}, {{name: a-1.contoso.com, os: Windows11}}]
  - name: hp-b
    location: westeurope
    identityProvider: ADDS
    sessionHosts: [{{name: b-0.contoso.com, os: WindowsServer}}]
applicationGroups:
  - {{name: ag-a-desktop, hostPool: hp-a, type: Desktop, members: [Finance]}}
  - {{name: ag-b-remoteapp, hostPool: hp-b, type: RemoteApp, members: [alice@contoso.com]}}
directory:
  groups:
    - {{name: Finance, objectId: {FINANCE}}}
    - {{name: Sales, objectId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f2a3b4c5d}}
  users:
    - {{upn: alice@contoso.com, objectId: {ALICE}, groups: [Finance]}}
    - {{upn: bob@contoso.com, objectId: 4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a, groups: [Sales]}}
    - {{upn: carol@contoso.com, objectId: 7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d, groups: [Finance]}}
"#
    ))
    .expect("the test world parses")
}

/// A test's emulator, its share directory and its state directory.
pub struct TestEmulator {
    pub served: Served,
    pub share: tempfile::TempDir,
    pub state: PathBuf,
    pub _state_root: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestEmulator {
    /// A fresh emulator with the test world, a share `\\fs\apps` and persisted state.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Same, with the config adjusted first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let share = tempfile::tempdir().unwrap();
        let state_root = tempfile::tempdir().unwrap();
        let state = state_root.path().join("state");
        let mut config = Config {
            world: Some(world()),
            shares: vec![share_mapping(share.path())],
            state_dir: Some(state.clone()),
            token: None,
            staging_interval: None,
            arm_budget: None,
        };
        adjust(&mut config);
        let served = Emulator::start(config).await.expect("the emulator starts");
        Self {
            served,
            share,
            state,
            _state_root: state_root,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request; `path` may carry a query (api-version is added when absent).
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else if path.contains("api-version") || path.starts_with("/_emulator") {
            format!("{}{path}", self.served.url())
        } else if path.contains('?') {
            format!("{}{path}&{API}", self.served.url())
        } else {
            format!("{}{path}?{API}", self.served.url())
        };
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the emulator answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(Method::DELETE, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Writes a file into the share.
    pub fn share_file(&self, rel: &str) {
        let path = self.share.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"image").unwrap();
    }

    /// Writes a complete CimFS image (`.cim`, `objectid_*`, `region_*`) into the share.
    pub fn share_cim(&self, folder: &str, name: &str) {
        self.share_file(&format!("{folder}/{name}"));
        self.share_file(&format!("{folder}/objectid_b5742e0b_0"));
        self.share_file(&format!("{folder}/region_b5742e0b_0"));
    }

    /// Creates an app attach package and asserts it was created.
    pub async fn create_package(&self, name: &str, body: Value) -> Value {
        let (status, got) = self.put(&package_path(name), body).await;
        assert_eq!(status, 201, "creating {name}: {got}");
        got
    }

    /// Assigns Desktop Virtualization User on `scope` to `principal`.
    pub async fn assign(&self, scope: &str, principal: &str) -> (u16, Value) {
        let name = uuid::Uuid::new_v4();
        let path = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"
        );
        self.put(&path, json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{DVU}"),
            "principalId": principal,
        }}))
        .await
    }
}

pub fn share_mapping(dir: &Path) -> ShareMapping {
    format!(r"\\fs\apps={}", dir.display()).parse().unwrap()
}

/// An app attach package body on `pools`, active, with image `path` and `version`.
pub fn package_body(path: &str, version: &str, pools: &[&str]) -> Value {
    json!({
        "location": "westeurope",
        "properties": {
            "image": {
                "imagePath": path,
                "packageName": "Contoso.Expenses",
                "packageFamilyName": "Contoso.Expenses_8h66172c634n0",
                "packageFullName": format!("Contoso.Expenses_{version}_x64__8h66172c634n0"),
                "displayName": "Contoso Expenses",
                "packageRelativePath": format!("\\Contoso.Expenses_{version}_x64__8h66172c634n0"),
                "isRegularRegistration": false,
                "isActive": true,
                "version": version,
                "packageApplications": [{"appId": "App", "friendlyName": "Expenses"}],
                "packageDependencies": [],
                "certificateName": "CN=Contoso",
                "certificateExpiry": "2028-01-01T00:00:00Z",
                "isPackageTimestamped": "Timestamped"
            },
            "hostPoolReferences": pools.iter().map(|p| pool_id(p)).collect::<Vec<_>>(),
            "failHealthCheckOnStagingFailure": "NeedsAssistance"
        }
    })
}
