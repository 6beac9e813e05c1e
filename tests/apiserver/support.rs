//! The shared control plane and per-test namespaces.

use std::path::PathBuf;

use appattach_operator::controlplane::{Binaries, ControlPlane};
use appattach_operator::gitops::apiserver::{self, Refusal};
use appattach_operator::resources::{AppAttachPackage, HostPoolAssignment, UserAssignment};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

static CONTROL_PLANE: OnceCell<ControlPlane> = OnceCell::const_new();

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The control plane of this test binary, started on first use with the CRDs from `crds/`
/// installed. Its servers stop when the test process ends, however it ends.
pub async fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE
        .get_or_init(|| async {
            let binaries = Binaries::locate().unwrap_or_else(|e| panic!("{e}"));
            let cp = ControlPlane::start(&binaries)
                .await
                .unwrap_or_else(|e| panic!("starting the control plane: {e}"));
            let crds = std::fs::read_to_string(repo_path("crds/appattach.io.yaml"))
                .expect("crds/appattach.io.yaml is readable");
            cp.install_crds(&crds)
                .unwrap_or_else(|e| panic!("installing crds/appattach.io.yaml: {e}"));
            cp
        })
        .await
}

/// One test's namespace on the shared control plane.
pub struct TestNamespace {
    pub cp: &'static ControlPlane,
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates a fresh namespace named after the test.
    pub async fn new(test: &str) -> Self {
        let cp = control_plane().await;
        let client = cp.client().await.expect("a client for the control plane");
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let base: String = test.replace('_', "-").chars().take(50).collect();
        let name = format!("{}-{suffix}", base.trim_end_matches('-'));
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { cp, client, name }
    }

    /// kubectl in this namespace; stdout, or the error quoting stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl_output(&all).map_err(|e| e.to_string())
    }

    /// An untyped API for one of our kinds, so tests can send what the Rust types could
    /// never hold (unknown enum values, wrong shapes).
    pub fn api(&self, kind: &str) -> Api<DynamicObject> {
        let resource = match kind {
            "AppAttachPackage" => ApiResource::erase::<AppAttachPackage>(&()),
            "HostPoolAssignment" => ApiResource::erase::<HostPoolAssignment>(&()),
            "UserAssignment" => ApiResource::erase::<UserAssignment>(&()),
            "BackendTarget" => {
                ApiResource::erase::<appattach_operator::resources::BackendTarget>(&())
            }
            "ConfigMap" => ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            other => panic!("not one of our kinds: {other}"),
        };
        Api::namespaced_with(self.client.clone(), &self.name, &resource)
    }

    /// Server-side applies one object (JSON with apiVersion, kind and metadata.name).
    pub async fn apply(&self, object: &Value) -> Result<DynamicObject, kube::Error> {
        let kind = object["kind"].as_str().expect("object has a kind");
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has a name");
        self.api(kind)
            .patch(
                name,
                &PatchParams::apply("appattach-tests").force(),
                &Patch::Apply(object),
            )
            .await
    }

    /// Applies an object that must be refused; returns the API server's message.
    #[allow(dead_code)] // the API server tests now look at the whole Status
    pub async fn refused(&self, object: &Value) -> String {
        self.refusal(object).await.message
    }

    /// Applies an object that must be refused; returns the API server's whole Status.
    pub async fn refusal(&self, object: &Value) -> Status {
        match self.apply(object).await {
            Ok(_) => panic!(
                "the API server accepted a manifest it should refuse:\n{}",
                serde_json::to_string_pretty(object).unwrap()
            ),
            Err(kube::Error::Api(status)) => *status,
            Err(other) => panic!("expected a refusal from the API server, got {other}"),
        }
    }

    /// Server-side applies one object that must be accepted; returns it as stored.
    pub async fn applied(&self, object: &Value) -> Value {
        let live = self
            .apply(object)
            .await
            .unwrap_or_else(|e| panic!("a valid manifest was refused: {e}"));
        serde_json::to_value(live).expect("a stored object is JSON")
    }
}

/// Asserts that the offline check (`appattach validate`) refuses `object` exactly as the API
/// server did in `status`: the same causes, and the same message once ours are put in the
/// server's order (which follows Go's random map order where several fields are wrong).
/// `old` is the object as stored before, for an update.
pub fn assert_offline_agrees(object: &Value, old: Option<&Value>, status: &Status) {
    let ours = apiserver::check(object, old);
    let listed =
        |refusals: &[Refusal]| -> String { refusals.iter().map(|r| format!("\n  {r}")).collect() };
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    if causes.is_empty() {
        // Server-side apply's own refusals carry no causes, only the message, which lists
        // its errors one per line.
        let lines = |message: &str| {
            let mut lines: Vec<String> = message.lines().map(str::to_string).collect();
            lines.sort();
            lines
        };
        let mine = apiserver::message(object, &ours);
        assert_eq!(
            lines(&mine),
            lines(&status.message),
            "the offline check disagrees with the API server\n ours: {mine}\n API server: {}",
            status.message
        );
        return;
    }
    let mut remaining = ours.clone();
    let mut in_server_order = Vec::new();
    for cause in causes {
        let Some(i) = remaining
            .iter()
            .position(|r| r.field == cause.field && r.detail == cause.message)
        else {
            panic!(
                "the offline check misses the API server's cause\n  {}: {}\nours:{}\nAPI server: {}",
                cause.field,
                cause.message,
                listed(&ours),
                status.message
            );
        };
        in_server_order.push(remaining.remove(i));
    }
    assert!(
        remaining.is_empty(),
        "the offline check refuses more than the API server:{}\nAPI server: {}",
        listed(&remaining),
        status.message
    );
    assert_eq!(
        apiserver::message(object, &in_server_order),
        status.message,
        "the offline check words the refusal differently"
    );
}

/// Asserts that the offline check accepts `object`, as the API server did.
pub fn assert_offline_accepts(object: &Value, old: Option<&Value>) {
    let ours = apiserver::check(object, old);
    assert!(
        ours.is_empty(),
        "the API server accepted a manifest the offline check refuses:\n{}\n{}",
        apiserver::message(object, &ours),
        serde_json::to_string_pretty(object).unwrap()
    );
}

/// Asserts a refusal message names every one of these fragments (a field path, a hint),
/// ignoring case: server-side apply says "duplicate entries" where create says "Duplicate value".
pub fn assert_names(message: &str, fragments: &[&str]) {
    for f in fragments {
        assert!(
            message.to_lowercase().contains(&f.to_lowercase()),
            "the refusal should contain {f:?}, but it was:\n{message}"
        );
    }
}

/// A valid AppAttachPackage named `name`.
pub fn package(name: &str) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "AppAttachPackage",
        "metadata": {"name": name},
        "spec": {
            "location": "westeurope",
            "image": {"path": r"\\fs.contoso.com\appattach\Contoso.App_1.0.0.0.cim"},
            "package": {
                "type": "Msix",
                "name": "Contoso.App",
                "publisher": "CN=Contoso",
                "version": "1.0.0.0"
            }
        }
    })
}

/// A valid HostPoolAssignment named `name`, pointing at package `package`.
pub fn host_pool_assignment(name: &str, package: &str) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "HostPoolAssignment",
        "metadata": {"name": name},
        "spec": {
            "packageRef": {"name": package},
            "hostPools": [{"name": "hp-pilot", "ring": 0}, {"name": "hp-prod", "ring": 1}]
        }
    })
}

/// A valid UserAssignment named `name`, pointing at package `package`.
pub fn user_assignment(name: &str, package: &str) -> Value {
    json!({
        "apiVersion": "appattach.io/v1alpha1",
        "kind": "UserAssignment",
        "metadata": {"name": name},
        "spec": {
            "packageRef": {"name": package},
            "principals": [
                {"kind": "Group", "name": "Finance", "objectId": "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"},
                {"kind": "User", "name": "alice@contoso.com"}
            ]
        }
    })
}

/// Sets `pointer` (a JSON pointer) in `value`, creating objects on the way.
pub fn set(mut value: Value, pointer: &str, new: Value) -> Value {
    let mut cur = &mut value;
    for part in pointer.trim_start_matches('/').split('/') {
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("an object")
                    .entry(part.to_string())
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = new;
    value
}

/// Removes `pointer` from `value`.
pub fn remove(mut value: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("the parent is an object")
        .remove(key);
    value
}

/// Every leaf of `expected` is in `actual` with the same value; names the first path that
/// differs.
pub fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let sub = format!("{path}.{k}");
                let got = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{sub} was dropped by the API server"));
                assert_subset(v, got, &sub);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path} changed length");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_subset(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path} read back differently"),
    }
}

/// Whether a finished command succeeded, and what it printed (stdout, then stderr).
#[allow(dead_code)] // used by the controller tests, which share this file
pub fn outcome(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
