//! The controller's runtime: one watch and one cache per kind (shared by the package
//! controller and the two orphan controllers), the indexes beside them, readiness after the
//! first full sync, and the controllers themselves. Everything a pass decides is elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::events::Publisher;
use super::index::{self, Index};
use super::targets::{Lane, Lanes, TargetSettings};
use super::trust::TrustSource;
use super::warmup::{self, WarmUp};
use super::{Config, Context, MANAGER, metrics, reconcile, refresh};
use crate::backend::Backend;
use crate::backend::snapshot::Snapshot;
use crate::resources::{AppAttachPackage, BackendTarget, HostPoolAssignment, UserAssignment};

/// A kind the controller watches and caches.
pub(super) trait Watched:
    kube::Resource<DynamicType = ()>
    + serde::de::DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Shrinks an object to what its cache keeps.
    fn cache_form(&mut self) {}
}

impl Watched for AppAttachPackage {}

impl Watched for BackendTarget {}

impl Watched for k8s_openapi::api::core::v1::ConfigMap {}

impl Watched for HostPoolAssignment {
    fn cache_form(&mut self) {
        if let Some(st) = self.status.as_mut() {
            st.cached_digest = Some(super::status::digest(st));
            st.host_pools = Vec::new();
            forget_messages(&mut st.conditions);
        }
    }
}

impl Watched for UserAssignment {
    fn cache_form(&mut self) {
        if let Some(st) = self.status.as_mut() {
            st.cached_digest = Some(super::status::digest(st));
            st.principals = Vec::new();
            forget_messages(&mut st.conditions);
        }
    }
}

/// What the cache keeps of an assignment's status: its conditions without their messages
/// (for their transition times), and the digest of the whole (to write only a change). The
/// rows themselves (host pools with resource ids, principals with role-assignment ids)
/// would cost tens of MiB at 30,000 assignments (measured with `appattach bench`).
fn forget_messages(conditions: &mut [Condition]) {
    for c in conditions {
        c.message = String::new();
    }
}

/// A watcher of `K` that skips (and logs) an object it cannot read, instead of failing
/// the whole stream on it: one bad object never stops the controller.
fn tolerant_watcher<K>(
    client: &Client,
    namespace: &Option<String>,
    wc: watcher::Config,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static + use<K>
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

/// The typed form of a watch event; `None` (logged) for an object that does not read as `K`.
pub(super) fn typed_event<K>(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<K>>
where
    K: Watched,
{
    let typed = |mut o: DynamicObject| -> Option<K> {
        // Nothing reads them, and they are the largest part of a cached object: every
        // store would hold a copy (measured with `appattach bench`, see BENCHMARKS.md).
        o.metadata.managed_fields = None;
        if let Some(a) = o.metadata.annotations.as_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        if K::kind(&()) == "AppAttachPackage" {
            trim_status(&mut o.data);
        }
        let (ns, name) = (
            o.metadata.namespace.clone().unwrap_or_default(),
            o.metadata.name.clone().unwrap_or_default(),
        );
        match serde_json::to_value(&o).and_then(serde_json::from_value::<K>) {
            Ok(mut k) => {
                k.cache_form();
                Some(k)
            }
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

/// What the cache keeps of a package's status: its `Ready`-style conditions without their
/// messages, for the resource counts of the metrics. A pass reads the package whole from
/// the API server; the rest of a status (rows, rollout record, history: several KiB
/// each) would cost tens of MiB at 10,000 packages (measured with `appattach bench`).
fn trim_status(data: &mut serde_json::Value) {
    let Some(status) = data.get_mut("status").and_then(|s| s.as_object_mut()) else {
        return;
    };
    status.retain(|k, _| k == "conditions" || k == "observedGeneration");
    if let Some(conditions) = status.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conditions.iter_mut().filter_map(|c| c.as_object_mut()) {
            c.insert("message".into(), serde_json::Value::String(String::new()));
        }
    }
}

/// The package an assignment points at.
fn to_package<A: reconcile::Assignment>(a: &A) -> ObjectRef<AppAttachPackage> {
    ObjectRef::new(a.package_ref()).within(&a.namespace().unwrap_or_default())
}

/// The backends a controller writes to: the operator's own (its flags'; none when every
/// namespace must name its own), and how the namespaces' BackendTargets are served.
pub struct Backends<B> {
    /// The operator's own backend.
    pub default: Option<B>,
    /// The namespaces' targets.
    pub targets: TargetSettings<B>,
}

impl<B> From<B> for Backends<B> {
    fn from(b: B) -> Self {
        Self {
            default: Some(b),
            targets: TargetSettings::default(),
        }
    }
}

/// Runs the controllers until the process stops.
pub async fn run<B: Backend>(client: Client, backends: impl Into<Backends<B>>, config: Config) {
    run_until(client, backends, config, std::future::pending()).await;
}

/// The caches of the three kinds, with their indexes.
struct Caches {
    packages: Store<AppAttachPackage>,
    hpas: Store<HostPoolAssignment>,
    uas: Store<UserAssignment>,
    packages_by_full_name: Index<AppAttachPackage>,
    hpa_by_package: Index<HostPoolAssignment>,
    ua_by_package: Index<UserAssignment>,
}

/// The objects a watch touched, as a controller's trigger.
type Touched<K> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static>>;

type Events<K> = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static>,
>;

/// The watches' consumers: the package controller's streams, and the orphan controllers'.
struct Streams {
    packages: Events<AppAttachPackage>,
    packages_for_hpa_orphans: Events<AppAttachPackage>,
    packages_for_ua_orphans: Events<AppAttachPackage>,
    hpas: Events<HostPoolAssignment>,
    hpa_orphans: Events<HostPoolAssignment>,
    uas: Events<UserAssignment>,
    ua_orphans: Events<UserAssignment>,
}

/// One watch and one cache per kind, for the package controller and the two orphan
/// controllers alike; returns the caches, their consumers' streams, and the future that
/// drives the watches.
fn watch_all(
    client: &Client,
    config: &Config,
) -> (
    Caches,
    Streams,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let wc = watcher::Config::default();
    let ns = &config.namespace;
    let (packages, package_writer) = reflector::store::<AppAttachPackage>();
    let (hpas, hpa_writer) = reflector::store::<HostPoolAssignment>();
    let (uas, ua_writer) = reflector::store::<UserAssignment>();
    let caches = Caches {
        packages,
        hpas,
        uas,
        packages_by_full_name: Index::new(reconcile::by_full_name),
        hpa_by_package: Index::new(reconcile::by_package::<HostPoolAssignment>),
        ua_by_package: Index::new(reconcile::by_package::<UserAssignment>),
    };
    let (package_watch, [p0, p1, p2]) = shared_watch(
        client,
        ns,
        wc.clone(),
        package_writer,
        caches.packages_by_full_name.clone(),
    );
    let (hpa_watch, [h0, h1]) = shared_watch(
        client,
        ns,
        wc.clone(),
        hpa_writer,
        caches.hpa_by_package.clone(),
    );
    let (ua_watch, [u0, u1]) =
        shared_watch(client, ns, wc, ua_writer, caches.ua_by_package.clone());
    let streams = Streams {
        packages: Box::pin(p0),
        packages_for_hpa_orphans: Box::pin(p1),
        packages_for_ua_orphans: Box::pin(p2),
        hpas: Box::pin(h0),
        hpa_orphans: Box::pin(h1),
        uas: Box::pin(u0),
        ua_orphans: Box::pin(u1),
    };
    // The watches run until the controllers are done (they never end by themselves).
    let drive = async move {
        futures::join!(package_watch, hpa_watch, ua_watch);
    };
    (caches, streams, drive)
}

/// Runs the controllers until `stop` resolves, then lets the passes in flight finish (each
/// is bounded by its requests' timeouts) and returns. A caller that cannot wait that long
/// drops the future instead: a pass cut short resumes from the intent it recorded.
pub async fn run_until<B: Backend>(
    client: Client,
    backends: impl Into<Backends<B>>,
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let backends = backends.into();
    let stop = futures::FutureExt::shared(stop);
    let (caches, streams, watches) = watch_all(&client, &config);
    let (changed_tx, changed) = tokio::sync::mpsc::channel(1024);
    let default = backends.default.map(|backend| {
        Arc::new(Lane {
            backend,
            snapshot: Arc::new(Snapshot::new()),
            label: "operator".into(),
        })
    });
    // The operator's own picture is refreshed here, and says whether the process is ready;
    // the targets' are refreshed from their first use.
    let (refreshes, snapshot_ready, snapshot) = match &default {
        Some(lane) => {
            let (run, ready) = refresh::task(
                lane.snapshot.clone(),
                &lane.backend,
                &config,
                changed_tx.clone(),
                true,
            );
            (
                futures::future::Either::Left(run),
                ready,
                lane.snapshot.clone(),
            )
        }
        None => (
            futures::future::Either::Right(std::future::pending()),
            tokio::sync::watch::channel(true).1,
            Arc::new(Snapshot::new()),
        ),
    };
    // The namespaces' BackendTargets, cached: which one a package goes to is read here,
    // and a target made or changed reconciles the packages of its namespace.
    let (target_store, target_writer) = reflector::store::<BackendTarget>();
    let target_events =
        tolerant_watcher::<BackendTarget>(&client, &config.namespace, watcher::Config::default())
            .default_backoff()
            .reflect(target_writer)
            .touched_objects();
    let lanes = Lanes::new(
        default,
        backends.targets,
        (client.clone(), target_store),
        config.clone(),
        changed_tx,
    );
    let (trust, trust_events) = trust_watch(&client, &config);
    let events = Publisher::new(client.clone(), MANAGER);
    let (warm_up, warm_passes) = WarmUp::new(config.concurrency.into());
    let ctx = Arc::new(Context {
        client: client.clone(),
        lanes,
        config: config.clone(),
        packages: caches.packages.clone(),
        host_pool_assignments: caches.hpas.clone(),
        user_assignments: caches.uas.clone(),
        packages_by_full_name: caches.packages_by_full_name.clone(),
        hpa_by_package: caches.hpa_by_package.clone(),
        ua_by_package: caches.ua_by_package.clone(),
        trust,
        events,
        warm_up,
        failures: Mutex::new(HashMap::new()),
    });
    count_resources(&config, &caches);
    // Tasks that live as long as this controller: a JoinSet aborts them when `run` ends
    // or is dropped (a controller embedded in a process, as in `appattach local` and the
    // tests, leaves nothing behind ticking).
    let mut alongside = tokio::task::JoinSet::new();
    alongside.spawn(readiness(&config, &caches, (snapshot_ready, snapshot)));
    let Streams {
        packages,
        packages_for_hpa_orphans,
        packages_for_ua_orphans,
        hpas,
        hpa_orphans,
        uas,
        ua_orphans,
    } = streams;
    let changed =
        futures::stream::unfold(
            changed,
            |mut rx| async move { rx.recv().await.map(|o| (o, rx)) },
        );
    let package_controller = package_controller(
        &caches,
        (packages, hpas, uas, Box::pin(target_events)),
        trust_events,
        (changed, warm_passes),
        ctx.clone(),
        stop.clone(),
    );
    // Assignments whose package does not exist get their own status.
    let hpa_orphans = orphans(
        caches.hpas.clone(),
        caches.hpa_by_package.clone(),
        hpa_orphans,
        caches.packages.clone(),
        packages_for_hpa_orphans,
        ctx.clone(),
        stop.clone(),
    );
    let ua_orphans = orphans(
        caches.uas.clone(),
        caches.ua_by_package.clone(),
        ua_orphans,
        caches.packages.clone(),
        packages_for_ua_orphans,
        ctx,
        stop,
    );
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        "controller running"
    );
    tokio::select! {
        _ = async { futures::join!(package_controller, hpa_orphans, ua_orphans) } => {}
        () = watches => {}
        () = refreshes => {}
    }
}

/// The ConfigMap of the roots the session hosts trust (`--trusted-roots`), cached from a
/// watch of that one object, and the watch's events (a change reconciles every package);
/// nothing, and no events, when no roots are declared.
fn trust_watch(client: &Client, config: &Config) -> (Option<TrustSource>, Touched<ConfigMap>) {
    match &config.trusted_roots {
        Some((ns, name)) => {
            let (store, writer) = reflector::store::<ConfigMap>();
            let events = tolerant_watcher::<ConfigMap>(
                client,
                &Some(ns.clone()),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
            )
            .default_backoff()
            .reflect(writer)
            .touched_objects();
            (Some(TrustSource::new(ns, name, store)), Box::pin(events))
        }
        None => (None, Box::pin(futures::stream::pending())),
    }
}

/// The package controller: a pass per package, triggered by its spec, annotations and
/// finalizers, and by its assignments' specs.
fn package_controller<B: Backend>(
    caches: &Caches,
    (packages, hpas, uas, targets): (
        Events<AppAttachPackage>,
        Events<HostPoolAssignment>,
        Events<UserAssignment>,
        Touched<BackendTarget>,
    ),
    trust_events: Touched<ConfigMap>,
    (changed, warm_passes): (
        impl futures::Stream<Item = ObjectRef<AppAttachPackage>> + Send + 'static,
        impl futures::Stream<Item = ObjectRef<AppAttachPackage>> + Send + 'static,
    ),
    ctx: Arc<Context<B>>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> impl std::future::Future<Output = ()> + Send {
    // A start's first passes wait their turn behind real changes (see `warmup`): only a
    // change of spec (generation), annotations (policy) or finalizers passes at once. Our
    // own status writes trigger nothing (that would defeat backoff), and neither do an
    // assignment's (on a cold start they tripled the passes, measured with `appattach
    // bench`). Assignments trigger the package they point at; packageRef is immutable, so
    // a deleted assignment still names the package it used to reach.
    let warm = ctx.warm_up.clone();
    let package_stream = warmup::split(packages, warm.clone(), ObjectRef::from_obj, |p| {
        // A hash, not a copy: one is kept per package.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.metadata.annotations.hash(&mut h);
        p.metadata.finalizers.hash(&mut h);
        (p.metadata.generation, h.finish())
    });
    let hpa_stream = warmup::split(hpas, warm.clone(), to_package, |a: &HostPoolAssignment| {
        a.metadata.generation
    });
    let ua_stream = warmup::split(uas, warm, to_package, |a: &UserAssignment| {
        a.metadata.generation
    });
    let concurrency = ctx.config.concurrency;
    Controller::for_stream(package_stream, caches.packages.clone())
        .watches_stream(hpa_stream, |a: HostPoolAssignment| Some(to_package(&a)))
        .watches_stream(ua_stream, |a: UserAssignment| Some(to_package(&a)))
        .watches_stream(targets, {
            let packages = caches.packages.clone();
            move |t: BackendTarget| packages_of(&packages, |p| p.namespace() == t.namespace())
        })
        .watches_stream(trust_events, {
            let packages = caches.packages.clone();
            move |_: ConfigMap| packages_of(&packages, |_| true)
        })
        .reconcile_on(warm_passes)
        // A refresh of the picture of the backend that finds a package's objects changed
        // (drift made in the portal) reconciles it.
        .reconcile_on(changed)
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile_package, reconcile::error_policy, ctx)
        .for_each(|r| async move { log_controller_error(r) })
}

/// The packages `which` takes: those of a namespace whose target changed, or all of them
/// when the declared roots changed.
fn packages_of(
    packages: &Store<AppAttachPackage>,
    which: impl Fn(&AppAttachPackage) -> bool,
) -> Vec<ObjectRef<AppAttachPackage>> {
    packages
        .state()
        .iter()
        .filter(|p| which(p))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// The resource counts the metrics show, by kind and Ready.
fn count_resources(config: &Config, caches: &Caches) {
    let (packages, hpas, uas) = (
        caches.packages.clone(),
        caches.hpas.clone(),
        caches.uas.clone(),
    );
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

/// Ready (for /readyz) once every kind's first list is in its store and the first picture
/// of the backend is read; a first sync that takes long says which kinds it waits for,
/// every 30 s.
fn readiness(
    config: &Config,
    caches: &Caches,
    (mut snapshot_ready, snapshot): (tokio::sync::watch::Receiver<bool>, Arc<Snapshot>),
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (packages, hpas, uas) = (
        caches.packages_by_full_name.clone(),
        caches.hpa_by_package.clone(),
        caches.ua_by_package.clone(),
    );
    let metrics = config.metrics.clone();
    async move {
        let all = async { futures::join!(packages.listed(), hpas.listed(), uas.listed()) };
        tokio::pin!(all);
        while tokio::time::timeout(Duration::from_secs(30), &mut all)
            .await
            .is_err()
        {
            let pending: Vec<&str> = [
                ("AppAttachPackage", packages.is_listed()),
                ("HostPoolAssignment", hpas.is_listed()),
                ("UserAssignment", uas.is_listed()),
            ]
            .iter()
            .filter(|(_, listed)| !listed)
            .map(|(k, _)| *k)
            .collect();
            let why = format!(
                "the first list of {} is not done after 30s or more",
                pending.join(", ")
            );
            tracing::warn!("{why}");
            metrics.set_not_ready(Some(why));
        }
        // The first complete picture of the backend (a sender gone: the process stops).
        if !first_picture(&mut snapshot_ready, &snapshot, &metrics).await {
            return;
        }
        tracing::info!("first full sync done: ready");
        metrics.set_not_ready(None);
        metrics.set_synced();
    }
}

/// Waits for the first complete picture of the backend, saying on /readyz why it is not
/// there yet (with the last refresh's error, every few seconds). False: the process stops.
async fn first_picture(
    ready: &mut tokio::sync::watch::Receiver<bool>,
    snapshot: &Snapshot,
    metrics: &metrics::Metrics,
) -> bool {
    loop {
        let why = match snapshot.health().last_error {
            Some(e) => format!("the first picture of the backend is not read yet: {e}"),
            None => "the first picture of the backend is not read yet".into(),
        };
        metrics.set_not_ready(Some(why));
        match tokio::time::timeout(Duration::from_secs(2), ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => return true,
            Ok(Err(_)) => return false,
            Err(_) => {}
        }
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
        index.clone(),
    )
    .reflect(writer);
    let drive = async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    // The store has taken it: the first list is in.
                    if matches!(event, watcher::Event::InitDone) {
                        index.mark_listed();
                    }
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

    /// The cache keeps an assignment's conditions (for their transition times) and the
    /// digest of its whole status (to write only a change), not its rows.
    #[test]
    fn a_cached_assignment_keeps_its_conditions_and_the_digest_of_its_status() {
        let whole: HostPoolAssignment = serde_json::from_value(serde_json::json!({
            "apiVersion": "appattach.io/v1alpha1",
            "kind": "HostPoolAssignment",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"packageRef": {"name": "p"}, "hostPools": [{"name": "hp-1"}]},
            "status": {
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
                    "message": "package p is Ready", "lastTransitionTime": "2026-12-01T00:00:00Z"}],
                "hostPools": [{"name": "hp-1", "found": true, "version": "1.0.0.0"}]
            }
        }))
        .unwrap();
        let dynamic: DynamicObject =
            serde_json::from_value(serde_json::to_value(&whole).unwrap()).unwrap();
        let Some(watcher::Event::Apply(cached)) =
            typed_event::<HostPoolAssignment>(watcher::Event::Apply(dynamic))
        else {
            panic!("not read");
        };
        let st = cached.status.as_ref().unwrap();
        assert!(st.host_pools.is_empty(), "rows cached: {st:?}");
        assert_eq!(st.conditions[0].status, "True");
        assert_eq!(
            st.conditions[0].last_transition_time,
            whole.status.as_ref().unwrap().conditions[0].last_transition_time
        );
        let before = whole.status.clone().unwrap();
        assert_eq!(
            st.cached_digest,
            Some(super::super::status::digest(&before))
        );
        // Any change to the whole status changes its digest.
        let mut changed = before.clone();
        changed.host_pools[0].version = Some("1.0.1.0".into());
        assert_ne!(
            super::super::status::digest(&changed),
            super::super::status::digest(&before)
        );
    }

    /// Seen in the logs of a long campaign of generated sequences: a controller run in a
    /// process and stopped (as the tests and `appattach local` do) left its readiness task
    /// behind, waking every 30 s for ever to say the first list is not done. Every task a
    /// controller starts ends with it.
    #[tokio::test]
    async fn a_stopped_controller_leaves_no_task_behind() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        // Nothing answers: the watches and the backend's refresh retry, readiness waits.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let backend = crate::backend::ArmClient::new(
            "http://127.0.0.1:9",
            "00000000-0000-0000-0000-000000000000",
            "rg",
            crate::backend::Auth::None,
        );
        let controller = tokio::spawn(run(client, backend, Config::default()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while metrics.num_alive_tasks() < before + 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            metrics.num_alive_tasks() >= before + 2,
            "the controller started its tasks"
        );
        // Let it run a while: watches retrying, readiness waiting for the first lists.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        controller.abort();
        let _ = controller.await;
        while metrics.num_alive_tasks() > before && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            before,
            "tasks outlived the controller"
        );
    }
}
