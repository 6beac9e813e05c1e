//! One pass over one package: dereference its assignments, read the backend, validate,
//! build, write the difference, report.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::build::{self, OWNER_TAG, Principal};
use super::index::{self, Index};
use super::status::{self, Cond};
use super::validate::{self, Finding, PoolFacts, Severity};
use super::{
    ADOPT_ANNOTATION, Context, Error, FINALIZER, Policy, msix_rollout, resync_after, rolling,
};
use crate::arm::models::{MsixPackage, MsixPackageProperties, PrincipalType, SessionHost};
use crate::backend::{Backend, BackendError};
use crate::domain::naming;
use crate::resources::{
    AppAttachPackage, AppAttachPackageStatus, HostPoolAssignment, HostPoolAssignmentStatus,
    HostPoolRollout, HostPoolStatus, PackageMode, PackageState, PrincipalKind, ResolvedPrincipal,
    UserAssignment, UserAssignmentStatus, condition,
};

/// Reconciles one package (the controller's entry point), counted in the metrics.
pub async fn reconcile_package<B: Backend>(
    pkg: Arc<AppAttachPackage>,
    ctx: Arc<Context<B>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let span = object_span("AppAttachPackage", &*pkg);
    let result = reconcile_package_pass(pkg, ctx.clone())
        .instrument(span.clone())
        .await;
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
    let pkg = if rolling(&pkg) {
        match api.get_opt(&pkg.name_any()).await? {
            Some(fresh) => Arc::new(fresh),
            None => return Ok(Action::await_change()),
        }
    } else {
        pkg
    };
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

/// Whether the package is in, or about to start, a rollout.
fn rolling(pkg: &AppAttachPackage) -> bool {
    pkg.status.as_ref().is_some_and(|st| {
        st.rollout.as_ref().is_some_and(super::rollout::is_active)
            || st
                .current_version
                .as_ref()
                .is_some_and(|v| *v != pkg.spec.package.version)
    })
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

/// Everything learned about the package's host pools and principals.
pub struct Observed {
    /// What the backend says of each assigned host pool that exists.
    pub pools: Vec<PoolFacts>,
    /// Each assigned host pool that exists: (name in the spec, ARM id, ring).
    pub pool_ids: Vec<(String, String, i32)>,
    /// The session hosts of each pool of `pool_ids`, in the same order.
    pub hosts: Vec<Vec<SessionHost>>,
    /// The assigned users and groups (app attach only).
    pub principals: Vec<Principal>,
    /// Session hosts of all the assigned pools.
    pub session_hosts: usize,
    /// What is wrong with the assignments (missing pools, object ids, duplicates).
    pub problems: Vec<Finding>,
}

fn error(reason: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        reason,
        message,
    }
}

fn backend_rejected(e: &BackendError) -> Option<Finding> {
    match e {
        BackendError::Arm(a)
            if (400..500).contains(&a.status) && a.status != 408 && a.status != 429 =>
        {
            let (reason, advice): (&'static str, String) = match a.code.as_str() {
                "AuthorizationFailed" => {
                    let action = a
                        .message
                        .split_once("perform action '")
                        .and_then(|(_, rest)| rest.split_once('\''))
                        .map_or("(see the message)", |(action, _)| action);
                    (
                        "BackendForbidden",
                        format!("the controller's identity may not perform {action}: grant it the roles in the README's \"Run against Azure\" section"),
                    )
                }
                "PrincipalNotFound" => (
                    "PrincipalNotFound",
                    "a UserAssignment names a user or group the directory does not know (a group created moments ago is retried first): check its objectId".into(),
                ),
                "InvalidResourceName" => ("InvalidBackendName", "rename the AppAttachPackage".into()),
                "ResourceGroupNotFound" => (
                    "ResourceGroupNotFound",
                    "create the resource group, or fix --resource-group".into(),
                ),
                "InvalidParameter" | "InvalidRequestContent" | "BadRequest" => (
                    "InvalidParameter",
                    "fix the property the message names".into(),
                ),
                _ => ("BackendRejected", "see the message".into()),
            };
            Some(error(
                reason,
                format!(
                    "the backend refused the change ({} {}): {}; {advice}",
                    a.status, a.code, a.message
                ),
            ))
        }
        _ => None,
    }
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

async fn observe<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    package_id: &str,
) -> Result<Observed, Error> {
    let (_, full) = build::identity(&pkg.spec);
    let inputs = Inputs {
        host_pool_assignments: assignments_of_package(
            &ctx.host_pool_assignments,
            &ctx.hpa_by_package,
            pkg,
        ),
        user_assignments: assignments_of_package(&ctx.user_assignments, &ctx.ua_by_package, pkg),
        // Only the packages of the same full name, from the index: scanning every package
        // on every pass made a cold start quadratic.
        same_full_name: ctx
            .packages_by_full_name
            .get(&ctx.packages, &full)
            .into_iter()
            .map(|other| {
                let hpas =
                    assignments_of_package(&ctx.host_pool_assignments, &ctx.hpa_by_package, &other);
                (other, hpas)
            })
            .collect(),
    };
    Ok(observe_with(Some(&ctx.backend), pkg, package_id, &inputs).await?)
}

/// What a pass over one package looks at besides the package itself: the controller takes
/// it from its watch caches, `appattach plan` and `validate` from manifests.
pub struct Inputs {
    /// The live HostPoolAssignments that point at the package.
    pub host_pool_assignments: Vec<Arc<HostPoolAssignment>>,
    /// The live UserAssignments that point at the package.
    pub user_assignments: Vec<Arc<UserAssignment>>,
    /// Packages with the same package full name (the package itself may be among them),
    /// each with the HostPoolAssignments that point at it.
    pub same_full_name: Vec<(Arc<AppAttachPackage>, Vec<Arc<HostPoolAssignment>>)>,
}

/// Reads what the backend says of the package's host pools, and checks its principals and
/// the rule of one active package per full name per host pool. Reads only; without a
/// backend (`appattach validate` with no world), the host pools are not looked at.
pub async fn observe_with<B: Backend>(
    backend: Option<&B>,
    pkg: &AppAttachPackage,
    package_id: &str,
    inputs: &Inputs,
) -> Result<Observed, BackendError> {
    let hpas = &inputs.host_pool_assignments;
    let uas = &inputs.user_assignments;
    let mut obs = Observed {
        pools: vec![],
        pool_ids: vec![],
        hosts: vec![],
        principals: vec![],
        session_hosts: 0,
        problems: vec![],
    };
    let mut seen = BTreeSet::new();
    if let Some(backend) = backend {
        for a in hpas {
            for (i, hp) in a.spec.host_pools.iter().enumerate() {
                let id = backend.host_pool_id(&hp.name);
                if !seen.insert(id.to_ascii_lowercase()) {
                    continue;
                }
                let field = format!(
                    "HostPoolAssignment/{} spec.hostPools[{i}].name",
                    a.name_any()
                );
                let Some(pool) = backend.get_host_pool(&id).await? else {
                    obs.problems.push(error(
                    "HostPoolNotFound",
                    format!("{field}: host pool {} was not found in the backend; fix the name or create the host pool", hp.name),
                ));
                    continue;
                };
                let hosts = backend.list_session_hosts(&id).await?;
                let has_other_feature = match pkg.spec.mode {
                    PackageMode::AppAttach => !backend.list_msix_packages(&id).await?.is_empty(),
                    PackageMode::MsixAppAttach => pool
                        .properties
                        .app_attach_package_references
                        .iter()
                        .flatten()
                        .any(|r| !r.eq_ignore_ascii_case(package_id)),
                };
                obs.session_hosts += hosts.len();
                obs.pools.push(PoolFacts {
                    name: hp.name.clone(),
                    field,
                    location: pool.location.clone().unwrap_or_default(),
                    identity_provider: pool
                        .tags
                        .as_ref()
                        .and_then(|t| t.get("appattach.io/identity-provider").cloned()),
                    host_os_versions: hosts
                        .iter()
                        .filter_map(|h| h.properties.os_version.clone())
                        .collect(),
                    has_other_feature,
                });
                obs.pool_ids
                    .push((hp.name.clone(), pool.id.clone().unwrap_or(id), hp.ring));
                obs.hosts.push(hosts);
            }
        }
    }
    if pkg.spec.mode == PackageMode::AppAttach {
        let mut seen = BTreeSet::new();
        for a in uas {
            for (i, p) in a.spec.principals.iter().enumerate() {
                match &p.object_id {
                    Some(id) if seen.insert(id.to_ascii_lowercase()) => obs.principals.push(Principal {
                        object_id: id.to_ascii_lowercase(),
                        kind: match p.kind {
                            PrincipalKind::User => PrincipalType::User,
                            PrincipalKind::Group => PrincipalType::Group,
                        },
                    }),
                    Some(_) => {}
                    None => obs.problems.push(error(
                        "PrincipalObjectIdMissing",
                        format!(
                            "UserAssignment/{} spec.principals[{i}].objectId: {:?} {} has no objectId; the backend assigns roles by directory object id, add it",
                            a.name_any(),
                            p.kind,
                            p.name
                        ),
                    )),
                }
            }
        }
    }
    // One active package per full name per host pool.
    if pkg.spec.state == PackageState::Active {
        let (_, full) = build::identity(&pkg.spec);
        // The host pools as the assignments name them: a pass without a backend (validate)
        // checks the rule too.
        let mine: BTreeSet<String> = hpas
            .iter()
            .flat_map(|a| &a.spec.host_pools)
            .map(|h| h.name.to_ascii_lowercase())
            .collect();
        for (other, other_hpas) in &inputs.same_full_name {
            // The older object keeps the host pool; the newer one is refused.
            let older = (&other.metadata.creation_timestamp, other.name_any())
                < (&pkg.metadata.creation_timestamp, pkg.name_any());
            let same_object =
                other.namespace() == pkg.namespace() && other.name_any() == pkg.name_any();
            if same_object
                || !older
                || other.spec.state != PackageState::Active
                || build::identity(&other.spec).1 != full
            {
                continue;
            }
            let shared = other_hpas.iter().any(|a| {
                a.spec
                    .host_pools
                    .iter()
                    .any(|h| mine.contains(&h.name.to_ascii_lowercase()))
            });
            if shared {
                obs.problems.push(error(
                    "DuplicatePackageOnHostPool",
                    format!(
                        "AppAttachPackage {}/{} is already active with package full name {full} on a host pool of this one; only one active package per full name per host pool: set one of them Inactive or assign them to different host pools",
                        other.namespace().unwrap_or_default(),
                        other.name_any()
                    ),
                ));
            }
        }
    }
    Ok(obs)
}

/// Whether the backend package this object maps to may be ours: one made outside the
/// controller is taken over only when the object asks (annotation), and one that another
/// object owns never is.
pub fn ownership(
    pkg: &AppAttachPackage,
    backend_name: &str,
    observed: Option<&crate::arm::models::AppAttachPackage>,
) -> Vec<Finding> {
    let key = format!("{}/{}", pkg.namespace().unwrap_or_default(), pkg.name_any());
    let mut findings = Vec::new();
    let owner = observed
        .and_then(|o| o.tags.as_ref())
        .and_then(|t| t.get(OWNER_TAG));
    if observed.is_some()
        && owner.is_none()
        && pkg.annotations().get(ADOPT_ANNOTATION).map(String::as_str) != Some("true")
    {
        findings.push(error(
            "AlreadyExists",
            format!(
                "the backend already has an app attach package named {backend_name}, made outside this controller; to manage it from here, set the annotation {ADOPT_ANNOTATION}: \"true\" (its host pools and assignments then follow this object's), or rename this AppAttachPackage"
            ),
        ));
    }
    if let Some(owner) = owner
        && owner != &key
    {
        findings.push(error(
            "BackendNameTaken",
            format!("the backend name {backend_name} (from namespace and name) already belongs to {owner}; rename this AppAttachPackage"),
        ));
    }
    findings
}

/// How soon a pass that found a cache still filling tries again.
const CACHE_FILLING_RETRY: Duration = Duration::from_millis(500);

/// Whether a watch cache holds its initial list. Checked, never awaited: the caches fill
/// only while the controller polls its streams, which it stops doing while every
/// reconcile slot is taken, so a pass that waited for them could wait for ever.
fn is_listed<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

async fn apply<B: Backend>(pkg: &AppAttachPackage, ctx: &Context<B>) -> Result<Action, Error> {
    // Never decide on half-listed assignments: right after a start, a package could look
    // unassigned and lose its role assignments.
    if !is_listed(&ctx.host_pool_assignments) || !is_listed(&ctx.user_assignments) {
        return Ok(Action::requeue(CACHE_FILLING_RETRY));
    }
    let ns = pkg.namespace().unwrap_or_default();
    let name = pkg.name_any();
    let key = format!("{ns}/{name}");
    let api: Api<AppAttachPackage> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = pkg.metadata.generation;
    let mut previous = pkg.status.clone().unwrap_or_default();
    // The backend package of the version every host pool runs (it changes with rollouts).
    let backend_name = previous
        .backend_name
        .clone()
        .unwrap_or_else(|| naming::backend_name(&ns, &name));
    let package_id = ctx.backend.package_id(&backend_name);

    let policy = match Policy::of(pkg) {
        Ok(p) => p,
        Err(message) => {
            let findings = vec![error("InvalidReconcilePolicy", message)];
            report(pkg, ctx, &api, &previous, &findings, None).await?;
            return Ok(Action::await_change());
        }
    };
    if pkg.spec.suspend {
        let mut st = previous.clone();
        let mut wanted: Vec<Cond> = keep_except(&previous.conditions, condition::SYNCED);
        wanted.push(Cond::no(
            condition::SYNCED,
            "Suspended",
            "spec.suspend is true: nothing is written to the backend until it is false",
        ));
        st.conditions = status::conditions(&previous.conditions, &wanted, generation);
        st.observed_generation = generation;
        status::write(&api, &name, pkg.status.as_ref(), &st).await?;
        return Ok(Action::await_change());
    }

    let obs = match observe(pkg, ctx, &package_id).await {
        Ok(o) => o,
        Err(e) => return Err(sync_failed(pkg, &api, &previous, e).await),
    };
    let mut findings = validate::validate(&pkg.spec, &obs.pools, jiff::Timestamp::now());
    findings.extend(obs.problems.iter().cloned());

    let observed_pkg = if pkg.spec.mode == PackageMode::AppAttach {
        match ctx.backend.get_package(&backend_name).await {
            Ok(o) => o,
            Err(e) => return Err(sync_failed(pkg, &api, &previous, e.into()).await),
        }
    } else {
        None
    };
    findings.extend(ownership(pkg, &backend_name, observed_pkg.as_ref()));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let has_errors = findings.iter().any(|f| f.severity == Severity::Error);

    let mut drift = false;
    let mut outcome = None;
    if !has_errors {
        let result = match pkg.spec.mode {
            PackageMode::AppAttach => rolling::app_attach(
                ctx,
                pkg,
                &api,
                &obs,
                &previous,
                &backend_name,
                observed_pkg,
                policy,
            )
            .await
            .map(|o| {
                drift = o.drift;
                outcome = Some(o);
            }),
            PackageMode::MsixAppAttach => {
                msix_rollout::msix(ctx, pkg, &api, &obs, &previous, policy)
                    .await
                    .map(|o| {
                        drift = o.drift;
                        outcome = Some(o);
                    })
            }
        };
        match result {
            Ok(()) => {}
            Err(Error::Backend(e)) => match backend_rejected(&e) {
                // A group created a moment ago may not have reached ARM yet: retry a few
                // times with backoff before saying so.
                Some(f) if f.reason == "PrincipalNotFound" && ctx.failures(&key) < 4 => {
                    return Err(sync_failed(pkg, &api, &previous, e.into()).await);
                }
                Some(f) => {
                    findings.insert(0, f);
                    // A rollout step may have recorded its intent before the refusal.
                    if let Ok(fresh) = api.get_status(&name).await
                        && let Some(st) = fresh.status
                    {
                        previous = st;
                    }
                }
                None => return Err(sync_failed(pkg, &api, &previous, e.into()).await),
            },
            Err(e) => return Err(e),
        }
    }
    let requeue = outcome.as_ref().and_then(|o| o.requeue);
    let summary = Summary {
        backend_name,
        package_id,
        obs: &obs,
        drift,
        policy,
        outcome,
    };
    report(pkg, ctx, &api, &previous, &findings, Some(&summary)).await?;
    Ok(match requeue {
        Some(d) => Action::requeue(d.min(ctx.config.resync)),
        None => resync_after(&ctx.config, &key),
    })
}

/// The MSIX package body of a desired package.
pub fn msix_body(desired: &build::Desired) -> MsixPackage {
    let image = desired.package.properties.image.clone().unwrap_or_default();
    MsixPackage {
        id: None,
        name: None,
        resource_type: None,
        location: None,
        tags: None,
        properties: MsixPackageProperties {
            image_path: image.image_path.clone(),
            package_name: image.package_name.clone(),
            package_family_name: image.package_family_name.clone(),
            display_name: image.display_name.clone(),
            package_relative_path: image.package_relative_path.clone(),
            is_regular_registration: image.is_regular_registration,
            is_active: image.is_active,
            package_dependencies: image.package_dependencies.clone(),
            version: image.version.clone(),
            last_updated: None,
            package_applications: image.package_applications.clone(),
        },
    }
}

/// MSIX app attach: the package lives under each assigned host pool.
pub(super) async fn sync_msix<B: Backend>(
    ctx: &Context<B>,
    pkg: &AppAttachPackage,
    desired: &build::Desired,
    obs: &Observed,
    previous: &AppAttachPackageStatus,
    policy: Policy,
) -> Result<bool, BackendError> {
    let image = desired.package.properties.image.clone().unwrap_or_default();
    let full = image.package_full_name.clone().unwrap_or_default();
    let body = msix_body(desired);
    let mut drift = false;
    for (_, pool_id, _) in &obs.pool_ids {
        let current = ctx.backend.get_msix_package(pool_id, &full).await?;
        let differs = current.is_none_or(|c| {
            let mut c = c.properties;
            c.last_updated = None;
            c != body.properties
        });
        drift |= differs;
        if differs && policy != Policy::Skip {
            ctx.backend.put_msix_package(pool_id, &full, &body).await?;
        }
    }
    let now: BTreeSet<String> = obs
        .pool_ids
        .iter()
        .map(|(n, _, _)| n.to_ascii_lowercase())
        .collect();
    for gone in previous
        .host_pools
        .iter()
        .filter(|p| !now.contains(&p.name.to_ascii_lowercase()))
    {
        drift = true;
        if policy != Policy::Skip {
            let pool_id = ctx.backend.host_pool_id(&gone.name);
            let old_full = previous_full_name(pkg, gone).unwrap_or_else(|| full.clone());
            ctx.backend.delete_msix_package(&pool_id, &old_full).await?;
        }
    }
    Ok(drift && policy == Policy::Skip)
}

fn rolling_active(r: &crate::resources::RolloutStatus) -> bool {
    super::rollout::is_active(r)
}

fn previous_full_name(pkg: &AppAttachPackage, pool: &HostPoolRollout) -> Option<String> {
    let version = pool.version.as_ref()?;
    let mut spec = pkg.spec.clone();
    spec.package.version = version.clone();
    spec.package.full_name = None;
    Some(build::identity(&spec).1)
}

/// What a successful pass did, for status.
struct Summary<'a> {
    backend_name: String,
    package_id: String,
    obs: &'a Observed,
    drift: bool,
    policy: Policy,
    /// App attach: what the rollout pass decided.
    outcome: Option<rolling::Outcome>,
}

fn keep_except(previous: &[Condition], type_: &str) -> Vec<Cond> {
    previous
        .iter()
        .filter(|c| c.type_ != type_)
        .filter_map(|c| {
            let t: &'static str = match c.type_.as_str() {
                "Ready" => condition::READY,
                "Synced" => condition::SYNCED,
                "Progressing" => condition::PROGRESSING,
                "CertificateValid" => "CertificateValid",
                "Degraded" => "Degraded",
                _ => return None,
            };
            Some(Cond {
                type_: t,
                status: match c.status.as_str() {
                    "True" => "True",
                    "Unknown" => "Unknown",
                    _ => "False",
                },
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
        })
        .collect()
}

/// Records a failed pass (`Synced=False`, Ready untouched: the backend may still serve
/// users) and hands the error on for backoff.
async fn sync_failed(
    pkg: &AppAttachPackage,
    api: &Api<AppAttachPackage>,
    previous: &AppAttachPackageStatus,
    e: Error,
) -> Error {
    if matches!(e, Error::Backend(BackendError::Budget(_))) {
        return e; // our own pacing, not a failure: nothing to report
    }
    let mut wanted = keep_except(&previous.conditions, condition::SYNCED);
    let reason = match &e {
        Error::Backend(BackendError::Throttled(_) | BackendError::Budget(_)) => "BackendThrottled",
        Error::Backend(BackendError::Auth(_)) => "BackendAuthFailed",
        Error::Backend(_) => "BackendUnavailable",
        _ => "ReconcileError",
    };
    if reason == "BackendAuthFailed" {
        // Nothing reaches the backend until the controller can sign in again.
        wanted.retain(|c| c.type_ != condition::READY);
        wanted.push(Cond::no(
            condition::READY,
            reason,
            format!("the controller cannot sign in to Azure: {e}"),
        ));
    }
    wanted.push(Cond::no(
        condition::SYNCED,
        reason,
        format!("the last reconcile failed and will be retried: {e}"),
    ));
    // A rollout step may have recorded its intent in this pass: keep it.
    let latest = api
        .get_status(&pkg.name_any())
        .await
        .ok()
        .and_then(|p| p.status);
    let mut st = latest.clone().unwrap_or_else(|| previous.clone());
    st.conditions = status::conditions(&st.conditions, &wanted, pkg.metadata.generation);
    st.observed_generation = pkg.metadata.generation;
    let current = latest.as_ref().or(pkg.status.as_ref());
    if let Err(write_err) = status::write(api, &pkg.name_any(), current, &st).await {
        tracing::warn!("recording the failure in status: {write_err}");
    }
    e
}

/// Writes the package's status and its assignments' statuses, and publishes events on
/// transitions.
async fn report<B: Backend>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    api: &Api<AppAttachPackage>,
    previous: &AppAttachPackageStatus,
    findings: &[Finding],
    summary: Option<&Summary<'_>>,
) -> Result<(), Error> {
    let generation = pkg.metadata.generation;
    let first_error = findings.iter().find(|f| f.severity == Severity::Error);
    let warnings: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    let mut wanted = Vec::new();
    match (first_error, summary) {
        (Some(e), _) => {
            wanted.push(Cond::no(condition::READY, e.reason, e.message.clone()));
            wanted.push(Cond::no(
                condition::SYNCED,
                e.reason,
                "the spec cannot be reconciled as it is: see Ready",
            ));
        }
        (None, Some(s)) if s.drift => {
            wanted.push(Cond::no(
                condition::READY,
                "DriftDetected",
                "the backend differs from the spec; reconcile policy skip: observed, not corrected",
            ));
            wanted.push(Cond::yes(
                condition::SYNCED,
                "Observed",
                "policy skip: the backend was read, not written",
            ));
        }
        (None, Some(s)) => {
            let what = match s.policy {
                Policy::Skip => "matches the spec (observed only: reconcile policy skip)",
                _ => "matches the spec",
            };
            wanted.push(Cond::yes(
                condition::READY,
                "Reconciled",
                format!(
                    "backend package {} {what}: {} host pool(s), {} principal(s)",
                    s.backend_name,
                    s.obs.pool_ids.len(),
                    s.obs.principals.len()
                ),
            ));
            wanted.push(Cond::yes(
                condition::SYNCED,
                "ReconcileSucceeded",
                "the last reconcile succeeded",
            ));
        }
        (None, None) => {}
    }
    if pkg.spec.certificate.is_some() {
        wanted.push(
            match findings
                .iter()
                .find(|f| f.reason.starts_with("Certificate"))
            {
                Some(f) if f.severity == Severity::Error => {
                    Cond::no("CertificateValid", f.reason, f.message.clone())
                }
                Some(f) => Cond::yes("CertificateValid", f.reason, f.message.clone()),
                None => Cond::yes(
                    "CertificateValid",
                    "CertificateValid",
                    "the certificate is valid for more than 30 days, or the package is timestamped",
                ),
            },
        );
    }
    wanted.push(match warnings.first() {
        Some(w) => Cond::yes(
            "Degraded",
            w.reason,
            warnings
                .iter()
                .map(|w| w.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => Cond::no("Degraded", "NoWarnings", "no warnings"),
    });
    // A rollout says how far it got, and Ready says whether the spec's version is what
    // every host pool runs.
    let outcome = summary.and_then(|s| s.outcome.as_ref());
    let rollout = outcome
        .and_then(|o| o.rollout.as_ref())
        .or(previous.rollout.as_ref());
    if let Some(r) = rollout {
        let (progressing, ready) = rolling::conditions(r);
        if first_error.is_none()
            && let Some(ready) = ready.filter(|_| outcome.is_some())
        {
            wanted.retain(|c| c.type_ != condition::READY);
            wanted.insert(0, ready);
        }
        wanted.push(progressing);
    }

    let mut st = AppAttachPackageStatus {
        observed_generation: generation,
        conditions: status::conditions(&previous.conditions, &wanted, generation),
        ..previous.clone()
    };
    if let Some(s) = summary {
        st.backend_name = Some(s.backend_name.clone());
        st.resource_id = (pkg.spec.mode == PackageMode::AppAttach).then(|| s.package_id.clone());
        st.current_version = Some(pkg.spec.package.version.clone());
        st.current_image_path = Some(pkg.spec.image.path.clone());
        st.host_pool_count = Some(s.obs.pool_ids.len() as i32);
        st.principal_count = Some(s.obs.principals.len() as i32);
        st.session_host_count = Some(s.obs.session_hosts as i32);
        st.share_handles_per_file = Some(s.obs.session_hosts as i32);
        st.host_pools = s
            .obs
            .pool_ids
            .iter()
            .map(|(n, _, ring)| HostPoolRollout {
                name: n.clone(),
                ring: *ring,
                version: Some(pkg.spec.package.version.clone()),
                phase: Some(if s.drift { "Drifted" } else { "Ready" }.to_string()),
                switched_at: None,
                previous_version: None,
                staged_hosts: None,
                failed_hosts: None,
                previous_version_sessions: None,
            })
            .collect();
        if let Some(o) = &s.outcome {
            if let Some(c) = &o.current {
                if pkg.spec.mode == PackageMode::AppAttach {
                    st.backend_name = Some(c.backend_name.clone());
                    st.resource_id = Some(ctx.backend.package_id(&c.backend_name));
                }
                st.current_version = Some(c.version.clone());
                st.current_image_path = Some(c.image_path.clone());
            }
            st.target_version = o
                .rollout
                .as_ref()
                .filter(|r| rolling_active(r) || o.failed_version)
                .map(|r| r.target.version.clone());
            st.host_pools = o.rows.clone();
            st.retained_images = o.retained.clone();
            st.history = o.history.clone();
            st.rollout = o.rollout.clone();
        }
    }
    // The status may have been written once already in this pass (a step's intent).
    let current = outcome
        .and_then(|o| o.written.as_ref())
        .or(pkg.status.as_ref());
    if let Some(r) = &st.rollout {
        let ns = pkg.namespace().unwrap_or_default();
        ctx.config.metrics.rollout(&ns, &pkg.name_any(), r);
    }
    status::write(api, &pkg.name_any(), current, &st).await?;
    publish_transitions(pkg, ctx, previous, &st, &warnings).await;
    if let Some(r) = &st.rollout
        && let Some((warning, reason, note)) = rolling::event(previous.rollout.as_ref(), r)
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(&note)),
            action: "Rollout".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &pkg.object_ref(&())).await {
            tracing::warn!("publishing an event: {e}");
        }
    }
    write_assignment_statuses(pkg, ctx, &st, summary).await?;
    Ok(())
}

async fn publish_transitions<B>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    previous: &AppAttachPackageStatus,
    now: &AppAttachPackageStatus,
    warnings: &[&Finding],
) {
    let reference = pkg.object_ref(&());
    let before = status::find(&previous.conditions, condition::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    let after = status::find(&now.conditions, condition::READY);
    if let Some(ready) = after.filter(|r| r.status != "Unknown")
        && before.as_ref()
            != Some(&(
                ready.status.clone(),
                ready.reason.clone(),
                ready.message.clone(),
            ))
    {
        let event = Event {
            type_: if ready.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: ready.reason.clone(),
            note: Some(truncate(&ready.message)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!("publishing an event: {e}");
        }
    }
    let degraded_before = status::find(&previous.conditions, "Degraded").map(|c| c.message.clone());
    let degraded_after = status::find(&now.conditions, "Degraded").map(|c| c.message.clone());
    if degraded_before != degraded_after {
        for w in warnings {
            let event = Event {
                type_: EventType::Warning,
                reason: w.reason.to_string(),
                note: Some(truncate(&w.message)),
                action: "Validate".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &reference).await {
                tracing::warn!("publishing an event: {e}");
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(1000).collect()
}

async fn write_assignment_statuses<B>(
    pkg: &AppAttachPackage,
    ctx: &Context<B>,
    pkg_status: &AppAttachPackageStatus,
    summary: Option<&Summary<'_>>,
) -> Result<(), Error> {
    let ns = pkg.namespace().unwrap_or_default();
    let ready = status::find(&pkg_status.conditions, condition::READY).cloned();
    let mirror = |previous: &[Condition], generation: Option<i64>| {
        let wanted = match &ready {
            Some(r) if r.status == "True" => vec![Cond::yes(
                condition::READY,
                "Reconciled",
                format!("package {} is Ready", pkg.name_any()),
            )],
            Some(r) => vec![Cond::no(condition::READY, &r.reason, r.message.clone())],
            None => vec![],
        };
        status::conditions(previous, &wanted, generation)
    };
    let hpa_api: Api<HostPoolAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    for a in assignments_of_package(&ctx.host_pool_assignments, &ctx.hpa_by_package, pkg) {
        let previous = a.status.clone().unwrap_or_default();
        let st = HostPoolAssignmentStatus {
            observed_generation: a.metadata.generation,
            conditions: mirror(&previous.conditions, a.metadata.generation),
            host_pools: a
                .spec
                .host_pools
                .iter()
                .map(|h| {
                    let id = summary
                        .and_then(|s| {
                            s.obs
                                .pool_ids
                                .iter()
                                .find(|(n, _, _)| n.eq_ignore_ascii_case(&h.name))
                        })
                        .map(|(_, id, _)| id.clone());
                    HostPoolStatus {
                        name: h.name.clone(),
                        // The version the pool runs, which a rollout moves ring by ring.
                        version: id.as_ref().and(
                            pkg_status
                                .host_pools
                                .iter()
                                .find(|r| r.name.eq_ignore_ascii_case(&h.name))
                                .and_then(|r| r.version.clone())
                                .or_else(|| Some(pkg.spec.package.version.clone())),
                        ),
                        phase: Some(if id.is_some() { "Ready" } else { "NotFound" }.to_string()),
                        resource_id: id,
                    }
                })
                .collect(),
        };
        status::write(&hpa_api, &a.name_any(), a.status.as_ref(), &st).await?;
    }
    let ua_api: Api<UserAssignment> = Api::namespaced(ctx.client.clone(), &ns);
    for a in assignments_of_package(&ctx.user_assignments, &ctx.ua_by_package, pkg) {
        let previous = a.status.clone().unwrap_or_default();
        let package_id = summary.map(|s| s.package_id.clone());
        let st = UserAssignmentStatus {
            observed_generation: a.metadata.generation,
            conditions: mirror(&previous.conditions, a.metadata.generation),
            principals: a
                .spec
                .principals
                .iter()
                .map(|p| ResolvedPrincipal {
                    kind: p.kind,
                    name: p.name.clone(),
                    object_id: p.object_id.clone(),
                    role_assignment: match (&package_id, &p.object_id, pkg.spec.mode) {
                        (Some(scope), Some(oid), PackageMode::AppAttach) => {
                            Some(crate::arm::role_assignment_name(
                                scope,
                                &oid.to_ascii_lowercase(),
                                crate::arm::DESKTOP_VIRTUALIZATION_USER_ROLE,
                            ))
                        }
                        _ => None,
                    },
                })
                .collect(),
        };
        status::write(&ua_api, &a.name_any(), a.status.as_ref(), &st).await?;
    }
    Ok(())
}

/// Removes the package's backend resources (unless the policy keeps them).
async fn cleanup<B: Backend>(pkg: &AppAttachPackage, ctx: &Context<B>) -> Result<Action, Error> {
    let ns = pkg.namespace().unwrap_or_default();
    let name = pkg.name_any();
    let key = format!("{ns}/{name}");
    let reference = pkg.object_ref(&());
    let policy = Policy::of(pkg).unwrap_or(Policy::Manage);
    if policy != Policy::Manage || pkg.spec.suspend {
        let note = format!(
            "left the backend resources in place (reconcile policy {policy:?}, suspend {})",
            pkg.spec.suspend
        );
        let event = Event {
            type_: EventType::Normal,
            reason: "Detached".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &reference).await;
        return Ok(Action::await_change());
    }
    let backend_name = naming::backend_name(&ns, &name);
    // Sessions that signed in while the package was assigned may still run from its image.
    let mut sessions = 0;
    for pool in pkg.status.iter().flat_map(|s| s.host_pools.iter()) {
        sessions += ctx
            .backend
            .list_user_sessions(&ctx.backend.host_pool_id(&pool.name))
            .await?
            .len();
    }
    let keep_image = if sessions > 0 {
        format!(
            "{sessions} session(s) on its host pools may still use the image: keep {} on the share until they end",
            pkg.spec.image.path
        )
    } else {
        format!(
            "no session on its host pools uses the image any more; {} may be removed from the share",
            pkg.spec.image.path
        )
    };
    if sessions > 0 {
        let api: Api<AppAttachPackage> = Api::namespaced(ctx.client.clone(), &ns);
        let previous = pkg.status.clone().unwrap_or_default();
        let mut st = previous.clone();
        let wanted = vec![Cond::no(condition::READY, "Deleting", keep_image.clone())];
        st.conditions = status::conditions(&previous.conditions, &wanted, pkg.metadata.generation);
        status::write(&api, &name, pkg.status.as_ref(), &st).await?;
        let event = Event {
            type_: EventType::Warning,
            reason: "ImageInUse".into(),
            note: Some(keep_image.clone()),
            action: "Delete".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &reference).await;
    }
    match pkg.spec.mode {
        PackageMode::AppAttach => {
            // The stable version's package, and those of a rollout in flight.
            let status = pkg.status.clone().unwrap_or_default();
            let home = status.backend_name.clone().unwrap_or(backend_name.clone());
            for slot in rolling::slot_names(&status, &home) {
                let package_id = ctx.backend.package_id(&slot);
                if let Some(observed) = ctx.backend.get_package(&slot).await? {
                    let owner = observed.tags.as_ref().and_then(|t| t.get(OWNER_TAG));
                    if owner.is_some_and(|o| o != &key) {
                        continue; // not ours: never delete another's package
                    }
                    for role in ctx.backend.list_role_assignments(&package_id).await? {
                        if let Some(id) = &role.id {
                            ctx.backend.delete_role_assignment(id).await?;
                        }
                    }
                    ctx.backend.delete_package(&slot).await?;
                }
            }
        }
        PackageMode::MsixAppAttach => {
            // Never leave a session host drained.
            if let Some(r) = pkg.status.as_ref().and_then(|s| s.rollout.as_ref()) {
                for h in &r.drained_hosts {
                    ctx.backend.set_allow_new_session(h, true).await?;
                }
            }
            let (_, full) = build::identity(&pkg.spec);
            for pool in pkg.status.iter().flat_map(|s| s.host_pools.iter()) {
                ctx.backend
                    .delete_msix_package(&ctx.backend.host_pool_id(&pool.name), &full)
                    .await?;
            }
        }
    }
    ctx.config.metrics.forget(&ns, &name);
    let event = Event {
        type_: EventType::Normal,
        reason: "Deleted".into(),
        note: Some(format!(
            "removed backend package {backend_name} and its role assignments; {keep_image}"
        )),
        action: "Delete".into(),
        secondary: None,
    };
    let _ = ctx.recorder.publish(&event, &reference).await;
    Ok(Action::await_change())
}

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
    /// The package it points at.
    fn package_ref(&self) -> &str;
    /// Its status as JSON.
    fn status_json(&self) -> Option<Value>;
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
    fn package_ref(&self) -> &str {
        &self.spec.package_ref.name
    }
    fn status_json(&self) -> Option<Value> {
        self.status
            .as_ref()
            .map(|s| serde_json::to_value(s).expect("JSON"))
    }
}

impl Assignment for UserAssignment {
    fn package_ref(&self) -> &str {
        &self.spec.package_ref.name
    }
    fn status_json(&self) -> Option<Value> {
        self.status
            .as_ref()
            .map(|s| serde_json::to_value(s).expect("JSON"))
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
    if !is_listed(&packages) {
        return Ok(Action::requeue(CACHE_FILLING_RETRY));
    }
    let ns = a.namespace().unwrap_or_default();
    let exists = packages
        .get(&ObjectRef::new(a.package_ref()).within(&ns))
        .is_some();
    if exists || a.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous: Vec<Condition> = a
        .status_json()
        .and_then(|s| serde_json::from_value(s["conditions"].clone()).ok())
        .unwrap_or_default();
    let message = format!(
        "spec.packageRef.name: AppAttachPackage {} does not exist in namespace {ns}; create it or point this assignment at an existing package",
        a.package_ref()
    );
    let conditions = status::conditions(
        &previous,
        &[Cond::no(
            condition::READY,
            "PackageNotFound",
            message.clone(),
        )],
        a.meta().generation,
    );
    let st = json!({ "observedGeneration": a.meta().generation, "conditions": conditions });
    let api: Api<A> = Api::namespaced(ctx.client.clone(), &ns);
    let before = status::find(&previous, condition::READY).map(|c| c.reason.clone());
    if status::write(&api, &a.name_any(), a.status_json().as_ref(), &st).await?
        && before.as_deref() != Some("PackageNotFound")
    {
        let event = Event {
            type_: EventType::Warning,
            reason: "PackageNotFound".into(),
            note: Some(message),
            action: "Reconcile".into(),
            secondary: None,
        };
        let _ = ctx.recorder.publish(&event, &a.object_ref(&())).await;
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
