//! The roots the session hosts trust, declared in a ConfigMap (`--trusted-roots
//! NAMESPACE/NAME`): every value of its `data` holding PEM certificates, and every value
//! of its `binaryData` (PEM or one DER certificate). Cached from a watch; read once per
//! resourceVersion.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::observe::TrustView;
use crate::inspect::trust::TrustedRoots;

/// The name of the ConfigMap of trusted roots that deploy/ and the chart grant the
/// controller, and that `appattach validate` reads from the manifests.
pub const CONFIGMAP: &str = "appattach-trusted-roots";

/// How long a pass waits for the ConfigMap's first list.
const LISTED_WITHIN: Duration = Duration::from_secs(10);

/// The declared roots, as the passes read them.
pub struct TrustSource {
    /// `ConfigMap NAMESPACE/NAME`, for messages.
    source: String,
    key: ObjectRef<ConfigMap>,
    store: Store<ConfigMap>,
    parsed: Mutex<Option<(Option<String>, Arc<TrustView>)>>,
}

impl TrustSource {
    /// The roots declared in the ConfigMap `namespace/name`, as `store` caches it.
    pub fn new(namespace: &str, name: &str, store: Store<ConfigMap>) -> Self {
        Self {
            source: format!("ConfigMap {namespace}/{name}"),
            key: ObjectRef::new(name).within(namespace),
            store,
            parsed: Mutex::new(None),
        }
    }

    /// What the ConfigMap declares now, or why it cannot be read.
    pub async fn view(&self) -> Arc<TrustView> {
        let unavailable = |why: String| {
            Arc::new(TrustView::Unavailable {
                source: self.source.clone(),
                why,
            })
        };
        if tokio::time::timeout(LISTED_WITHIN, self.store.wait_until_ready())
            .await
            .is_err()
        {
            return unavailable(format!(
                "not listed after {}s: the controller needs get, list and watch on configmaps in its namespace (deploy/ RBAC)",
                LISTED_WITHIN.as_secs()
            ));
        }
        let Some(cm) = self.store.get(&self.key) else {
            return unavailable(format!(
                "it does not exist: create it with the PEM certificates of the roots the session hosts trust (kubectl -n {} create configmap {} --from-file=roots.pem)",
                self.key.namespace.as_deref().unwrap_or_default(),
                self.key.name
            ));
        };
        let version = cm.resource_version();
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, view)) = parsed.as_ref()
            && *v == version
        {
            return view.clone();
        }
        let view = Arc::new(TrustView::of(self.source.clone(), roots_of(&cm)));
        *parsed = Some((version, view.clone()));
        view
    }
}

/// The certificates of a ConfigMap: its `data` values (PEM) and `binaryData` values (PEM
/// or DER), each key named in errors.
pub fn roots_of(cm: &ConfigMap) -> Result<TrustedRoots, String> {
    let mut roots = TrustedRoots::default();
    let mut keys = 0;
    for (key, value) in cm.data.iter().flatten() {
        if value.contains("-----BEGIN CERTIFICATE-----") {
            keys += 1;
            roots
                .add(value.as_bytes(), &format!("data.{key}"))
                .map_err(|e| e.to_string())?;
        }
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        keys += 1;
        roots
            .add(&value.0, &format!("binaryData.{key}"))
            .map_err(|e| e.to_string())?;
    }
    if keys == 0 {
        return Err(
            "it holds no certificate: put PEM certificates (-----BEGIN CERTIFICATE-----) in its data"
                .into(),
        );
    }
    Ok(roots)
}
