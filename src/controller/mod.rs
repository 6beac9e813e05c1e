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
mod execute;
#[cfg(test)]
mod fidelity;
mod index;
pub mod metrics;
pub mod observe;
pub mod planner;
mod reconcile;
pub use reconcile::Assignment;
mod status;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::backend::{Backend, BackendError};
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            resync: Duration::from_secs(30 * 60),
            concurrency: 8,
            rollout_poll: Duration::from_secs(15),
            metrics: Arc::default(),
        }
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
    /// The management backend.
    pub backend: B,
    /// Settings.
    pub config: Config,
    packages: Store<AppAttachPackage>,
    host_pool_assignments: Store<HostPoolAssignment>,
    user_assignments: Store<UserAssignment>,
    packages_by_full_name: Index<AppAttachPackage>,
    hpa_by_package: Index<HostPoolAssignment>,
    ua_by_package: Index<UserAssignment>,
    recorder: Recorder,
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

/// A kind the controller watches and caches.
trait Watched:
    kube::Resource<DynamicType = ()>
    + serde::de::DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A watcher of `K` that skips (and logs) an object it cannot read, instead of failing
/// the whole stream on it: one bad object never stops the controller.
fn tolerant_watcher<K>(
    client: &Client,
    namespace: &Option<String>,
    wc: watcher::Config,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    watcher(api, wc).try_filter_map(|event| futures::future::ready(Ok(typed_event::<K>(event))))
}

/// The objects of a watch whose spec changed (a new generation), that appeared, or that
/// were deleted; status and metadata writes, and relists of what is known, pass nothing.
/// (kube's `predicate_filter` would drop deletions, which an object without a finalizer
/// only announces by its Delete event.)
fn spec_changes<K, E>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, E>>,
) -> impl futures::Stream<Item = Result<K, E>>
where
    K: kube::Resource,
{
    let mut seen: HashMap<(String, String), Option<i64>> = HashMap::new();
    events
        .map_ok(move |event| {
            let key = |o: &K| (o.meta().namespace.clone().unwrap_or_default(), o.name_any());
            let passed = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let generation = o.meta().generation;
                    (seen.insert(key(&o), generation) != Some(generation)).then_some(o)
                }
                watcher::Event::Delete(o) => {
                    seen.remove(&key(&o));
                    Some(o)
                }
                watcher::Event::Init | watcher::Event::InitDone => None,
            };
            futures::stream::iter(passed.map(Ok))
        })
        .try_flatten()
}

/// The typed form of a watch event; `None` (logged) for an object that does not read as `K`.
pub fn typed_event<K>(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<K>>
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let typed = |mut o: DynamicObject| -> Option<K> {
        // Nothing reads them, and they are the largest part of a cached object: every
        // store would hold a copy (measured with `appattach bench`, see BENCHMARKS.md).
        o.metadata.managed_fields = None;
        if let Some(a) = o.metadata.annotations.as_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        let (ns, name) = (
            o.metadata.namespace.clone().unwrap_or_default(),
            o.metadata.name.clone().unwrap_or_default(),
        );
        match serde_json::to_value(&o).and_then(serde_json::from_value::<K>) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), namespace = %ns, name = %name, "skipping an object that cannot be read: {e}");
                None
            }
        }
    };
    match event {
        watcher::Event::Apply(o) => typed(o).map(watcher::Event::Apply),
        watcher::Event::Delete(o) => typed(o).map(watcher::Event::Delete),
        watcher::Event::InitApply(o) => typed(o).map(watcher::Event::InitApply),
        watcher::Event::Init => Some(watcher::Event::Init),
        watcher::Event::InitDone => Some(watcher::Event::InitDone),
    }
}

/// Runs the controllers until the process stops.
pub async fn run<B: Backend>(client: Client, backend: B, config: Config) {
    run_until(client, backend, config, std::future::pending()).await;
}

/// Runs the controllers until `stop` resolves, then lets the passes in flight finish (each
/// is bounded by its requests' timeouts) and returns. A caller that cannot wait that long
/// drops the future instead: a pass cut short resumes from the intent it recorded.
pub async fn run_until<B: Backend>(
    client: Client,
    backend: B,
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let stop = futures::FutureExt::shared(stop);
    let wc = watcher::Config::default();
    let (packages, package_writer) = reflector::store::<AppAttachPackage>();
    let (hpas, hpa_writer) = reflector::store::<HostPoolAssignment>();
    let (uas, ua_writer) = reflector::store::<UserAssignment>();
    let packages_by_full_name = Index::new(reconcile::by_full_name);
    let hpa_by_package = Index::new(reconcile::by_package::<HostPoolAssignment>);
    let ua_by_package = Index::new(reconcile::by_package::<UserAssignment>);
    // One watch and one cache per kind, for the package controller and the two orphan
    // controllers alike.
    let (package_watch, [package_events, package_events_hpa, package_events_ua]) = shared_watch(
        &client,
        &config.namespace,
        wc.clone(),
        package_writer,
        packages_by_full_name.clone(),
    );
    let (hpa_watch, [hpa_events, hpa_events_orphans]) = shared_watch(
        &client,
        &config.namespace,
        wc.clone(),
        hpa_writer,
        hpa_by_package.clone(),
    );
    let (ua_watch, [ua_events, ua_events_orphans]) = shared_watch(
        &client,
        &config.namespace,
        wc,
        ua_writer,
        ua_by_package.clone(),
    );
    let package_stream = package_events
        .touched_objects()
        // Our own status writes must not trigger a pass (that would defeat backoff): only
        // spec (generation), annotations (policy) and finalizers do.
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    // An assignment's own status writes must not trigger its package either: on a cold
    // start they tripled the passes (measured with `appattach bench`).
    let hpa_stream = spec_changes(hpa_events);
    let ua_stream = spec_changes(ua_events);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        backend,
        config: config.clone(),
        packages: packages.clone(),
        host_pool_assignments: hpas.clone(),
        user_assignments: uas.clone(),
        packages_by_full_name,
        hpa_by_package: hpa_by_package.clone(),
        ua_by_package: ua_by_package.clone(),
        recorder,
        failures: Mutex::new(HashMap::new()),
    });

    {
        let (packages, hpas, uas) = (packages.clone(), hpas.clone(), uas.clone());
        config.metrics.count_resources_with(Box::new(move || {
            let mut counts = ready_counts(&packages, |p| p.status.as_ref().map(|s| &s.conditions));
            counts.extend(ready_counts(&hpas, |a| {
                a.status.as_ref().map(|s| &s.conditions)
            }));
            counts.extend(ready_counts(&uas, |a| {
                a.status.as_ref().map(|s| &s.conditions)
            }));
            counts
        }));
    }

    // Ready (for /readyz) once every kind's first list is in its store.
    {
        let (packages, hpas, uas) = (packages.clone(), hpas.clone(), uas.clone());
        let metrics = config.metrics.clone();
        tokio::spawn(async move {
            let all = async {
                tokio::try_join!(
                    packages.wait_until_ready(),
                    hpas.wait_until_ready(),
                    uas.wait_until_ready()
                )
            };
            tokio::pin!(all);
            // A first sync that takes long says which kinds it waits for, every 30 s.
            let synced = loop {
                match tokio::time::timeout(Duration::from_secs(30), &mut all).await {
                    Ok(synced) => break synced,
                    Err(_) => {
                        use futures::FutureExt as _;
                        let pending: Vec<&str> = [
                            (
                                "AppAttachPackage",
                                packages.wait_until_ready().now_or_never(),
                            ),
                            ("HostPoolAssignment", hpas.wait_until_ready().now_or_never()),
                            ("UserAssignment", uas.wait_until_ready().now_or_never()),
                        ]
                        .iter()
                        .filter(|(_, ready)| ready.is_none())
                        .map(|(k, _)| *k)
                        .collect();
                        let why = format!(
                            "the first list of {} is not done after 30s or more",
                            pending.join(", ")
                        );
                        tracing::warn!("{why}");
                        metrics.set_not_ready(Some(why));
                    }
                }
            };
            if synced.is_ok() {
                tracing::info!("first full sync done: ready");
                metrics.set_not_ready(None);
                metrics.set_synced();
            }
        });
    }

    // Assignments trigger the package they point at; packageRef is immutable, so a deleted
    // assignment still names the package it used to reach.
    let to_package = |ns: Option<String>, name: &str| {
        Some(ObjectRef::<AppAttachPackage>::new(name).within(&ns.unwrap_or_default()))
    };
    let package_controller = Controller::for_stream(package_stream, packages.clone())
        .watches_stream(hpa_stream, move |a: HostPoolAssignment| {
            to_package(a.namespace(), &a.spec.package_ref.name)
        })
        .watches_stream(ua_stream, move |a: UserAssignment| {
            to_package(a.namespace(), &a.spec.package_ref.name)
        })
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(stop.clone())
        .run(
            reconcile::reconcile_package,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move { log_controller_error(r) });

    // Assignments whose package does not exist get their own status.
    let hpa_orphans = orphans(
        hpas,
        hpa_by_package,
        hpa_events_orphans,
        packages.clone(),
        package_events_hpa,
        ctx.clone(),
        stop.clone(),
    );
    let ua_orphans = orphans(
        uas,
        ua_by_package,
        ua_events_orphans,
        packages,
        package_events_ua,
        ctx,
        stop,
    );
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        "controller running"
    );
    // The watches run until the controllers are done (they never end by themselves).
    let watches = async {
        futures::join!(package_watch, hpa_watch, ua_watch);
    };
    tokio::select! {
        _ = async { futures::join!(package_controller, hpa_orphans, ua_orphans) } => {}
        () = watches => {}
    }
}

/// One watch of `K` that fills its cache (`writer`) and `index`, then hands every event to
/// `N` consumers: a cache is up to date when its event reaches any of them. Every
/// controller that reads a kind shares its cache (the orphan controllers kept caches of
/// their own before: a third of the controller's memory, measured with `appattach bench`).
///
/// The consumers' streams carry no errors: the watch logs its own, and retries them.
/// A consumer that does not take its events holds the others back (as a controller that
/// does not poll its stream holds back its own cache), never beyond its channel.
fn shared_watch<K, const N: usize>(
    client: &Client,
    namespace: &Option<String>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    index: Index<K>,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    [impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static; N],
)
where
    K: Watched,
{
    let channels: [_; N] = std::array::from_fn(|_| tokio::sync::mpsc::channel(256));
    let senders: Vec<tokio::sync::mpsc::Sender<watcher::Event<K>>> =
        channels.iter().map(|(tx, _)| tx.clone()).collect();
    let streams = channels.map(|(_, rx)| {
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (Ok(event), rx))
        })
    });
    let events = index::feed(
        tolerant_watcher::<K>(client, namespace, wc).default_backoff(),
        index,
    )
    .reflect(writer);
    let drive = async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    for tx in &senders {
                        // A consumer that is gone has stopped with the controllers.
                        let _ = tx.send(event.clone()).await;
                    }
                }
                // Retried with backoff by the watcher.
                Err(e) => tracing::warn!(kind = %K::kind(&()), "watch failed: {e}"),
            }
        }
    };
    (drive, streams)
}

/// Logs what the controller machinery reports; a failed pass was logged by its error
/// policy already, with the object's kind, namespace and name.
fn log_controller_error<T, E: std::fmt::Display, Q: std::fmt::Display>(
    r: Result<T, controller::Error<E, Q>>,
) {
    match r {
        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(controller::Error::ObjectNotFound(o)) => tracing::debug!(
            kind = o.dyntype.kind,
            namespace = o.namespace.as_deref().unwrap_or_default(),
            name = o.name,
            "the object is gone before its pass"
        ),
        Err(e) => tracing::warn!("controller: {e}"),
    }
}

/// How many objects of a kind are in its cache, by the status of their `Ready` condition.
fn ready_counts<K>(
    store: &Store<K>,
    conditions: fn(&K) -> Option<&Vec<Condition>>,
) -> Vec<(metrics::ResourceLabels, i64)>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut counts: std::collections::BTreeMap<&'static str, i64> =
        std::collections::BTreeMap::new();
    for o in store.state() {
        let ready = conditions(&o)
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map_or("Unknown", |c| match c.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            });
        *counts.entry(ready).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(ready, n)| {
            let labels = metrics::ResourceLabels {
                kind: K::kind(&()).to_string(),
                ready: ready.to_string(),
            };
            (labels, n)
        })
        .collect()
}

/// The controller for assignments whose package does not exist: triggered by the
/// assignments and by packages coming and going.
async fn orphans<A, B>(
    store: Store<A>,
    by_package: Index<A>,
    assignment_events: impl futures::Stream<Item = Result<watcher::Event<A>, watcher::Error>>
    + Send
    + 'static,
    packages: Store<AppAttachPackage>,
    package_events: impl futures::Stream<
        Item = Result<watcher::Event<AppAttachPackage>, watcher::Error>,
    > + Send
    + 'static,
    ctx: Arc<Context<B>>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    A: reconcile::Assignment,
    B: Backend,
{
    let index = store.clone();
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(assignment_events.applied_objects(), store)
        .watches_stream(
            package_events.touched_objects(),
            move |p: AppAttachPackage| {
                by_package
                    .get(&index, &reconcile::package_key(&p))
                    .into_iter()
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
            },
        )
        // Bounded like the package controller: unbounded, the first list spawned a pass
        // for every assignment at once (8 MiB of tasks at 3,000 assignments, profiled
        // with heaptrack under `appattach bench`).
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(stop)
        .run(
            move |a, ctx| reconcile::reconcile_orphan::<A, B>(a, ctx, packages.clone()),
            reconcile::orphan_error_policy,
            ctx,
        )
        .for_each(|r| async move { log_controller_error(r) })
        .await;
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

    fn object(mode: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "appattach.io/v1alpha1",
            "kind": "AppAttachPackage",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "mode": mode,
                "location": "westeurope",
                "image": {"path": r"\\fs\s\a.cim"},
                "package": {"type": "Msix", "name": "Contoso.App", "publisher": "CN=Contoso", "version": "1.0.0.0"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn an_object_that_cannot_be_read_is_skipped_not_fatal() {
        let good = typed_event::<AppAttachPackage>(watcher::Event::Apply(object("AppAttach")));
        assert!(
            matches!(good, Some(watcher::Event::Apply(p)) if p.spec.package.name == "Contoso.App")
        );
        // A mode this controller does not know (say, from a newer CRD version).
        assert!(
            typed_event::<AppAttachPackage>(watcher::Event::Apply(object("AppAttachV2"))).is_none()
        );
        assert!(
            typed_event::<AppAttachPackage>(watcher::Event::InitApply(object("AppAttachV2")))
                .is_none()
        );
        assert!(matches!(
            typed_event::<AppAttachPackage>(watcher::Event::InitDone),
            Some(watcher::Event::InitDone)
        ));
    }

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
