//! Backend targets: one controller, several subscriptions and tenants. Its own control
//! plane (this test binary's), so the controller can watch every namespace as it does in
//! a cluster, and two emulators: subscription A in tenant A, subscription B in tenant B.
//! Emulator A also plays Entra ID for both tenants; each emulator's ARM takes only tokens
//! of its tenant, and only from its own principal.

#[allow(dead_code)]
#[path = "../apiserver/support.rs"]
mod support;

use std::time::Duration;

use appattach_operator::azure::Endpoints;
use appattach_operator::backend::ArmClient;
use appattach_operator::controller::targets::{TargetSettings, arm_clients};
use appattach_operator::controller::{self, Backends, Config};
use appattach_operator::emulator::{self, Emulator, Served, World};
use serde_json::{Value, json};
use support::TestNamespace;

const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const SUB_A: &str = "aaaaaaaa-1111-4111-8111-00000000000a";
const SUB_B: &str = "bbbbbbbb-1111-4111-8111-00000000000b";
const CLIENT_A: &str = "aaaaaaaa-2222-4222-8222-00000000000a";
const CLIENT_B: &str = "bbbbbbbb-2222-4222-8222-00000000000b";
const OID_A: &str = "aaaaaaaa-3333-4333-8333-00000000000a";
const OID_B: &str = "bbbbbbbb-3333-4333-8333-00000000000b";
const SECRET_B: &str = "team-b-s3cret";
const RG: &str = "rg-avd";

fn world(sub: &str, tenant: &str, principal: &str, identities: &str) -> World {
    serde_yaml_ng::from_str(&format!(
        r#"
subscription: {sub}
resourceGroup: {RG}
tenantId: {tenant}
principals: [{principal}]
identities: {identities}
hostPools:
  - {{name: hp-1, location: westeurope, identityProvider: EntraID, sessionHosts: [{{name: h-0, os: Windows11}}]}}
applicationGroups:
  - {{name: ag-1, hostPool: hp-1, type: Desktop, members: [Finance]}}
directory:
  groups: [{{name: Finance, objectId: 6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5}}]
  users: []
"#
    ))
    .unwrap()
}

async fn serve(world: World) -> Served {
    Emulator::start(emulator::Config {
        world: Some(world),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The estate: two emulators, and one controller for every namespace, with no target of
/// its own (every namespace must bring its own).
struct Estate {
    a: Served,
    b: Served,
    http: reqwest::Client,
    metrics: std::sync::Arc<controller::metrics::Metrics>,
    _controller: tokio::task::AbortHandle,
}

/// The estate, and a pair of namespaces (team A, team B) for each of `scenarios`. Team A's
/// identity is federated with the service account `appattach-workload` of every team A
/// namespace.
async fn estate(scenarios: &[&str]) -> (Estate, Vec<(TestNamespace, TestNamespace)>) {
    let mut teams = vec![];
    for s in scenarios {
        teams.push((
            TestNamespace::new(&format!("{s}-a")).await,
            TestNamespace::new(&format!("{s}-b")).await,
        ));
    }
    let subjects: Vec<String> = teams
        .iter()
        .map(|(a, _)| format!("'system:serviceaccount:{}:appattach-workload'", a.name))
        .collect();
    let identities = format!(
        "[{{tenantId: {TENANT_A}, clientId: {CLIENT_A}, objectId: {OID_A}, federatedSubjects: [{}]}}, \
          {{tenantId: {TENANT_B}, clientId: {CLIENT_B}, objectId: {OID_B}, clientSecret: {SECRET_B}}}]",
        subjects.join(", ")
    );
    let a = serve(world(SUB_A, TENANT_A, OID_A, &identities)).await;
    let b = serve(world(SUB_B, TENANT_B, OID_B, "[]")).await;
    let arm_metrics = appattach_operator::backend::throttle::ArmMetrics::default();
    let metrics = std::sync::Arc::new(controller::metrics::Metrics::new(Some(&arm_metrics)));
    let endpoints = Endpoints {
        authority_host: a.url(),
        imds: format!("{}/metadata/identity/oauth2/token", a.url()),
        audience: "https://management.azure.com".into(),
    };
    let targets = TargetSettings::<ArmClient> {
        make: Some(arm_clients(
            "http://127.0.0.1:9".into(),
            [(SUB_A.to_string(), a.url()), (SUB_B.to_string(), b.url())].into(),
            None,
            arm_metrics,
            None,
        )),
        endpoints: Some(endpoints),
        require_target: true,
        managed_identity_namespaces: vec![],
    };
    let config = Config {
        namespace: None,
        resync: Duration::from_secs(600),
        concurrency: 4,
        rollout_poll: Duration::from_millis(200),
        metrics: metrics.clone(),
        backend_refresh: Duration::from_secs(600),
        trusted_roots: None,
    };
    let controller = tokio::spawn(controller::run::<ArmClient>(
        teams[0].0.client.clone(),
        Backends {
            default: None,
            targets,
        },
        config,
    ));
    let estate = Estate {
        a,
        b,
        http: reqwest::Client::new(),
        metrics,
        _controller: controller.abort_handle(),
    };
    (estate, teams)
}

impl Drop for Estate {
    fn drop(&mut self) {
        self._controller.abort();
    }
}

fn target(name: &str, tenant: &str, sub: &str, credential: Value) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1", "kind": "BackendTarget",
        "metadata": {"name": name},
        "spec": {"tenantId": tenant, "subscriptionId": sub, "resourceGroup": RG, "credential": credential},
    })
}

fn workload(client: &str) -> Value {
    json!({"method": "WorkloadIdentity", "clientId": client})
}

fn client_secret(client: &str, secret: &str) -> Value {
    json!({"method": "ClientSecret", "clientId": client, "clientSecretRef": {"name": secret}})
}

async fn secret(ns: &TestNamespace, name: &str, value: &str) {
    ns.kubectl(&[
        "create",
        "secret",
        "generic",
        name,
        &format!("--from-literal=AZURE_CLIENT_SECRET={value}"),
    ])
    .unwrap();
}

/// Team A's default target: subscription A in tenant A, as A's workload identity (its
/// service account made here); team B's: subscription B in tenant B, with B's client secret.
async fn default_targets(team_a: &TestNamespace, team_b: &TestNamespace) {
    team_a
        .kubectl(&["create", "serviceaccount", "appattach-workload"])
        .unwrap();
    team_a
        .apply(&target("default", TENANT_A, SUB_A, workload(CLIENT_A)))
        .await
        .unwrap();
    team_b_target(team_b, SECRET_B).await;
}

/// Team B's default target: subscription B in tenant B, with the client secret `value` in
/// the Secret `avd-b` of B's namespace.
async fn team_b_target(team_b: &TestNamespace, value: &str) {
    secret(team_b, "avd-b", value).await;
    team_b
        .apply(&target(
            "default",
            TENANT_B,
            SUB_B,
            client_secret(CLIENT_B, "avd-b"),
        ))
        .await
        .unwrap();
}

/// A package with one host pool, in `ns`.
async fn package(ns: &TestNamespace, name: &str, target: Option<&str>) {
    let mut p = support::package(name);
    p["spec"]["image"]["path"] = json!(format!(r"\\fs\apps\{name}_1.0.0.0.vhdx"));
    p["spec"]["package"]["name"] = json!(format!("Contoso.{}", name.replace('-', "")));
    if let Some(t) = target {
        p["spec"]["target"] = json!(t);
    }
    ns.apply(&p).await.unwrap();
    let mut pools = support::host_pool_assignment(&format!("{name}-pools"), name);
    pools["spec"]["hostPools"] = json!([{"name": "hp-1", "ring": 0}]);
    ns.apply(&pools).await.unwrap();
}

async fn poll<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until the package's Ready condition has `status` and `reason`; returns its
/// message.
async fn ready(ns: &TestNamespace, name: &str, status: &str, reason: Option<&str>) -> String {
    poll(
        &format!("{}/{name} Ready={status} {reason:?}", ns.name),
        || async {
            let obj = serde_json::to_value(
                ns.api("AppAttachPackage")
                    .get(name)
                    .await
                    .map_err(|e| e.to_string())?,
            )
            .unwrap();
            obj["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["type"] == "Ready"
                        && c["status"] == status
                        && reason.is_none_or(|r| c["reason"] == r)
                })
                .map(|c| c["message"].as_str().unwrap_or_default().to_string())
                .ok_or_else(|| format!("status {}", obj["status"]))
        },
    )
    .await
}

/// The writes of packages of `ns` (their paths name the backend package, which names the
/// namespace).
fn touching(
    ws: Vec<(String, String, String)>,
    ns: &TestNamespace,
) -> Vec<(String, String, String)> {
    ws.into_iter()
        .filter(|(_, p, _)| p.contains(&ns.name))
        .collect()
}

/// The writes an emulator took: (method, path, principal).
async fn writes(http: &reqwest::Client, e: &Served) -> Vec<(String, String, String)> {
    let log: Value = http
        .get(format!("{}/_emulator/writes", e.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log.as_array()
        .or_else(|| log["value"].as_array())
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["method"].as_str().unwrap_or_default().to_string(),
                w["path"].as_str().unwrap_or_default().to_string(),
                w["principal"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Team A's packages land in subscription A as A's workload identity (a token of A's own
/// service account, exchanged in tenant A); team B's in subscription B, in tenant B, with
/// B's client secret. Each emulator took writes of its own principal only.
async fn each_namespace_lands_in_its_own_target_as_its_own_identity(
    e: &Estate,
    (team_a, team_b): &(TestNamespace, TestNamespace),
) {
    default_targets(team_a, team_b).await;
    package(team_a, "app-a", None).await;
    package(team_b, "app-b", None).await;
    ready(team_a, "app-a", "True", None).await;
    ready(team_b, "app-b", "True", None).await;
    let (in_a, in_b) = (writes(&e.http, &e.a).await, writes(&e.http, &e.b).await);
    assert!(
        in_a.iter()
            .any(|(m, p, _)| m == "PUT" && p.to_ascii_lowercase().contains("appattachpackages/")),
        "{in_a:?}"
    );
    assert!(
        in_b.iter()
            .any(|(m, p, _)| m == "PUT" && p.to_ascii_lowercase().contains("appattachpackages/")),
        "{in_b:?}"
    );
    assert!(
        in_a.iter()
            .all(|(_, p, who)| who == OID_A && p.contains(SUB_A)),
        "{in_a:?}"
    );
    assert!(
        in_b.iter()
            .all(|(_, p, who)| who == OID_B && p.contains(SUB_B)),
        "{in_b:?}"
    );
    assert!(
        !in_a.iter().any(|(_, p, _)| p.contains(&team_b.name)),
        "team B's package reached subscription A: {in_a:?}"
    );
    // The requests are counted under their targets.
    let text = e.metrics.render();
    for t in [&team_a.name, &team_b.name] {
        assert!(
            text.contains(&format!(r#"target="{t}/default""#)),
            "no requests counted for {t}/default: {text}"
        );
    }
}

/// A namespace cannot act as another's identity: a target that copies team A's client id
/// exchanges a token of its own namespace's service account, which A's identity is not
/// federated with; a target that names team B's Secret finds no such Secret in its own
/// namespace. Both are Ready=False naming the target and the fix, with nothing written.
async fn a_namespace_cannot_use_another_namespaces_identity_or_secret(
    e: &Estate,
    (team_a, team_b): &(TestNamespace, TestNamespace),
) {
    // Team A is set up properly (its Secret and service account exist); team B tries to
    // borrow both.
    team_a
        .kubectl(&["create", "serviceaccount", "appattach-workload"])
        .unwrap();
    secret(team_a, "avd-a", "not-for-b").await;
    team_b
        .kubectl(&["create", "serviceaccount", "appattach-workload"])
        .unwrap();
    team_b
        .apply(&target("default", TENANT_A, SUB_A, workload(CLIENT_A)))
        .await
        .unwrap();
    team_b
        .apply(&target(
            "borrowed",
            TENANT_B,
            SUB_B,
            client_secret(CLIENT_B, "avd-a"),
        ))
        .await
        .unwrap();
    package(team_b, "stolen-id", None).await;
    package(team_b, "stolen-secret", Some("borrowed")).await;
    package(team_b, "nowhere", Some("missing")).await;
    let m = ready(team_b, "stolen-id", "False", Some("TargetCredentialFailed")).await;
    assert!(
        m.contains(&format!("{}/default", team_b.name)) && m.contains("AADSTS70021"),
        "{m}"
    );
    let m = ready(
        team_b,
        "stolen-secret",
        "False",
        Some("TargetCredentialFailed"),
    )
    .await;
    assert!(
        m.contains(&format!("Secret {}/avd-a does not exist", team_b.name)),
        "{m}"
    );
    let m = ready(team_b, "nowhere", "False", Some("TargetNotFound")).await;
    assert!(m.contains("missing") && m.contains("create it"), "{m}");
    // A namespace with no target at all, under --require-backend-target.
    package(team_a, "no-target", None).await;
    let m = ready(team_a, "no-target", "False", Some("NoBackendTarget")).await;
    assert!(m.contains(&team_a.name), "{m}");
    for (emulator, team) in [
        (&e.a, team_a),
        (&e.a, team_b),
        (&e.b, team_a),
        (&e.b, team_b),
    ] {
        let ws = touching(writes(&e.http, emulator).await, team);
        assert!(ws.is_empty(), "{ws:?}");
    }
}

/// A target whose client secret is wrong reports Entra ID's refusal and writes nothing;
/// once the Secret is fixed, the package lands.
async fn a_target_with_a_bad_credential_reports_and_writes_nothing_until_fixed(
    e: &Estate,
    (_, team_b): &(TestNamespace, TestNamespace),
) {
    team_b_target(team_b, "wrong").await;
    package(team_b, "cred-app", None).await;
    let m = ready(team_b, "cred-app", "False", Some("TargetCredentialFailed")).await;
    assert!(m.contains("AADSTS7000215") && !m.contains("wrong"), "{m}");
    assert!(touching(writes(&e.http, &e.b).await, team_b).is_empty());
    team_b.kubectl(&["delete", "secret", "avd-b"]).unwrap();
    secret(team_b, "avd-b", SECRET_B).await;
    ready(team_b, "cred-app", "True", None).await;
    assert!(!touching(writes(&e.http, &e.b).await, team_b).is_empty());
}

/// Budgets and pictures are per target: while subscription A answers every request with
/// 429 and a long Retry-After, team B's package lands in subscription B as fast as ever.
async fn one_target_throttled_does_not_slow_the_other(
    e: &Estate,
    (team_a, team_b): &(TestNamespace, TestNamespace),
) {
    default_targets(team_a, team_b).await;
    let fault = e
        .http
        .post(format!("{}/_emulator/faults", e.a.url()))
        .json(&json!({"status": 429, "retryAfterSeconds": 300, "count": 100000}))
        .send()
        .await
        .unwrap();
    assert!(
        fault.status().is_success(),
        "{}",
        fault.text().await.unwrap()
    );
    package(team_a, "slow-a", None).await;
    package(team_b, "fast-b", None).await;
    ready(team_b, "fast-b", "True", None).await;
    let a =
        serde_json::to_value(team_a.api("AppAttachPackage").get("slow-a").await.unwrap()).unwrap();
    let ready_a = a["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(!ready_a, "subscription A throttles everything, yet {a}");
}

/// The scenarios, in one estate: the controller watches every namespace, so two
/// controllers in one control plane would fight over each other's packages. Each
/// scenario has its own namespaces and package names; the throttled one goes last.
#[tokio::test]
async fn one_controller_serves_several_subscriptions_and_tenants() {
    let (e, teams) = estate(&["own", "iso", "cred", "budget"]).await;
    each_namespace_lands_in_its_own_target_as_its_own_identity(&e, &teams[0]).await;
    a_namespace_cannot_use_another_namespaces_identity_or_secret(&e, &teams[1]).await;
    a_target_with_a_bad_credential_reports_and_writes_nothing_until_fixed(&e, &teams[2]).await;
    one_target_throttled_does_not_slow_the_other(&e, &teams[3]).await;
}
