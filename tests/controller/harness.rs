//! One test's world: a namespace, an emulator, and a controller watching that namespace.

use std::time::{Duration, Instant};

use appattach_operator::backend::{ArmClient, Auth};
use appattach_operator::controller::{self, Config};
use appattach_operator::emulator::{self, Emulator, Served, World};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::TestNamespace;

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const RG: &str = "rg-avd";
pub const FINANCE: &str = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";
pub const SALES: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f2a3b4c5d";
/// The Designers group of the worlds that have one (the RemoteApp tests').
pub const DESIGNERS: &str = "0d9c8b7a-6e5f-4a3b-9c2d-1e0f9a8b7c6d";

fn world() -> World {
    serde_yaml_ng::from_str(&format!(
        r#"
subscription: {SUB}
resourceGroup: {RG}
hostPools:
  - {{name: hp-a, location: westeurope, identityProvider: EntraID, sessionHosts: [{{name: a-0, os: Windows11}}, {{name: a-1, os: Windows11}}]}}
  - {{name: hp-b, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: b-0, os: Windows11}}]}}
  - {{name: hp-north, location: northeurope, identityProvider: ADDS, sessionHosts: [{{name: n-0, os: Windows11}}]}}
  - {{name: hp-entrads, location: westeurope, identityProvider: EntraDS, sessionHosts: [{{name: e-0, os: Windows11}}]}}
  - {{name: hp-server, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: s-0, os: WindowsServer}}]}}
  - {{name: hp-r0, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r0-0, os: Windows11}}, {{name: r0-1, os: Windows11}}]}}
  - {{name: hp-r1, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r1-0, os: Windows11}}]}}
  - {{name: hp-r2, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: r2-0, os: Windows11}}]}}
  - {{name: hp-m, location: westeurope, identityProvider: ADDS, sessionHosts: [{{name: m-0, os: Windows11}}, {{name: m-1, os: Windows11}}, {{name: m-2, os: Windows11}}]}}
applicationGroups:
  - {{name: ag-a, hostPool: hp-a, type: Desktop, members: [Finance]}}
  - {{name: ag-b, hostPool: hp-b, type: Desktop, members: [Finance, Sales]}}
  - {{name: ag-r0, hostPool: hp-r0, type: Desktop, members: [Finance, Sales]}}
  - {{name: ag-r1, hostPool: hp-r1, type: Desktop, members: [Finance, Sales]}}
  - {{name: ag-r2, hostPool: hp-r2, type: Desktop, members: [Finance, Sales]}}
  - {{name: ag-m, hostPool: hp-m, type: Desktop, members: [Finance, Sales]}}
directory:
  groups: [{{name: Finance, objectId: {FINANCE}}}, {{name: Sales, objectId: {SALES}}}]
  users:
    - {{upn: alice@contoso.com, objectId: 3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f, groups: [Finance]}}
    - {{upn: bob@contoso.com, objectId: 4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a, groups: [Sales]}}
"#
    ))
    .unwrap()
}

pub struct Env {
    pub ns: TestNamespace,
    pub emulator: Served,
    pub http: reqwest::Client,
    controller: Option<JoinHandle<()>>,
    resync: Duration,
    /// Packages reconciled at once by the next controller started.
    pub concurrency: u16,
    /// The local folder behind the share `\\fs\apps` (staging environments only).
    pub share: std::path::PathBuf,
    /// The controller's metrics.
    pub metrics: std::sync::Arc<controller::metrics::Metrics>,
    /// How the next controller started authenticates to the emulator.
    pub auth: Auth,
    /// The next controller's ARM request budget, if any.
    pub limits: Option<appattach_operator::backend::throttle::Limits>,
    /// The ConfigMap (namespace, name) of trusted roots the next controller reads.
    pub trusted_roots: Option<(String, String)>,
    _state: tempfile::TempDir,
}

/// The UNC root of the test share.
pub const SHARE: &str = r"\\fs\apps";

/// How often session hosts stage and a rollout looks at its gate, in staging environments.
pub const TICK: Duration = Duration::from_millis(150);

impl Env {
    /// A namespace, an emulator, and a controller with this resync period.
    pub async fn new(test: &str, resync: Duration) -> Self {
        Self::build(test, resync, false).await
    }

    /// An environment whose session hosts stage images from a real share folder, every
    /// [`TICK`], as the service's do.
    pub async fn staging(test: &str) -> Self {
        Self::build(test, Duration::from_secs(600), true).await
    }

    /// An environment whose emulator requires `Authorization: Bearer {token}`.
    pub async fn with_token(test: &str, token: &str) -> Self {
        Self::build_with(
            test,
            Duration::from_secs(600),
            false,
            Some(token.to_string()),
        )
        .await
    }

    /// An environment with a world of its own.
    pub async fn with_world(test: &str, resync: Duration, world: World) -> Self {
        Self::build_in(test, resync, false, None, world).await
    }

    /// A staging environment (see [`Env::staging`]) with a world of its own.
    pub async fn staging_with_world(test: &str, world: World) -> Self {
        Self::build_in(test, Duration::from_secs(600), true, None, world).await
    }

    async fn build(test: &str, resync: Duration, staging: bool) -> Self {
        Self::build_with(test, resync, staging, None).await
    }

    async fn build_with(
        test: &str,
        resync: Duration,
        staging: bool,
        token: Option<String>,
    ) -> Self {
        Self::build_in(test, resync, staging, token, world()).await
    }

    async fn build_in(
        test: &str,
        resync: Duration,
        staging: bool,
        token: Option<String>,
        world: World,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let ns = TestNamespace::new(test).await;
        let state = tempfile::tempdir().unwrap();
        let share = state.path().join("share");
        std::fs::create_dir_all(&share).unwrap();
        let emulator = Emulator::start(emulator::Config {
            world: Some(world),
            shares: if staging {
                vec![format!("{SHARE}={}", share.display()).parse().unwrap()]
            } else {
                vec![]
            },
            state_dir: Some(state.path().join("s")),
            token,
            staging_interval: staging.then_some(TICK),
            arm_budget: None,
        })
        .await
        .unwrap();
        let mut env = Self {
            ns,
            emulator,
            http: reqwest::Client::new(),
            controller: None,
            resync,
            concurrency: 4,
            share,
            metrics: Default::default(),
            auth: Auth::None,
            limits: None,
            trusted_roots: None,
            _state: state,
        };
        env.start_controller();
        env
    }

    pub fn start_controller(&mut self) {
        let mut backend = ArmClient::new(&self.emulator.url(), SUB, RG, self.auth.clone());
        if let Some(limits) = self.limits {
            backend = backend.with_limits(limits);
        }
        let config = Config {
            namespace: Some(self.ns.name.clone()),
            resync: self.resync,
            concurrency: self.concurrency,
            rollout_poll: TICK,
            metrics: self.metrics.clone(),
            backend_refresh: self.resync,
            trusted_roots: self.trusted_roots.clone(),
        };
        self.controller = Some(tokio::spawn(controller::run(
            self.ns.client.clone(),
            backend,
            config,
        )));
    }

    pub async fn stop_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
            let _ = c.await;
        }
    }

    /// The backend name of a package of this namespace.
    pub fn backend_name(&self, name: &str) -> String {
        appattach_operator::domain::naming::backend_name(&self.ns.name, name)
    }

    pub fn package_path(&self, name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization/appAttachPackages/{}",
            self.backend_name(name)
        )
    }

    pub fn pool_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DesktopVirtualization/hostPools/{name}"
        )
    }

    /// An ARM or admin request to the emulator.
    pub async fn arm(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if path.starts_with("/_emulator") || path.contains("api-version") {
            format!("{}{path}", self.emulator.url())
        } else {
            format!("{}{path}{sep}api-version=2024-04-03", self.emulator.url())
        };
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.arm(reqwest::Method::GET, path, None).await
    }

    /// Role assignments at the package's scope.
    pub async fn roles(&self, package: &str) -> Vec<Value> {
        let (_, list) = self
            .get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()", self.package_path(package)))
            .await;
        list["value"].as_array().cloned().unwrap_or_default()
    }

    /// The arguments of `appattach controller` for this world: the emulator as backend,
    /// this test's namespace watched, a resync no test waits for.
    pub fn controller_args(&self) -> Vec<String> {
        [
            "--arm-endpoint",
            &self.emulator.url(),
            "--subscription",
            SUB,
            "--resource-group",
            RG,
            "--namespace",
            &self.ns.name,
            "--resync",
            "5m",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Deletes `kind/name` of this namespace.
    pub async fn delete(&self, kind: &str, name: &str) {
        self.ns
            .api(kind)
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .unwrap();
    }

    /// Whether `kind/name` exists in this namespace.
    pub async fn exists(&self, kind: &str, name: &str) -> bool {
        self.ns.api(kind).get_opt(name).await.unwrap().is_some()
    }

    /// Passes the controller has made over objects of `kind` (its reconcile counter).
    pub fn passes(&self, kind: &str) -> u64 {
        let text = self.metrics.render();
        let prefix = format!("appattach_reconciles_total{{kind=\"{kind}\",");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub async fn counts(&self) -> Value {
        self.get("/_emulator/requests").await.1
    }

    pub async fn reset_counts(&self) {
        self.arm(reqwest::Method::DELETE, "/_emulator/requests", None)
            .await;
    }

    /// Waits until `kind/name` has condition `type_` with `status` (and `reason`, when
    /// given) for its current generation; returns the object.
    pub async fn wait_condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Value {
        poll(
            &format!("{kind}/{name} with {type_}={status} {reason:?}"),
            || async {
                let obj = serde_json::to_value(
                    self.ns
                        .api(kind)
                        .get(name)
                        .await
                        .map_err(|e| e.to_string())?,
                )
                .unwrap();
                let holds = obj["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c["type"] == type_
                            && c["status"] == status
                            && reason.is_none_or(|r| c["reason"] == r)
                    });
                if holds && obj["status"]["observedGeneration"] == obj["metadata"]["generation"] {
                    Ok(obj)
                } else {
                    Err(format!("status {}", obj["status"]))
                }
            },
        )
        .await
    }

    /// Waits until a package is Ready with this many host pools and principals (an early
    /// pass, before its assignments were seen, is Ready with fewer).
    pub async fn wait_package(&self, name: &str, pools: u64, principals: u64) -> Value {
        poll(
            &format!("{name} Ready with {pools} pools and {principals} principals"),
            || async {
                let obj = self.wait_ready("AppAttachPackage", name).await;
                let st = &obj["status"];
                if st["hostPoolCount"] == pools && st["principalCount"] == principals {
                    Ok(obj)
                } else {
                    Err(format!("status {st}"))
                }
            },
        )
        .await
    }

    pub async fn wait_ready(&self, kind: &str, name: &str) -> Value {
        self.wait_condition(kind, name, "Ready", "True", None).await
    }

    /// Polls `check` until it holds.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        poll(what, || {
            let fut = check();
            async move {
                if fut.await {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        })
        .await
    }

    /// Applies package `name` with `{name}-pools` on `pools` and `{name}-users` for the
    /// Finance group: the common shape of a package under test.
    pub async fn apply_assigned(&self, name: &str, pools_: &[(&str, i32)]) {
        self.ns.apply(&package(name)).await.unwrap();
        self.ns
            .apply(&pools(&format!("{name}-pools"), name, pools_))
            .await
            .unwrap();
        let finance = [("Group", "Finance", Some(FINANCE))];
        self.ns
            .apply(&users(&format!("{name}-users"), name, &finance))
            .await
            .unwrap();
    }

    /// Events about an object of this namespace.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.ns.client.clone(), &self.ns.name);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits for a Warning event with this reason about `name`.
    pub async fn wait_warning(&self, name: &str, reason: &str) -> Event {
        poll(
            &format!("a Warning event {reason} about {name}"),
            || async {
                let events = self.events(name).await;
                let found = events
                    .iter()
                    .find(|e| {
                        e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
                    })
                    .cloned();
                found.ok_or_else(|| format!("events {events:?}"))
            },
        )
        .await
    }

    pub async fn signin(&self, user: &str, pool: &str) -> Value {
        let (status, body) = self
            .arm(
                reqwest::Method::POST,
                "/_emulator/signin",
                Some(json!({"user": user, "hostPool": pool})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Polls `attempt` every 100 ms until it returns `Ok`; after two minutes fails with `what`
/// and the last `Err` it gave (the state it saw).
pub async fn poll<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    poll_within(what, Duration::from_secs(120), attempt).await
}

/// [`poll`] with another deadline.
pub async fn poll_within<T, F, Fut>(what: &str, within: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "never within {within:?}: {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
    }
}

/// A package manifest.
pub fn package(name: &str) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "AppAttachPackage",
        "metadata": {"name": name},
        "spec": {
            "location": "westeurope",
            "image": {"path": format!(r"\\fs\apps\{name}_1.0.0.0.vhdx")},
            "package": {"type": "Msix", "name": format!("Contoso.{}", name.replace('-', "")), "publisher": "CN=Contoso", "version": "1.0.0.0",
                        "applications": [{"id": "App", "displayName": "App"}]},
            "certificate": {"subject": "CN=Contoso", "expiry": "2030-01-01T00:00:00Z", "timestamped": true}
        }
    })
}

pub fn pools(name: &str, package: &str, pools: &[(&str, i32)]) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": name},
        "spec": {"packageRef": {"name": package}, "hostPools": pools.iter().map(|(n, r)| json!({"name": n, "ring": r})).collect::<Vec<_>>()}
    })
}

pub fn users(name: &str, package: &str, principals: &[(&str, &str, Option<&str>)]) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "UserAssignment",
        "metadata": {"name": name},
        "spec": {"packageRef": {"name": package}, "principals": principals.iter().map(|(k, n, id)| {
            let mut p = json!({"kind": k, "name": n});
            if let Some(id) = id { p["objectId"] = json!(id); }
            p
        }).collect::<Vec<_>>()}
    })
}
