//! The driver of a pass over one package: observe, decide, execute. It also holds the
//! finalizer, the error policy, and the pass over assignments whose package is missing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use tracing::Instrument as _;

use super::build;
use super::decide::{self, Note, Settings};
use super::execute;
use super::index::{self, Index};
use super::observe::{self, Inputs, Observation};
use super::status;
use super::targets::TargetFailure;
use super::{Context, Error, FINALIZER, Pass};
use crate::backend::snapshot::Change;
use crate::backend::{Backend, BackendError};
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage, HostPoolAssignment, HostPoolAssignmentStatus, UserAssignment,
    UserAssignmentStatus, condition,
};

/// Reconciles one package (the controller's entry point), counted in the metrics.
pub async fn reconcile_package<B: Backend>(
    pkg: Arc<AppAttachPackage>,
    ctx: Arc<Context<B>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let span = object_span("AppAttachPackage", &*pkg);
    let (ns, name) = (pkg.namespace().unwrap_or_default(), pkg.name_any());
    let result = reconcile_package_pass(pkg, ctx.clone())
        .instrument(span.clone())
        .await;
    ctx.warm_up.done(&ns, &name);
    let reason = result.as_ref().err().map(Error::metric_label);
    ctx.config
        .metrics
        .reconciled("AppAttachPackage", reason, started.elapsed());
    span.in_scope(|| log_pass(started, reason));
    result
}

/// The span of a pass over one object: every line logged in it carries the object's kind,
/// namespace and name (as fields of their own in JSON logs).
fn object_span(kind: &str, o: &impl ResourceExt) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        kind,
        namespace = o.namespace().unwrap_or_default(),
        name = o.name_any()
    )
}

fn log_pass(started: std::time::Instant, failed: Option<&str>) {
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match failed {
        None => tracing::debug!(took_ms, "reconciled"),
        Some(reason) => tracing::debug!(took_ms, reason, "reconcile failed"),
    }
}

async fn reconcile_package_pass<B: Backend>(
    pkg: Arc<AppAttachPackage>,
    ctx: Arc<Context<B>>,
) -> Result<Action, Error> {
    let ns = pkg.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", pkg.name_any());
    let api: Api<AppAttachPackage> = Api::namespaced(ctx.client.clone(), &ns);
    // A rollout decides from its own last status write, which the watch cache may not
    // have yet (a pass requeued moments after the last): read it fresh from the API server.
    // The package whole, as the API server has it now: the cache keeps only what the
    // triggers and the metrics need of its status, and a rollout decides from its own last
    // status write, which the cache may not have yet.
    let Some(pkg) = api.get_opt(&pkg.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let pkg = Arc::new(pkg);
    let result = finalizer(&api, FINALIZER, pkg, |event| async {
        match event {
            finalizer::Event::Apply(p) => apply(&p, &ctx).await,
            finalizer::Event::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => {
            ctx.reset_failures(&key);
            Ok(action)
        }
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        // The finalizer patch tests the list it read from the cache; 422 means the cache
        // is behind the object (most often our own finalizer write of a moment ago, with
        // a second trigger of the same package queued behind it). Not a failure: try
        // again once the cache has caught up. Twice at most: a third is reported.
        Err(
            finalizer::Error::AddFinalizer(kube::Error::Api(s))
            | finalizer::Error::RemoveFinalizer(kube::Error::Api(s)),
        ) if (s.code == 422 || s.code == 409) && ctx.record_failure(&key) <= 2 => {
            tracing::debug!(
                "the cached object is behind its finalizers ({}); trying again",
                s.code
            );
            Ok(Action::requeue(CACHE_FILLING_RETRY))
        }
        Err(e) => Err(Error::Finalizer(e.to_string())),
    }
}

/// Retries a failed pass with per-object exponential backoff (capped at five minutes),
/// waiting at least as long as the backend asked.
pub fn error_policy<B: Backend>(
    pkg: Arc<AppAttachPackage>,
    err: &Error,
    ctx: Arc<Context<B>>,
) -> Action {
    let key = format!("{}/{}", pkg.namespace().unwrap_or_default(), pkg.name_any());
    let attempt = ctx.record_failure(&key);
    let backoff = Duration::from_millis(500u64 << attempt.min(10)).min(Duration::from_secs(300));
    let wait = match err {
        // The backend asked for a pause, or is failing: back off, at least as asked.
        // Our own budget: back exactly when there is room, not later.
        Error::Backend(BackendError::Budget(d)) => *d,
        Error::Backend(b) => b.retry_after().map_or(backoff, |r| r.max(backoff)),
        // A stale cache or a write conflict on the API server clears within moments.
        _ => backoff.min(Duration::from_secs(5)),
    };
    tracing::warn!(
        kind = "AppAttachPackage",
        namespace = pkg.namespace().unwrap_or_default(),
        name = pkg.name_any(),
        attempt,
        retry_in = ?wait,
        reason = err.metric_label(),
        "reconcile failed: {err}"
    );
    Action::requeue(wait)
}

/// The live assignments of one kind that point at `pkg`, by name.
fn assignments_of_package<A: Assignment>(
    store: &Store<A>,
    by_package: &Index<A>,
    pkg: &AppAttachPackage,
) -> Vec<Arc<A>> {
    let name = pkg.name_any();
    by_package
        .get(store, &package_key(pkg))
        .into_iter()
        .filter(|a| {
            a.meta().namespace == pkg.metadata.namespace
                && a.package_ref() == name
                && a.meta().deletion_timestamp.is_none()
        })
        .collect()
}

/// The observation of one pass, from the caches and the backend.
async fn observe_package<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Pass<'_, B>,
) -> Result<Observation, (Observation, BackendError)> {
    let mut inputs = inputs(pkg, ctx, ctx.backend.scope());
    if let Some(trust) = &ctx.trust {
        inputs.trust = Some(trust.view().await);
    }
    let package = Arc::new(pkg.clone());
    let now = jiff::Timestamp::now();
    let max_age = ctx.config.max_snapshot_age();
    observe::observe(
        ctx.snapshot,
        Some(ctx.backend),
        package.clone(),
        inputs.clone(),
        now,
        max_age,
    )
    .await
    .map_err(|e| {
        let blind = Observation {
            package,
            inputs,
            backend: None,
            scope: ctx.backend.scope().clone(),
            now,
        };
        (blind, e)
    })
}

/// The package's assignments and the packages of its full name that go to the same
/// subscription and resource group (`scope`: a host pool of another target is another
/// host pool, whatever its name), from the caches (by index: scanning every package on
/// every pass made a cold start quadratic).
fn inputs<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    scope: &crate::arm::Scope,
) -> Inputs {
    let (_, full) = build::identity(&pkg.spec);
    Inputs {
        host_pool_assignments: assignments_of_package(
            &ctx.host_pool_assignments,
            &ctx.hpa_by_package,
            pkg,
        ),
        user_assignments: assignments_of_package(&ctx.user_assignments, &ctx.ua_by_package, pkg),
        same_full_name: ctx
            .packages_by_full_name
            .get(&ctx.packages, &full)
            .into_iter()
            .filter(|other| {
                ctx.lanes.scope_of(other).is_some_and(|o| {
                    o.subscription.eq_ignore_ascii_case(&scope.subscription)
                        && o.resource_group.eq_ignore_ascii_case(&scope.resource_group)
                })
            })
            .map(|other| {
                let hpas =
                    assignments_of_package(&ctx.host_pool_assignments, &ctx.hpa_by_package, &other);
                (other, hpas)
            })
            .collect(),
        trust: None,
    }
}

fn settings<B>(ctx: &Context<B>) -> Settings {
    Settings {
        rollout_poll: ctx.config.rollout_poll,
    }
}

/// One pass: find the package's target, then observe, decide, execute.
async fn apply<B: Backend + Clone>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
) -> Result<Action, Error> {
    // Never decide on half-listed assignments: right after a start, a package could look
    // unassigned and lose its role assignments.
    if !ctx.hpa_by_package.is_listed() || !ctx.ua_by_package.is_listed() {
        return Ok(Action::requeue(CACHE_FILLING_RETRY));
    }
    let lane = match ctx.lanes.lane_for(pkg).await {
        Ok(lane) => lane,
        Err((scope, f)) => return no_target(pkg, ctx, scope, f).await,
    };
    let pass = Pass::on(ctx, &lane);
    if let Some(f) = super::targets::moved(pkg, lane.backend.scope(), &lane.label) {
        return no_target(pkg, ctx, lane.backend.scope().clone(), f).await;
    }
    apply_on(pkg, &pass).await
}

/// How soon a package whose target cannot be used looks again (a target or Secret made
/// meanwhile, or an identity federated, is found then).
const TARGET_RETRY: Duration = Duration::from_secs(30);

/// A package whose target cannot be used: `Ready=False` naming the target and the fix, a
/// Warning event, and nothing written to any backend.
async fn no_target<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    scope: crate::arm::Scope,
    f: TargetFailure,
) -> Result<Action, Error> {
    let obs = Observation {
        package: Arc::new(pkg.clone()),
        inputs: inputs(pkg, ctx, &scope),
        backend: None,
        scope,
        now: jiff::Timestamp::now(),
    };
    let mut d = decide::refused_target(&obs, f.reason, f.message);
    d.requeue = decide::Requeue::After(TARGET_RETRY);
    execute::status_only(ctx, &obs, d).await
}

/// One pass on the package's backend: observe, decide, execute.
async fn apply_on<B: Backend>(pkg: &AppAttachPackage, ctx: &Pass<'_, B>) -> Result<Action, Error> {
    // Nor on a picture of the backend not read yet: every pool would look missing. Why
    // it is not there yet (a refresh that failed) is the package's to report.
    if !ctx.snapshot.is_ready() {
        return match ctx.snapshot.health().last_error {
            Some(e) => {
                let blind = blind(pkg, ctx);
                unobserved(ctx, &blind, e).await
            }
            None => Ok(Action::requeue(CACHE_FILLING_RETRY)),
        };
    }
    let obs = match observe_package(pkg, ctx).await {
        Ok(obs) => obs,
        Err((obs, e)) => return unobserved(ctx, &obs, e).await,
    };
    let mut decision = decide::decide(&obs, &settings(ctx));
    let obs = if decision.refused_by_backend_facts() {
        // Refused on what the picture says of the host pools or of the backend name: read
        // them again before saying so (the picture may predate a fix made in the portal).
        match confirm(pkg, ctx, &obs).await {
            Ok(again) => {
                decision = decide::decide(&again, &settings(ctx));
                again
            }
            Err((obs, e)) => return unobserved(ctx, &obs, e).await,
        }
    } else {
        obs
    };
    execute::execute(ctx, &obs, decision).await
}

/// An observation of the package alone, for a pass that could not read the backend.
fn blind<B: Backend>(pkg: &AppAttachPackage, ctx: &Pass<'_, B>) -> Observation {
    Observation {
        package: Arc::new(pkg.clone()),
        inputs: inputs(pkg, ctx, ctx.backend.scope()),
        backend: None,
        scope: ctx.backend.scope().clone(),
        now: jiff::Timestamp::now(),
    }
}

/// Reads again, fresh, the assigned host pools and the backend package the object maps
/// to, records them in the picture, and observes again.
async fn confirm<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Pass<'_, B>,
    obs: &Observation,
) -> Result<Observation, (Observation, BackendError)> {
    let fresh = async {
        let ids: Vec<String> = obs
            .inputs
            .host_pool_assignments
            .iter()
            .flat_map(|a| &a.spec.host_pools)
            .map(|h| ctx.backend.host_pool_id(&h.name))
            .collect();
        for id in ids {
            let read = match ctx.backend.get_host_pool(&id).await? {
                Some(pool) => Some(Box::new((
                    pool,
                    ctx.backend.list_session_hosts(&id).await?,
                    ctx.backend.list_msix_packages(&id).await?,
                ))),
                None => None,
            };
            ctx.snapshot.record(Change::Pool(id, read));
        }
        let home = naming::backend_name(&pkg.namespace().unwrap_or_default(), &pkg.name_any());
        ctx.snapshot
            .record(match ctx.backend.get_package(&home).await? {
                Some(p) => Change::Package(home, p),
                None => Change::PackageGone(home),
            });
        Ok::<(), BackendError>(())
    };
    match fresh.await {
        Ok(()) => observe_package(pkg, ctx).await,
        Err(e) => Err((blind(pkg, ctx), e)),
    }
}

/// The backend could not be read: say so in `Synced` (unless it is only our own pacing)
/// and retry with backoff.
async fn unobserved<B: Backend>(
    ctx: &Pass<'_, B>,
    obs: &Observation,
    e: BackendError,
) -> Result<Action, Error> {
    if !matches!(e, BackendError::Budget(_)) {
        let d = decide::unobserved(obs, &e);
        if let Err(write) = execute::execute(ctx, obs, d).await {
            tracing::warn!("recording the failure in status: {write}");
        }
    }
    Err(e.into())
}

/// Removes the package's backend resources (unless the policy keeps them), in its
/// target. A target that cannot be used holds the deletion (and says why in the log):
/// nothing the package wrote is left behind unseen.
async fn cleanup<B: Backend + Clone>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
) -> Result<Action, Error> {
    let lane = match ctx.lanes.lane_for(pkg).await {
        Ok(lane) => lane,
        Err((_, f)) => {
            tracing::warn!(
                reason = f.reason,
                "deleting the package waits for its target: {}",
                f.message
            );
            return Ok(Action::requeue(TARGET_RETRY));
        }
    };
    if let Some(f) = super::targets::moved(pkg, lane.backend.scope(), &lane.label) {
        tracing::warn!(
            reason = f.reason,
            "deleting the package waits: {}",
            f.message
        );
        return Ok(Action::requeue(TARGET_RETRY));
    }
    cleanup_on(pkg, &Pass::on(ctx, &lane)).await
}

async fn cleanup_on<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Pass<'_, B>,
) -> Result<Action, Error> {
    if !ctx.snapshot.is_ready() {
        return Ok(Action::requeue(CACHE_FILLING_RETRY));
    }
    let obs = match observe_package(pkg, ctx).await {
        Ok(obs) => obs,
        Err((_, e)) => return Err(e.into()),
    };
    let decision = decide::cleanup(&obs, &settings(ctx));
    let action = execute::execute(ctx, &obs, decision).await?;
    ctx.config
        .metrics
        .forget(&pkg.namespace().unwrap_or_default(), &pkg.name_any());
    Ok(action)
}

/// How soon a pass that found a cache still filling tries again.
const CACHE_FILLING_RETRY: Duration = Duration::from_millis(500);

/// An assignment kind, for the status of assignments whose package does not exist.
pub trait Assignment:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Its status.
    type Status: Serialize + Send + Sync;
    /// The package it points at.
    fn package_ref(&self) -> &str;
    /// Its status's conditions.
    fn conditions(&self) -> &[Condition];
    /// The digest of the whole status the cached copy was cut from.
    fn cached_digest(&self) -> Option<u64>;
    /// Its status while its package does not exist: the conditions alone.
    fn orphan_status(generation: Option<i64>, conditions: Vec<Condition>) -> Self::Status;
}

/// The index key of an assignment: the package it points at.
pub fn by_package<A: Assignment>(a: &A) -> String {
    index::namespaced_key(a.meta().namespace.as_deref(), a.package_ref())
}

/// The key under which `by_package` files the assignments that point at `pkg`.
pub fn package_key(pkg: &AppAttachPackage) -> String {
    index::namespaced_key(pkg.metadata.namespace.as_deref(), &pkg.name_any())
}

/// The index key of a package: its full name.
pub fn by_full_name(p: &AppAttachPackage) -> String {
    build::identity(&p.spec).1
}

impl Assignment for HostPoolAssignment {
    type Status = HostPoolAssignmentStatus;
    fn package_ref(&self) -> &str {
        &self.spec.package_ref.name
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn cached_digest(&self) -> Option<u64> {
        self.status.as_ref()?.cached_digest
    }
    fn orphan_status(generation: Option<i64>, conditions: Vec<Condition>) -> Self::Status {
        HostPoolAssignmentStatus {
            observed_generation: generation,
            conditions,
            host_pools: Vec::new(),
            cached_digest: None,
        }
    }
}

impl Assignment for UserAssignment {
    type Status = UserAssignmentStatus;
    fn package_ref(&self) -> &str {
        &self.spec.package_ref.name
    }
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
    fn cached_digest(&self) -> Option<u64> {
        self.status.as_ref()?.cached_digest
    }
    fn orphan_status(generation: Option<i64>, conditions: Vec<Condition>) -> Self::Status {
        UserAssignmentStatus {
            observed_generation: generation,
            conditions,
            principals: Vec::new(),
            cached_digest: None,
        }
    }
}

/// Reports `Ready=False PackageNotFound` on an assignment whose package does not exist;
/// otherwise leaves its status to the package's reconcile. Counted in the metrics.
pub async fn reconcile_orphan<A: Assignment, B: Backend>(
    a: Arc<A>,
    ctx: Arc<Context<B>>,
    packages: Store<AppAttachPackage>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let kind = A::kind(&Default::default()).to_string();
    let span = object_span(&kind, &*a);
    let result = orphan_pass(a, ctx.clone(), packages)
        .instrument(span.clone())
        .await;
    let reason = result.as_ref().err().map(Error::metric_label);
    ctx.config
        .metrics
        .reconciled(&kind, reason, started.elapsed());
    span.in_scope(|| log_pass(started, reason));
    result
}

async fn orphan_pass<A: Assignment, B: Backend>(
    a: Arc<A>,
    ctx: Arc<Context<B>>,
    packages: Store<AppAttachPackage>,
) -> Result<Action, Error> {
    // Until the packages are listed, every assignment would look orphaned.
    if !ctx.packages_by_full_name.is_listed() {
        return Ok(Action::requeue(CACHE_FILLING_RETRY));
    }
    let ns = a.namespace().unwrap_or_default();
    let exists = packages
        .get(&ObjectRef::new(a.package_ref()).within(&ns))
        .is_some();
    if exists || a.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = a.conditions();
    let generation = a.meta().generation;
    let (conditions, message) = decide::orphan(
        previous,
        a.package_ref(),
        &ns,
        generation,
        jiff::Timestamp::now(),
    );
    let st = A::orphan_status(generation, conditions);
    let api: Api<A> = Api::namespaced(ctx.client.clone(), &ns);
    let before = status::find(previous, condition::READY).map(|c| c.reason.clone());
    if status::write_unless_digest(&api, &a.name_any(), a.cached_digest(), &st).await?
        && before.as_deref() != Some("PackageNotFound")
    {
        let note = Note {
            warning: true,
            reason: "PackageNotFound".into(),
            note: message,
            action: "Reconcile",
        };
        execute::publish(&ctx, &*a, &[note]).await;
    }
    Ok(Action::await_change())
}

/// Retries an assignment's status write after a short wait.
pub fn orphan_error_policy<A: Assignment, B: Backend>(
    a: Arc<A>,
    err: &Error,
    _ctx: Arc<Context<B>>,
) -> Action {
    tracing::warn!(
        kind = A::kind(&Default::default()).as_ref(),
        namespace = a.namespace().unwrap_or_default(),
        name = a.name_any(),
        "assignment status: {err}"
    );
    Action::requeue(Duration::from_secs(5))
}
