//! The controller's Prometheus metrics.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::resources::{RolloutPhase, RolloutStatus};

/// Labels of a per-package rollout step.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Namespace of the package.
    pub namespace: String,
    /// Name of the package.
    pub name: String,
    /// The step (`Pending`, `Switching`, `Staging`, `Soaking`, `Finishing`, `RollingBack`,
    /// `Done`) or, for a rollout that stopped, its phase (`Paused`, `Held`, `Failed`).
    pub step: String,
}

/// Labels of a package.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PackageLabels {
    /// Namespace of the package.
    pub namespace: String,
    /// Name of the package.
    pub name: String,
}

/// Labels of a reconcile's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// The kind reconciled.
    pub kind: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind reconciled.
    pub kind: String,
}

/// Labels of a reconcile error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kind reconciled.
    pub kind: String,
    /// Why: `backend`, `throttled`, `budget`, `kubernetes`, `finalizer`.
    pub reason: String,
}

/// Labels of a count of resources.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The kind.
    pub kind: String,
    /// The status of its `Ready` condition: `True`, `False` or `Unknown` (also when it has
    /// none yet).
    pub ready: String,
}

/// Counts the watched resources, by kind and `Ready` status, when metrics are scraped.
pub type ResourceCounter = Box<dyn Fn() -> Vec<(ResourceLabels, i64)> + Send + Sync>;

type Durations = Family<KindLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms to about 80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    step: Family<StepLabels, Gauge>,
    ring: Family<PackageLabels, Gauge>,
    last_step: Mutex<std::collections::HashMap<(String, String), String>>,
    synced: Gauge,
    leader: Gauge,
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Durations,
    resources: Family<ResourceLabels, Gauge>,
    count_resources: std::sync::OnceLock<ResourceCounter>,
    not_ready: Mutex<Option<String>>,
    /// Whether the first full sync is done (readiness also needs a fresh picture).
    first_sync: std::sync::atomic::AtomicBool,
    /// Why the picture of the backend is too old to act on, when it is.
    stale: Mutex<Option<String>>,
    snapshot_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    snapshot_calls: Gauge,
    snapshot_refreshes: Family<ResultLabels, Counter>,
    snapshot_seconds: Histogram,
}

/// Labels of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `error`.
    pub result: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// The controller's metrics, with the ARM client's when given.
    pub fn new(arm: Option<&crate::backend::throttle::ArmMetrics>) -> Self {
        let mut registry = Registry::with_prefix("appattach");
        if let Some(arm) = arm {
            arm.register(&mut registry);
        }
        let step = Family::<StepLabels, Gauge>::default();
        registry.register(
            "rollout_step",
            "The step each package's rollout is at: 1 on the current step's series",
            step.clone(),
        );
        let ring = Family::<PackageLabels, Gauge>::default();
        registry.register(
            "rollout_ring",
            "The ring each package's rollout works on",
            ring.clone(),
        );
        let synced = Gauge::default();
        registry.register(
            "synced",
            "1 once the first list of every watched kind has been read, the readiness of /readyz",
            synced.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader-election Lease (and reconciles)",
            leader.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconcile passes, by kind and result",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed, by kind and reason",
            errors.clone(),
        );
        let durations: Durations = Family::new_with_constructor(duration_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "How long reconcile passes take, by kind",
            durations.clone(),
        );
        let resources = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "resources",
            "Watched resources, by kind and the status of their Ready condition",
            resources.clone(),
        );
        let snapshot_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "backend_snapshot_age_seconds",
            "How old the controller's picture of the backend is, since its last complete refresh (-1 before the first)",
            snapshot_age.clone(),
        );
        let snapshot_calls = Gauge::default();
        registry.register(
            "backend_snapshot_calls",
            "List and read calls the last complete refresh of the picture of the backend made",
            snapshot_calls.clone(),
        );
        let snapshot_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "backend_snapshot_refreshes",
            "Refreshes of the picture of the backend, by result",
            snapshot_refreshes.clone(),
        );
        let snapshot_seconds = duration_histogram();
        registry.register(
            "backend_snapshot_refresh_duration_seconds",
            "How long refreshes of the picture of the backend take",
            snapshot_seconds.clone(),
        );
        Self {
            registry,
            first_sync: std::sync::atomic::AtomicBool::new(false),
            stale: Mutex::default(),
            snapshot_age,
            snapshot_calls,
            snapshot_refreshes,
            snapshot_seconds,
            resources,
            count_resources: std::sync::OnceLock::new(),
            not_ready: Mutex::default(),
            step,
            ring,
            last_step: Mutex::default(),
            synced,
            leader,
            reconciles,
            errors,
            durations,
        }
    }

    /// Records one reconcile pass of a kind: its result, its reason when it failed, and
    /// how long it took.
    pub fn reconciled(&self, kind: &str, error: Option<&str>, took: std::time::Duration) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
        if let Some(reason) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
        self.durations
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Marks the first full sync done: `/readyz` answers ready from now on, while the
    /// picture of the backend is fresh enough to act on.
    pub fn set_synced(&self) {
        self.first_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.publish_ready();
    }

    fn publish_ready(&self) {
        let stale = self
            .stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let synced = self.first_sync.load(std::sync::atomic::Ordering::SeqCst);
        self.synced.set(i64::from(synced && !stale));
    }

    /// Says why the picture of the backend is too old to act on (`None`: it is not).
    pub fn set_stale(&self, why: Option<String>) {
        *self.stale.lock().unwrap_or_else(|p| p.into_inner()) = why;
        self.publish_ready();
    }

    /// Records a refresh of the picture of the backend.
    pub fn snapshot_refreshed(&self, ok: bool, took: std::time::Duration, calls: u64) {
        let result = if ok { "success" } else { "error" };
        self.snapshot_refreshes
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.snapshot_seconds.observe(took.as_secs_f64());
        if ok {
            self.snapshot_calls
                .set(i64::try_from(calls).unwrap_or(i64::MAX));
        }
    }

    /// Publishes how old the picture of the backend is.
    pub fn snapshot_age(&self, age: Option<std::time::Duration>) {
        self.snapshot_age.set(age.map_or(-1.0, |a| a.as_secs_f64()));
    }

    /// Says why the process is not ready yet (`None`: no known reason), for `/readyz`.
    pub fn set_not_ready(&self, why: Option<String>) {
        *self.not_ready.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why the process is not ready, when known: a picture of the backend too old to act
    /// on, or what the first sync waits for.
    pub fn not_ready(&self) -> Option<String> {
        let stale = self.stale.lock().unwrap_or_else(|p| p.into_inner()).clone();
        stale.or_else(|| {
            self.not_ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// Whether the process is ready: the first full sync done, and the picture of the
    /// backend fresh enough to act on.
    pub fn is_synced(&self) -> bool {
        self.synced.get() == 1
    }
    /// Records where a package's rollout stands.
    pub fn rollout(&self, namespace: &str, name: &str, r: &RolloutStatus) {
        let step = match r.phase {
            RolloutPhase::Progressing | RolloutPhase::RollingBack => r.step.as_str(),
            other => other.as_str(),
        }
        .to_string();
        let key = (namespace.to_string(), name.to_string());
        let mut last = self.last_step.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = last.insert(key, step.clone())
            && old != step
        {
            self.step.remove(&StepLabels {
                namespace: namespace.into(),
                name: name.into(),
                step: old,
            });
        }
        self.step
            .get_or_create(&StepLabels {
                namespace: namespace.into(),
                name: name.into(),
                step,
            })
            .set(1);
        self.ring
            .get_or_create(&PackageLabels {
                namespace: namespace.into(),
                name: name.into(),
            })
            .set(i64::from(r.ring.unwrap_or(-1)));
    }

    /// Forgets a deleted package.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let mut last = self.last_step.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = last.remove(&key) {
            self.step.remove(&StepLabels {
                namespace: namespace.into(),
                name: name.into(),
                step: old,
            });
        }
        self.ring.remove(&PackageLabels {
            namespace: namespace.into(),
            name: name.into(),
        });
    }

    /// Sets how the watched resources are counted (from the controller's caches, at each
    /// scrape, so the counts are never stale). Only the first call counts.
    pub fn count_resources_with(&self, counter: ResourceCounter) {
        let _ = self.count_resources.set(counter);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        if let Some(count) = self.count_resources.get() {
            // Kinds and statuses that have gone drop out of the output.
            self.resources.clear();
            for (labels, n) in count() {
                self.resources.get_or_create(&labels).set(n);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_series_per_package_follows_its_step() {
        let m = Metrics::default();
        let mut r: RolloutStatus = serde_json::from_value(serde_json::json!({
            "revision": 1, "phase": "Progressing", "step": "Staging", "ring": 1,
            "target": {"version": "2.0.0.0", "imagePath": "x", "backendName": "b"}
        }))
        .unwrap();
        m.rollout("ns", "app", &r);
        let text = m.render();
        assert!(
            text.contains(r#"appattach_rollout_step{namespace="ns",name="app",step="Staging"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"appattach_rollout_ring{namespace="ns",name="app"} 1"#),
            "{text}"
        );
        r.step = crate::resources::RolloutStep::Soaking;
        m.rollout("ns", "app", &r);
        let text = m.render();
        assert!(!text.contains("Staging"), "{text}");
        assert!(text.contains(r#"step="Soaking"} 1"#), "{text}");
        m.forget("ns", "app");
        assert!(!m.render().contains("name=\"app\""));
    }
}
