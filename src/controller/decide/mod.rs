//! Decide: one pure function from what a pass observed to what it does. The [`Decision`]
//! holds the rollout step to record before anything is written (the intent), the backend
//! writes in order (and the messages, drains and log-offs among them), the whole status
//! of the package and of its assignments as they will be once the writes are done, the
//! events, and when to come back.
//!
//! Status is derived from the backend: the decision applies its writes to the observed
//! backend ([`project`]) and reports what that holds, never what the spec hopes. A spec
//! that cannot be reconciled writes nothing and reports the version that runs.

mod app_attach;
mod conditions;
mod history;
mod holdings;
mod msix;
mod outcomes;
mod project;
mod publish;
mod reach;
mod report;
mod sessions;
pub mod simulate;
mod staging;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

pub use holdings::Holdings;
pub use msix::msix_body;
pub use outcomes::{orphan, rejection};
pub use project::{apply as apply_write, project};

use super::build::{self, Principal};
use super::observe::{BackendView, Observation};
use super::planner::{self, PoolObs};
use super::validate::{self, Finding, Severity};
use super::{ADOPT_ANNOTATION, Policy};
use crate::arm::models::{
    AppAttachPackage as ArmPackage, Application, MsixPackage, PrincipalType, RoleAssignment,
    SendMessage,
};
use crate::backend::BackendError;
use crate::domain::naming;
use crate::resources::{
    AppAttachPackageSpec, AppAttachPackageStatus, HostPoolAssignmentStatus, PackageMode,
    PackageState, PrincipalKind, RetainedImage, RolloutRecord, RolloutStatus, UserAssignmentStatus,
    VersionRef,
};
use report::Outcome;

/// How the controller runs, as far as decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often a running rollout looks at its gate and at sessions on old images.
    pub rollout_poll: Duration,
}

/// One backend write (or a user-session action), in the order the pass performs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// PUT an app attach package (create or replace).
    PutPackage {
        /// Its name in the resource group.
        name: String,
        /// The whole body.
        body: ArmPackage,
    },
    /// DELETE an app attach package.
    DeletePackage {
        /// Its name.
        name: String,
    },
    /// PUT a role assignment.
    PutRole {
        /// The scope (a package's id).
        scope: String,
        /// The assignment's name (a GUID).
        name: String,
        /// The body.
        body: RoleAssignment,
    },
    /// DELETE a role assignment by its full id.
    DeleteRole {
        /// Its full id.
        id: String,
    },
    /// PUT an MSIX package under a host pool.
    PutMsix {
        /// The host pool's id.
        pool_id: String,
        /// The package full name (its resource name).
        full_name: String,
        /// The body.
        body: MsixPackage,
    },
    /// DELETE an MSIX package from a host pool.
    DeleteMsix {
        /// The host pool's id.
        pool_id: String,
        /// The package full name.
        full_name: String,
    },
    /// PUT an application in a RemoteApp application group.
    PutApplication {
        /// The application group's id.
        group_id: String,
        /// The application's name.
        name: String,
        /// The body.
        body: Application,
    },
    /// DELETE an application from an application group.
    DeleteApplication {
        /// The application group's id.
        group_id: String,
        /// The application's name.
        name: String,
    },
    /// Drain a session host (`false`) or let it take sessions again (`true`).
    AllowNewSessions {
        /// The session host's id.
        host_id: String,
        /// `allowNewSession`.
        allow: bool,
    },
    /// Send a message to a user session: recorded in the intent before it is sent.
    SendMessage {
        /// The session's id.
        session_id: String,
        /// The message.
        message: SendMessage,
    },
    /// Log a user session off: recorded in the intent before it is done.
    LogOff {
        /// The session's id.
        session_id: String,
    },
}

/// When the pass comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// At the periodic resync.
    Resync,
    /// After this long (a rollout's poll, a soak, a window).
    After(Duration),
    /// Only when something changes.
    AwaitChange,
}

/// An event to publish on the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A Warning (or Normal) event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What happened, and what to do.
    pub note: String,
    /// The action (`Reconcile`, `Validate`, `Rollout`, `Delete`).
    pub action: &'static str,
}

/// The status one assignment gets.
#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentStatus {
    /// A HostPoolAssignment, by name.
    HostPools(String, HostPoolAssignmentStatus),
    /// A UserAssignment, by name.
    Users(String, UserAssignmentStatus),
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The package's status to record before any write: the rollout step about to be
    /// taken, with the messages and log-offs it sends. `None`: nothing to record first.
    pub intent: Option<AppAttachPackageStatus>,
    /// The writes, in order: every version a host pool moves to is added before the one
    /// it leaves is removed.
    pub writes: Vec<Write>,
    /// The package's status once the writes are done.
    pub status: AppAttachPackageStatus,
    /// Its assignments' statuses.
    pub assignments: Vec<AssignmentStatus>,
    /// Events to publish.
    pub events: Vec<Note>,
    /// When to come back.
    pub requeue: Requeue,
    // What [`settle`] needs to report a pass whose writes stopped part way.
    settings: Settings,
    intent_memory: Option<Memory>,
    memory: Memory,
    findings: Vec<Finding>,
    drift: bool,
}

impl Decision {
    /// Whether the package is refused for what the backend says of its host pools (missing,
    /// in another region, of an unsupported identity provider, using the other feature) or
    /// of the name it maps to (made elsewhere, or another object's).
    pub fn refused_by_backend_facts(&self) -> bool {
        const FACTS: [&str; 6] = [
            "HostPoolNotFound",
            "HostPoolFeatureConflict",
            "RegionMismatch",
            "IdentityProviderNotSupported",
            "AlreadyExists",
            "BackendNameTaken",
        ];
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Error && FACTS.contains(&f.reason))
    }

    /// Whether, under policy skip, the backend differs from the spec.
    pub fn drift(&self) -> bool {
        self.drift
    }
}

/// The parts of status a decision keeps rather than observes: the rollout record, when
/// each host pool switched, retained images and the history.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Memory {
    /// The rollout record.
    pub rollout: Option<RolloutStatus>,
    /// Per host pool (lower-case id): when it last switched, and from which version.
    pub rows: BTreeMap<String, RowMemory>,
    /// Old images kept while sessions may use them.
    pub retained: Vec<RetainedImage>,
    /// Rollouts, newest first.
    pub history: Vec<RolloutRecord>,
    /// Per host pool (lower-case id): live sessions that started before its switch.
    pub old_sessions: BTreeMap<String, i32>,
    /// The spec names the version that failed.
    pub failed_version: bool,
}

/// What a host pool's row remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RowMemory {
    /// When it last switched (RFC 3339).
    pub switched_at: Option<String>,
    /// The version it ran before.
    pub previous_version: Option<String>,
}

/// How many rollouts the history keeps.
pub const HISTORY: usize = 10;

/// One package's pass, as the mode-specific steps see it.
pub(crate) struct Subject<'a> {
    pub obs: &'a Observation,
    pub view: &'a BackendView,
    pub spec: &'a AppAttachPackageSpec,
    pub settings: &'a Settings,
    /// `namespace/name`.
    pub key: String,
    /// The name the object maps to, or the one its status names.
    pub home: String,
    /// The package's recorded status.
    pub previous: AppAttachPackageStatus,
    pub now: Timestamp,
    pub policy: Policy,
    /// The assigned users and groups (app attach), each once.
    pub principals: Vec<Principal>,
    /// The spec's version, image and backend name.
    pub wanted: VersionRef,
    /// What the backend holds of this object's versions.
    pub held: Holdings,
    /// The assigned host pools as the planner sees them.
    pub pools: Vec<PoolObs>,
}

/// What the mode-specific steps decided.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    /// The memory to record before the writes, if any.
    pub intent: Option<Memory>,
    pub writes: Vec<Write>,
    /// The memory once the writes are done.
    pub memory: Memory,
    /// When to look again (a rollout's poll).
    pub requeue: Option<Duration>,
}

/// Decides one pass over a package that is not being deleted.
pub fn decide(obs: &Observation, settings: &Settings) -> Decision {
    let policy = match Policy::of(&*obs.package) {
        Ok(p) => p,
        Err(message) => {
            return outcomes::refused(obs, vec![error("InvalidReconcilePolicy", message)]);
        }
    };
    if obs.package.spec.suspend {
        return outcomes::suspended(obs);
    }
    let Some(view) = &obs.backend else {
        return outcomes::refused(obs, check(obs));
    };
    let findings = check(obs);
    let s = subject(obs, view, settings, policy);
    let recorded = || Memory::recorded(&s.previous);
    if findings.iter().any(|f| f.severity == Severity::Error) {
        return report::decision(
            &s,
            None,
            vec![],
            recorded(),
            findings,
            Outcome::default(),
            None,
        );
    }
    let plan = s.plan();
    let mut steps = match s.spec.mode {
        PackageMode::AppAttach => app_attach::steps(&s, &plan),
        PackageMode::MsixAppAttach => msix::steps(&s, &plan),
    };
    steps.requeue = steps.requeue.or(plan.requeue);
    sessions::pass(&s, &mut steps);
    publish::pass(&s, &mut steps);
    if let Some(why) = &view.stale
        && !steps.writes.is_empty()
    {
        // Nothing is decided from a picture of the backend too old to act on.
        let outcome = Outcome {
            drift: false,
            failure: Some(conditions::SyncFailure {
                reason: "BackendSnapshotStale",
                message: why.clone(),
            }),
        };
        let poll = Some(settings.rollout_poll);
        return report::decision(&s, None, vec![], recorded(), findings, outcome, poll);
    }
    if policy == Policy::Skip {
        // Observe only: nothing is recorded or written; what would be is drift.
        let outcome = Outcome {
            drift: !steps.writes.is_empty(),
            failure: None,
        };
        return report::decision(&s, None, vec![], recorded(), findings, outcome, None);
    }
    report::decision(
        &s,
        steps.intent,
        steps.writes,
        steps.memory,
        findings,
        Outcome::default(),
        steps.requeue,
    )
}

/// Who will not get the package once the controller has done its work: the
/// `PrincipalNotReached` warnings of the last pass of a simulation of the controller on
/// `obs` (every gate passes, every drained session ends). `appattach validate --against`
/// gives them as the controller would.
pub fn reach_warnings(obs: &Observation) -> Vec<Finding> {
    let settings = Settings {
        rollout_poll: Duration::from_secs(3600),
    };
    let mut sim = simulate::Sim::new(obs.clone(), settings);
    sim.run(500)
        .last()
        .map(|d| {
            d.findings
                .iter()
                .filter(|f| f.reason == reach::NOT_REACHED)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Decides what deleting the package does: its backend resources go (unless the policy
/// or suspend keeps them), and users are told whether its image is still in use.
pub fn cleanup(obs: &Observation, settings: &Settings) -> Decision {
    outcomes::cleanup(obs, settings)
}

/// The status and events of a pass whose writes stopped after the first `applied`, on
/// `error`: what the backend holds after those writes, with the failure in `Synced` (and
/// in `Ready` when the backend refused the change as invalid, unless `retrying` it).
pub fn settle(
    obs: &Observation,
    d: &Decision,
    applied: usize,
    error: &BackendError,
    retrying: bool,
) -> Decision {
    outcomes::settle(obs, d, applied, error, retrying)
}

/// The status of a package whose backend target cannot be used: `Ready=False` with
/// `reason` and `message`, a Warning event, and no writes.
pub fn refused_target(obs: &Observation, reason: &'static str, message: String) -> Decision {
    outcomes::refused(obs, vec![error(reason, message)])
}

/// The status of a pass that could not read the backend.
pub fn unobserved(obs: &Observation, error: &BackendError) -> Decision {
    outcomes::unobserved(obs, error)
}

/// What is wrong with the package, its assignments and what the backend says of them, in
/// the order the controller checks it: the spec against its host pools and the clock,
/// the assignments, the rule of one active package per full name per host pool, and the
/// ownership of the backend name. `appattach validate` runs the same sequence.
pub fn check(obs: &Observation) -> Vec<Finding> {
    let pkg = &obs.package;
    let facts = obs
        .backend
        .as_ref()
        .map(|v| report::pool_facts(v, pkg.spec.mode, &build::identity(&pkg.spec).0))
        .unwrap_or_default();
    let mut findings = validate::validate(&pkg.spec, &facts, obs.inputs.trust.as_deref(), obs.now);
    if let Some(v) = &obs.backend {
        findings.extend(v.missing.iter().map(|m| {
            error(
                "HostPoolNotFound",
                format!(
                    "{}: host pool {} was not found in the backend; fix the name or create the host pool",
                    m.field, m.name
                ),
            )
        }));
    }
    findings.extend(principals(obs).1);
    findings.extend(publish::check(obs));
    findings.extend(duplicates(obs));
    if pkg.spec.mode == PackageMode::AppAttach
        && let Some(v) = &obs.backend
    {
        let home = home(obs);
        let held = v.packages.iter().find(|p| p.name == home);
        findings.extend(ownership(pkg, &home, held.map(|h| &h.package)));
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

fn error(reason: &'static str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        reason,
        message,
    }
}

/// The name the object maps to in the backend, or the one its status names.
fn home(obs: &Observation) -> String {
    let pkg = &obs.package;
    obs.package
        .status
        .as_ref()
        .and_then(|s| s.backend_name.clone())
        .filter(|_| pkg.spec.mode == PackageMode::AppAttach)
        .unwrap_or_else(|| {
            naming::backend_name(&pkg.namespace().unwrap_or_default(), &pkg.name_any())
        })
}

/// The assigned users and groups (app attach), each once, and the principals that lack
/// the object id the backend assigns roles by.
fn principals(obs: &Observation) -> (Vec<Principal>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    if obs.package.spec.mode != PackageMode::AppAttach {
        return (out, problems);
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &obs.inputs.user_assignments {
        for (i, p) in a.spec.principals.iter().enumerate() {
            match &p.object_id {
                Some(id) if seen.insert(id.to_ascii_lowercase()) => out.push(Principal {
                    object_id: id.to_ascii_lowercase(),
                    kind: match p.kind {
                        PrincipalKind::User => PrincipalType::User,
                        PrincipalKind::Group => PrincipalType::Group,
                    },
                }),
                Some(_) => {}
                None => problems.push(error(
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
    (out, problems)
}

/// One active package per full name per host pool: the older object keeps the host pool;
/// the newer one is refused.
fn duplicates(obs: &Observation) -> Vec<Finding> {
    let pkg = &obs.package;
    if pkg.spec.state != PackageState::Active {
        return vec![];
    }
    let (_, full) = build::identity(&pkg.spec);
    // The host pools as the assignments name them: a pass without a backend (validate)
    // checks the rule too.
    let mine: std::collections::BTreeSet<String> = obs
        .inputs
        .host_pool_assignments
        .iter()
        .flat_map(|a| &a.spec.host_pools)
        .map(|h| h.name.to_ascii_lowercase())
        .collect();
    let mut out = vec![];
    for (other, other_hpas) in &obs.inputs.same_full_name {
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
        let shared = other_hpas
            .iter()
            .flat_map(|a| &a.spec.host_pools)
            .any(|h| mine.contains(&h.name.to_ascii_lowercase()));
        if shared {
            out.push(error(
                "DuplicatePackageOnHostPool",
                format!(
                    "AppAttachPackage {}/{} is already active with package full name {full} on a host pool of this one; only one active package per full name per host pool: set one of them Inactive or assign them to different host pools",
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                ),
            ));
        }
    }
    out
}

/// Whether the backend package this object maps to may be ours: one made outside the
/// controller is taken over only when the object asks (annotation), and one that another
/// object owns never is.
pub fn ownership(
    pkg: &crate::resources::AppAttachPackage,
    backend_name: &str,
    observed: Option<&ArmPackage>,
) -> Vec<Finding> {
    let key = super::observe::key_of(pkg);
    let mut findings = Vec::new();
    let owner = observed
        .and_then(|o| o.tags.as_ref())
        .and_then(|t| t.get(build::OWNER_TAG));
    if observed.is_some() && owner.is_none() && !adopts(pkg) {
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

/// Whether the object asks to take over a backend package made elsewhere.
fn adopts(pkg: &crate::resources::AppAttachPackage) -> bool {
    pkg.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true")
}

fn subject<'a>(
    obs: &'a Observation,
    view: &'a BackendView,
    settings: &'a Settings,
    policy: Policy,
) -> Subject<'a> {
    let spec = &obs.package.spec;
    let previous = obs.status();
    let home = home(obs);
    let key = obs.key();
    let record = previous.rollout.as_ref();
    let held = match spec.mode {
        PackageMode::AppAttach => {
            Holdings::app_attach(view, &key, adopts(&obs.package).then_some(&home), record)
        }
        PackageMode::MsixAppAttach => Holdings::msix(view, &build::identity(spec).0, record),
    };
    let wanted = wanted(obs, &held, &home);
    let pools = holdings::pool_obs(view, &held, &previous);
    Subject {
        obs,
        view,
        spec,
        settings,
        key,
        previous,
        now: obs.now,
        policy,
        principals: principals(obs).0,
        wanted,
        home,
        held,
        pools,
    }
}

/// The spec's version, with the backend name it has or would get: the name of the
/// package that already holds it; the object's own name when the backend holds no version
/// yet; else a name of its own per version (MSIX app attach: the package full name).
fn wanted(obs: &Observation, held: &Holdings, home: &str) -> VersionRef {
    let spec = &obs.package.spec;
    let name = match spec.mode {
        PackageMode::MsixAppAttach => build::identity(spec).1,
        PackageMode::AppAttach => match held
            .versions
            .iter()
            .find(|v| v.version == spec.package.version)
        {
            Some(v) => v.backend_name.clone(),
            None if held.versions.is_empty() => home.to_string(),
            None => naming::versioned_backend_name(
                &obs.package.namespace().unwrap_or_default(),
                &obs.package.name_any(),
                &spec.package.version,
            ),
        },
    };
    VersionRef {
        version: spec.package.version.clone(),
        image_path: spec.image.path.clone(),
        backend_name: name,
    }
}

impl Memory {
    /// The memory as the status records it.
    pub fn recorded(st: &AppAttachPackageStatus) -> Self {
        Self {
            rollout: st.rollout.clone(),
            rows: st
                .host_pools
                .iter()
                .map(|r| {
                    (
                        r.name.to_ascii_lowercase(),
                        RowMemory {
                            switched_at: r.switched_at.clone(),
                            previous_version: r.previous_version.clone(),
                        },
                    )
                })
                .collect(),
            retained: st.retained_images.clone(),
            history: st.history.clone(),
            old_sessions: BTreeMap::new(),
            failed_version: false,
        }
    }
}

impl Subject<'_> {
    /// The planner's view of this pass.
    pub fn plan(&self) -> planner::Plan {
        let current = self
            .held
            .current(self.previous.rollout.as_ref(), &self.home);
        let others = self.held.others(current.as_ref());
        planner::plan(&planner::Input {
            spec: &self.spec.rollout,
            generation: self.obs.package.metadata.generation.unwrap_or_default(),
            wanted: self.wanted.clone(),
            current,
            others,
            rollout: self.previous.rollout.as_ref(),
            pools: &self.pools,
            now: self.now,
            poll: self.settings.rollout_poll,
            inactive: self.spec.state == PackageState::Inactive,
        })
    }

    /// The spec at another version: version and image replaced, and the version inside an
    /// explicit relative path or full name with them.
    pub fn spec_at(&self, v: &VersionRef) -> AppAttachPackageSpec {
        let mut s = self.spec.clone();
        let old = &self.spec.package.version;
        s.package.version = v.version.clone();
        s.image.path = v.image_path.clone();
        s.package.relative_path = s.package.relative_path.map(|p| p.replace(old, &v.version));
        s.package.full_name = s.package.full_name.map(|p| p.replace(old, &v.version));
        s
    }
}
