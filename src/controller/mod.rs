//! The controller: reconciles each AppAttachPackage, with the assignments that point at
//! it, into the management backend, and reports what it did in status and events.
//!
//! The package is the unit of reconcile. Each pass **observes** once ([`observe`]: the
//! objects, the backend's side, the rollout record, the time), **decides** in one pure
//! function ([`decide`]: the intent to record, the ordered writes, the whole status, the
//! events, when to come back; the rollout [`planner`] is part of it), and **executes**
//! thinly (intent first, writes in order, each status once). Only the difference is
//! written: a steady state writes nothing, neither to the backend nor to the API server.

pub mod build;
pub mod decide;
mod events;
mod execute;
#[cfg(test)]
mod fidelity;
mod index;
pub mod metrics;
pub mod observe;
pub mod planner;
mod reconcile;
mod refresh;
mod runtime;
pub use reconcile::Assignment;
pub use runtime::{Backends, run, run_until};
mod status;
pub mod targets;
pub mod trust;
pub mod validate;
mod warmup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};

use crate::backend::BackendError;
use crate::backend::snapshot::Snapshot;
use crate::resources::{AppAttachPackage, HostPoolAssignment, UserAssignment};
use index::Index;

/// Finalizer that guards a package's backend resources.
pub const FINALIZER: &str = "appattach.io/cleanup";
/// Annotation choosing how the controller treats an object.
pub const POLICY_ANNOTATION: &str = "appattach.io/reconcile-policy";
/// Annotation that lets the controller take over a backend package made elsewhere.
pub const ADOPT_ANNOTATION: &str = "appattach.io/adopt";
/// Field manager of every write the controller makes.
pub const MANAGER: &str = "appattach-controller";

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Watch one namespace only; all when absent.
    pub namespace: Option<String>,
    /// How often a Ready package is checked against the backend (drift), before jitter.
    pub resync: Duration,
    /// Packages reconciled at once.
    pub concurrency: u16,
    /// How often a running rollout looks at its gate, and sessions on old images are
    /// counted.
    pub rollout_poll: Duration,
    /// Where the controller's metrics are kept.
    pub metrics: Arc<metrics::Metrics>,
    /// How often the shared picture of the backend is read again with list calls. Passes
    /// read it, not the backend; writes wait when it is older than three periods.
    pub backend_refresh: Duration,
    /// The ConfigMap (namespace, name) declaring the roots the session hosts trust; a
    /// package whose `spec.certificate.root` is not among them is not Ready
    /// (`CertificateUntrusted`). Not checked when absent.
    pub trusted_roots: Option<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            resync: Duration::from_secs(30 * 60),
            concurrency: 8,
            rollout_poll: Duration::from_secs(15),
            metrics: Arc::default(),
            backend_refresh: Duration::from_secs(10 * 60),
            trusted_roots: None,
        }
    }
}

impl Config {
    /// How old the picture of the backend may be before writes wait for a fresh one.
    pub fn max_snapshot_age(&self) -> Duration {
        self.backend_refresh * 3
    }
}

/// `appattach.io/reconcile-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Reconcile and clean up (default).
    Manage,
    /// Observe and report drift; never write to the backend.
    Skip,
    /// Reconcile, but leave the backend resources when the object is deleted.
    DetachOnDelete,
}

impl Policy {
    /// The policy an object's annotation asks for; an unknown value is an error naming it.
    pub fn of(obj: &impl ResourceExt) -> Result<Self, String> {
        match obj.annotations().get(POLICY_ANNOTATION).map(String::as_str) {
            None | Some("manage") => Ok(Self::Manage),
            Some("skip") => Ok(Self::Skip),
            Some("detach-on-delete") => Ok(Self::DetachOnDelete),
            Some(other) => Err(format!(
                "metadata.annotations[{POLICY_ANNOTATION}] is {other:?}; use manage, skip or detach-on-delete"
            )),
        }
    }
}

/// Errors that end a reconcile early; the error policy retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend failed in a way that may pass.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// The API server failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Backend(BackendError::Throttled(_)) => "throttled",
            Self::Backend(BackendError::Budget(_)) => "budget",
            Self::Backend(_) => "backend",
            Self::Kube(_) => "kubernetes",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// What every reconcile shares.
pub struct Context<B> {
    /// The Kubernetes client.
    pub client: Client,
    /// The management backends: the operator's own, and the namespaces' targets.
    pub lanes: targets::Lanes<B>,
    /// Settings.
    pub config: Config,
    packages: Store<AppAttachPackage>,
    host_pool_assignments: Store<HostPoolAssignment>,
    user_assignments: Store<UserAssignment>,
    packages_by_full_name: Index<AppAttachPackage>,
    hpa_by_package: Index<HostPoolAssignment>,
    ua_by_package: Index<UserAssignment>,
    /// The roots the session hosts trust, when declared.
    trust: Option<trust::TrustSource>,
    events: events::Publisher,
    /// Paces a start's first passes behind real changes.
    warm_up: Arc<warmup::WarmUp>,
    failures: Mutex<HashMap<String, u32>>,
}

impl<B> Context<B> {
    fn record_failure(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn reset_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// What one pass works with: the shared context, and the backend of its package's target
/// with that backend's picture.
pub(crate) struct Pass<'a, B> {
    /// The shared context.
    pub ctx: &'a Context<B>,
    /// The package's backend.
    pub backend: &'a B,
    /// The picture of that backend.
    pub snapshot: &'a Arc<Snapshot>,
}

impl<B> std::ops::Deref for Pass<'_, B> {
    type Target = Context<B>;
    fn deref(&self) -> &Context<B> {
        self.ctx
    }
}

impl<'a, B> Pass<'a, B> {
    /// A pass on a lane.
    pub fn on(ctx: &'a Context<B>, lane: &'a targets::Lane<B>) -> Self {
        Self {
            ctx,
            backend: &lane.backend,
            snapshot: &lane.snapshot,
        }
    }
}

/// Resync with jitter: up to a tenth more, spread by object so resyncs do not bunch.
fn resync_after(config: &Config, key: &str) -> Action {
    let spread = key
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1000;
    let base = config.resync.as_millis() as u64;
    Action::requeue(Duration::from_millis(base + base * spread / 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_spread_by_object_within_a_tenth() {
        let config = Config {
            resync: Duration::from_secs(1000),
            ..Config::default()
        };
        let delays: Vec<Action> = ["a/x", "b/y", "c/z"]
            .iter()
            .map(|k| resync_after(&config, k))
            .collect();
        for d in &delays {
            let text = format!("{d:?}");
            assert!(text.contains("requeue_after: Some("), "{text}");
        }
        assert_ne!(format!("{:?}", delays[0]), format!("{:?}", delays[1]));
    }
}
