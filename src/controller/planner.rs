//! Rolling version changes, ring by ring: the pure planner.
//!
//! [`plan`] takes what a pass observed (the spec's version, the versions the backend gives
//! the host pools, the rollout recorded in status, the host pools with their rings and the
//! health checks of their session hosts, and the time) and returns the next step. The
//! decision ([`super::decide`]) turns that step into backend writes and the status to
//! record, so a restarted controller resumes exactly where the last one stopped.
//! [`batches`] is the same for MSIX app attach, which replaces a package on a host pool
//! while batches of its session hosts are drained.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::resources::{
    MaintenanceWindow, RolloutFailurePolicy, RolloutPhase as Phase, RolloutSpec, RolloutStatus,
    RolloutStep as Step, VersionRef, Weekday,
};

/// Whether a rollout still has work to do.
pub fn is_active(r: &RolloutStatus) -> bool {
    r.phase.is_active()
}

/// One session host's last `AppAttachHealthCheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostObs {
    /// Session host name.
    pub name: String,
    /// The host's status (`Available`, `Shutdown`, ...).
    pub status: Option<String>,
    /// When the health check last ran.
    pub checked_at: Option<Timestamp>,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Its failure message.
    pub message: Option<String>,
}

/// One assigned host pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolObs {
    /// Host pool name, as the assignment gives it.
    pub name: String,
    /// ARM id.
    pub id: String,
    /// Ring from the HostPoolAssignment.
    pub ring: i32,
    /// The backend name of our version the backend gives it now, if any.
    pub on: Option<String>,
    /// When it switched in the rollout recorded (from status).
    pub switched_at: Option<Timestamp>,
    /// When the backend says the version it runs was put there, when it says so: the
    /// gate's start for a pool found switched with no switch recorded.
    pub on_since: Option<Timestamp>,
    /// Its session hosts.
    pub hosts: Vec<HostObs>,
}

/// What a gate saw on a set of host pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// Hosts that staged since the switch.
    pub staged: Vec<String>,
    /// Hosts that failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// Hosts that have not reported since the switch.
    pub pending: Vec<String>,
    /// Hosts that are off and will stage when they start.
    pub skipped: Vec<String>,
}

impl Gate {
    fn add(&mut self, other: Gate) {
        self.staged.extend(other.staged);
        self.failed.extend(other.failed);
        self.pending.extend(other.pending);
        self.skipped.extend(other.skipped);
    }

    fn hosts(&self) -> usize {
        self.staged.len() + self.failed.len() + self.pending.len() + self.skipped.len()
    }
}

/// Host states that will not report until someone starts them.
pub(crate) const OFF: [&str; 3] = ["Shutdown", "NoHeartbeat", "Disconnected"];

/// Reads the health checks of `hosts` since `since` for the image `image`. A failed check
/// counts against the image when its message names the image; a check that fails on
/// another package says the host did stage this one. But a check that fails on one of
/// `earlier` (this package's versions the rollout leaves: a superseded target, the version
/// rolled back from) says nothing of `image` yet: such a report, come late from a slow
/// host, once passed a ring's gate for a version its failing host never staged (found by
/// the rollout property test). A check stamped at `since` itself counts for nothing: the
/// switch is recorded before it is written, so a check of that instant may have read the
/// pool before it (a slow host's success on the version rolled back to, reported as the
/// next version went on, once passed an MSIX ring's gate for a version that host could
/// not stage: found by the same test).
pub fn gate<'a>(
    hosts: impl IntoIterator<Item = &'a HostObs>,
    since: Timestamp,
    image: &str,
    earlier: &[VersionRef],
) -> Gate {
    let mut g = Gate::default();
    let image = image.to_ascii_lowercase();
    let earlier: Vec<String> = earlier
        .iter()
        .map(|v| v.image_path.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && *e != image)
        .collect();
    for h in hosts {
        match h.checked_at {
            Some(t) if t > since => {
                let message = h
                    .message
                    .as_deref()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if !h.succeeded && message.contains(&image) {
                    g.failed
                        .push((h.name.clone(), h.message.clone().unwrap_or_default()));
                } else if !h.succeeded && earlier.iter().any(|e| message.contains(e)) {
                    g.pending.push(h.name.clone());
                } else {
                    g.staged.push(h.name.clone());
                }
            }
            _ if h.status.as_deref().is_some_and(|s| OFF.contains(&s)) => {
                g.skipped.push(h.name.clone())
            }
            _ => g.pending.push(h.name.clone()),
        }
    }
    g
}

/// When a pool's hosts count from for the gate of `r`: its switch in this rollout, else
/// what the backend says, else the step's start.
pub fn gate_start(p: &PoolObs, step_started: Timestamp) -> Timestamp {
    p.switched_at.or(p.on_since).unwrap_or(step_started)
}

/// What the decision does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No rollout: every host pool runs (or gets) the spec's version.
    Steady,
    /// The spec names the version that failed; nothing moves until the spec changes.
    FailedVersion,
    /// Record `next` in status; host pools stay where they are.
    Record,
    /// Switch the host pools of rings up to `through` to the target, then record `Staging`.
    Switch {
        /// The highest ring switched.
        through: i32,
    },
    /// Remove the previous versions from the backend, then record `Complete`.
    Finish,
    /// Move every host pool back to the first previous version and remove the others,
    /// then record `Failed` (or `Reverted`).
    RollBack,
}

/// The next step: what to do, the rollout status to record, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to do.
    pub action: Action,
    /// The rollout status to record (before the action's writes, for actions that write).
    pub next: Option<RolloutStatus>,
    /// When to look again, if nothing else triggers a pass.
    pub requeue: Option<Duration>,
}

impl Plan {
    fn record(next: RolloutStatus, requeue: Option<Duration>) -> Self {
        Self {
            action: Action::Record,
            next: Some(next),
            requeue,
        }
    }

    fn with(action: Action, next: RolloutStatus) -> Self {
        Self {
            action,
            next: Some(next),
            requeue: None,
        }
    }

    fn bare(action: Action) -> Self {
        Self {
            action,
            next: None,
            requeue: None,
        }
    }
}

/// What the planner reads.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `spec.rollout`.
    pub spec: &'a RolloutSpec,
    /// `metadata.generation`.
    pub generation: i64,
    /// The version the spec asks for, with the backend name it has or would get.
    pub wanted: VersionRef,
    /// The version the backend gives the host pools (the one most of them run), if any.
    pub current: Option<VersionRef>,
    /// Other versions of this object the backend gives some host pools.
    pub others: Vec<VersionRef>,
    /// The rollout recorded in status.
    pub rollout: Option<&'a RolloutStatus>,
    /// The assigned host pools.
    pub pools: &'a [PoolObs],
    /// Now.
    pub now: Timestamp,
    /// How often to look at gates and sessions.
    pub poll: Duration,
    /// The package is Inactive: session hosts ignore it, so none reports staging it.
    pub inactive: bool,
}

/// Parses an RFC 3339 time from status.
pub fn parse_time(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

/// Formats a time for status, to the millisecond.
pub fn format_time(t: Timestamp) -> String {
    t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string()
}

/// Parses a Go duration (`30s`, `5m`, `1h30m`, `250ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::from_secs_f64(value * factor);
    }
    Some(total)
}

/// Whether two versions are the same version in the same image.
pub fn same(a: &VersionRef, b: &VersionRef) -> bool {
    a.version == b.version && a.image_path.eq_ignore_ascii_case(&b.image_path)
}

/// The rings of the pools, lowest first.
pub fn rings(pools: &[PoolObs]) -> Vec<i32> {
    pools
        .iter()
        .map(|p| p.ring)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Decides the next step.
pub fn plan(input: &Input<'_>) -> Plan {
    match input.rollout.filter(|r| is_active(r)) {
        None => idle(input),
        Some(r) if !same(&input.wanted, &r.target) && r.phase != Phase::RollingBack => {
            respecified(r, input)
        }
        Some(r) => step(r, input),
    }
}

/// No rollout runs: steady, a failed version waiting for a new spec, or a new rollout.
fn idle(input: &Input<'_>) -> Plan {
    let Some(current) = &input.current else {
        return Plan::bare(Action::Steady); // the first version: no rollout
    };
    if same(&input.wanted, current) && input.others.is_empty() {
        return Plan::bare(Action::Steady);
    }
    if let Some(r) = input.rollout
        && r.phase == Phase::Failed
        && r.failed_generation == Some(input.generation)
        && same(&r.target, &input.wanted)
    {
        return Plan::bare(Action::FailedVersion);
    }
    let rings = rings(input.pools);
    let mut previous: Vec<VersionRef> = std::iter::once(current)
        .chain(&input.others)
        .filter(|v| v.backend_name != input.wanted.backend_name)
        .cloned()
        .collect();
    // A rollback takes every pool back to the first previous version: the one the highest
    // ring runs. An estate found split (by a new object, the record of the rollout it
    // interrupted gone) is split the way rollouts go, lower rings ahead: going back to
    // what they run would give the higher rings a version whose gate they never passed.
    let top = |v: &VersionRef| {
        input
            .pools
            .iter()
            .filter(|p| {
                p.on.as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(&v.backend_name))
            })
            .map(|p| p.ring)
            .max()
    };
    previous.sort_by_key(|v| std::cmp::Reverse(top(v)));
    let from = previous.first().map_or("-", |v| v.version.as_str());
    let next = RolloutStatus {
        revision: input.rollout.map_or(1, |r| r.revision + 1),
        target: input.wanted.clone(),
        previous: previous.clone(),
        phase: Phase::Progressing,
        step: Step::Pending,
        ring: rings.first().copied(),
        step_started_at: Some(format_time(input.now)),
        started_at: Some(format_time(input.now)),
        message: Some(format!(
            "rolling out {} over {from} (rings {})",
            input.wanted.version,
            ring_list(&rings)
        )),
        failed_generation: None,
        notified_sessions: 0,
        logged_off_sessions: 0,
        notified_pools: vec![],
        logged_off_pools: vec![],
        drained_hosts: input
            .rollout
            .map(|r| r.drained_hosts.clone())
            .unwrap_or_default(),
        cycled_hosts: vec![],
    };
    Plan::record(next, Some(Duration::ZERO))
}

/// A new spec while rolling: back to the first version, or on toward the newest one.
fn respecified(r: &RolloutStatus, input: &Input<'_>) -> Plan {
    let mut next = r.clone();
    if r.previous.first().is_some_and(|p| same(p, &input.wanted)) {
        next.phase = Phase::RollingBack;
        next.step = Step::RollingBack;
        next.message = Some(format!(
            "the spec went back to {}: moving every host pool back to it",
            input.wanted.version
        ));
        return Plan::with(Action::RollBack, next);
    }
    let mut previous = r.previous.clone();
    if !previous
        .iter()
        .any(|p| p.backend_name == r.target.backend_name)
    {
        previous.push(r.target.clone());
    }
    previous.retain(|p| p.backend_name != input.wanted.backend_name);
    let rings = rings(input.pools);
    next.revision = r.revision + 1;
    next.previous = previous;
    next.target = input.wanted.clone();
    next.phase = Phase::Progressing;
    next.step = Step::Pending;
    next.ring = rings.first().copied();
    next.step_started_at = Some(format_time(input.now));
    next.started_at = Some(format_time(input.now));
    next.notified_sessions = 0;
    next.logged_off_sessions = 0;
    next.notified_pools.clear();
    next.logged_off_pools.clear();
    next.cycled_hosts.clear();
    next.message = Some(format!(
        "{} superseded {}: rolling toward {} from where the host pools are",
        input.wanted.version, r.target.version, input.wanted.version
    ));
    Plan::record(next, Some(Duration::ZERO))
}

/// The rollout's next step toward its own target.
fn step(r: &RolloutStatus, input: &Input<'_>) -> Plan {
    let rings = rings(input.pools);
    match r.step {
        Step::RollingBack => Plan::with(Action::RollBack, r.clone()),
        Step::Finishing => Plan::with(Action::Finish, r.clone()),
        Step::Switching => Plan::with(
            Action::Switch {
                through: r.ring.unwrap_or_default(),
            },
            r.clone(),
        ),
        Step::Pending => match rings.first() {
            None => finish_or_pause(r, input),
            Some(&first) if input.spec.paused => {
                paused(r, format!("ring {first} switches to {}", r.target.version))
            }
            Some(&first) => switch(r, first, input.now),
        },
        Step::Staging | Step::Soaking => gated(r, input, &rings),
        Step::Done => Plan::bare(Action::Steady),
    }
}

fn paused(r: &RolloutStatus, what: String) -> Plan {
    let mut next = r.clone();
    next.phase = Phase::Paused;
    next.message = Some(format!(
        "paused (spec.rollout.paused): {what} when it is resumed"
    ));
    Plan::record(next, None)
}

/// The gate of the ring being staged or soaked, summed over its pools: each pool's hosts
/// count from that pool's own switch.
pub fn ring_gate(r: &RolloutStatus, pools: &[PoolObs], ring: i32) -> Gate {
    let started = parse_time(r.step_started_at.as_deref()).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut g = Gate::default();
    for p in pools.iter().filter(|p| p.ring == ring) {
        g.add(gate(
            &p.hosts,
            gate_start(p, started),
            &r.target.image_path,
            &r.previous,
        ));
    }
    g
}

/// A ring being staged or soaked: fail, wait, soak, or go on.
fn gated(r: &RolloutStatus, input: &Input<'_>, rings: &[i32]) -> Plan {
    let ring = r.ring.unwrap_or_default();
    let g = ring_gate(r, input.pools, ring);
    let allowed = input.spec.max_staging_failures.max(0) as usize;
    // A host that fails while the ring soaks fails the gate too.
    if g.failed.len() > allowed {
        return gate_failed(r, input, ring, &g, allowed);
    }
    if r.step == Step::Soaking {
        return soak(r, input, ring, rings);
    }
    let mut next = r.clone();
    next.phase = Phase::Progressing;
    if input.inactive {
        // No host stages an inactive package, so none reports staging it: a report that
        // came says nothing of it (a host whose last active package went inactive reports
        // success with nothing staged). Hold here, safely, rather than wait for ever or
        // switch the next rings with nothing staged.
        next.phase = Phase::Held;
        next.message = Some(format!(
            "ring {ring}: the package is Inactive, and session hosts do not stage an inactive package, so no host can report staging {}; set spec.state Active and the rollout goes on from here (or run `rollout undo`)",
            r.target.version
        ));
        return Plan::record(next, Some(input.poll));
    }
    if !g.pending.is_empty() {
        next.message = Some(format!(
            "ring {ring}: waiting for {} of {} session host(s) to report staging {} ({})",
            g.pending.len(),
            g.hosts(),
            r.target.version,
            g.pending.join(", ")
        ));
        return Plan::record(next, Some(input.poll));
    }
    next.step = Step::Soaking;
    next.step_started_at = Some(format_time(input.now));
    let soak = parse_duration(&input.spec.soak).unwrap_or_default();
    next.message = Some(format!(
        "ring {ring}: {} session host(s) staged {}{}{}; soaking for {}",
        g.staged.len(),
        r.target.version,
        if g.failed.is_empty() {
            String::new()
        } else {
            format!(", {} failed (tolerated)", g.failed.len())
        },
        if g.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} off ({})", g.skipped.len(), g.skipped.join(", "))
        },
        input.spec.soak
    ));
    Plan::record(next, Some(soak.min(input.poll)))
}

fn gate_failed(r: &RolloutStatus, input: &Input<'_>, ring: i32, g: &Gate, allowed: usize) -> Plan {
    let hosts = g
        .failed
        .iter()
        .map(|(h, e)| format!("{h}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    let message = format!(
        "ring {ring}: {} session host(s) failed to stage {} (more than spec.rollout.maxStagingFailures {allowed}): {hosts}",
        g.failed.len(),
        r.target.version,
    );
    let mut next = r.clone();
    match input.spec.on_failure {
        RolloutFailurePolicy::Rollback => {
            next.phase = Phase::RollingBack;
            next.step = Step::RollingBack;
            next.message = Some(message);
            Plan::with(Action::RollBack, next)
        }
        RolloutFailurePolicy::Pause => {
            next.phase = Phase::Held;
            next.message = Some(format!(
                "{message}. Held (spec.rollout.onFailure Pause): fix the hosts or the share and it goes on, or run `rollout undo`"
            ));
            Plan::record(next, Some(input.poll))
        }
    }
}

/// A soaking ring: wait out the soak (looking at the gate again meanwhile), then the next
/// ring or the end.
fn soak(r: &RolloutStatus, input: &Input<'_>, ring: i32, rings: &[i32]) -> Plan {
    let started = parse_time(r.step_started_at.as_deref()).unwrap_or(input.now);
    let soak = parse_duration(&input.spec.soak).unwrap_or_default();
    let elapsed = Duration::try_from(input.now.duration_since(started)).unwrap_or_default();
    if elapsed < soak {
        let mut next = r.clone();
        next.phase = Phase::Progressing;
        return Plan::record(next, Some((soak - elapsed).min(input.poll)));
    }
    match rings.iter().find(|&&x| x > ring) {
        Some(&n) if input.spec.paused => {
            paused(r, format!("ring {n} switches to {}", r.target.version))
        }
        Some(&n) => switch(r, n, input.now),
        None => finish_or_pause(r, input),
    }
}

fn switch(r: &RolloutStatus, ring: i32, now: Timestamp) -> Plan {
    let mut next = r.clone();
    next.phase = Phase::Progressing;
    next.step = Step::Switching;
    next.ring = Some(ring);
    next.cycled_hosts.clear();
    next.step_started_at = Some(format_time(now));
    next.message = Some(format!(
        "ring {ring}: switching its host pools to {}",
        r.target.version
    ));
    Plan::with(Action::Switch { through: ring }, next)
}

fn finish_or_pause(r: &RolloutStatus, input: &Input<'_>) -> Plan {
    if input.spec.paused {
        return paused(
            r,
            format!(
                "the previous version(s) are removed from the backend ({})",
                r.target.version
            ),
        );
    }
    let mut next = r.clone();
    next.phase = Phase::Progressing;
    next.step = Step::Finishing;
    next.step_started_at = Some(format_time(input.now));
    next.message = Some(format!(
        "every host pool runs {}: removing the previous version(s) from the backend",
        r.target.version
    ));
    Plan::with(Action::Finish, next)
}

fn ring_list(rings: &[i32]) -> String {
    if rings.is_empty() {
        return "none".into();
    }
    rings
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which backend version each host pool (by lowercased id) should have: the target for
/// rings up to `through`; otherwise the one it has now when that is one of the rollout's
/// versions (a pool found on the target early stays there: nothing moves back and forth),
/// else the first previous version.
pub fn mapping(
    pools: &[PoolObs],
    r: &RolloutStatus,
    through: Option<i32>,
) -> BTreeMap<String, String> {
    let first = r
        .previous
        .first()
        .map(|p| p.backend_name.clone())
        .unwrap_or_else(|| r.target.backend_name.clone());
    pools
        .iter()
        .map(|p| {
            let name = if through.is_some_and(|t| p.ring <= t) {
                r.target.backend_name.clone()
            } else {
                let ours = |on: &String| {
                    std::iter::once(&r.target)
                        .chain(&r.previous)
                        .any(|v| v.backend_name.eq_ignore_ascii_case(on))
                };
                match &p.on {
                    Some(on) if ours(on) => on.clone(),
                    _ => first.clone(),
                }
            };
            (p.id.to_ascii_lowercase(), name)
        })
        .collect()
}

/// The highest ring whose host pools all run the target, in a rollout that has switched
/// rings: the ring recorded, or none while it is still pending.
pub fn switched_through(r: &RolloutStatus, rings: &[i32]) -> Option<i32> {
    if matches!(r.phase, Phase::Failed | Phase::Reverted) {
        return None;
    }
    match r.step {
        Step::Pending | Step::RollingBack => None,
        Step::Switching | Step::Staging | Step::Soaking => r.ring,
        Step::Finishing | Step::Done => rings.last().copied().or(r.ring),
    }
}

/// One session host of a host pool being replaced in MSIX app attach mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSeat {
    /// ARM id, lower case.
    pub id: String,
    /// Whether it takes new sessions (`allowNewSession`).
    pub allows: bool,
    /// Its live sessions.
    pub sessions: i32,
}

/// What one host pool of the switching ring does in this pass (MSIX app attach).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolStep {
    /// Drain these hosts (recorded before they are drained).
    Drain(Vec<String>),
    /// The drained batch still has sessions.
    Wait {
        /// Live sessions on the batch.
        sessions: i32,
        /// The batch.
        hosts: Vec<String>,
    },
    /// Replace the package on the pool (unless it is already), then undrain the batch.
    Replace {
        /// The drained batch, now empty.
        undrain: Vec<String>,
    },
    /// Every host cycled and the pool runs the target.
    Done,
}

/// The next batch step of one host pool: `drained` and `cycled` are the rollout's record,
/// `replaced` whether the pool runs only the target. Hosts someone else drained are left
/// as they are (and count as cycled, returned second).
pub fn batch(
    hosts: &[HostSeat],
    drained: &[String],
    cycled: &[String],
    replaced: bool,
    max: usize,
) -> (PoolStep, Vec<String>) {
    let batch: Vec<&HostSeat> = hosts.iter().filter(|h| drained.contains(&h.id)).collect();
    if batch.is_empty() {
        let untouched = hosts.iter().filter(|h| !cycled.contains(&h.id));
        let (others, next): (Vec<&HostSeat>, Vec<&HostSeat>) = untouched.partition(|h| !h.allows);
        let left_alone = others.iter().map(|h| h.id.clone()).collect();
        let next: Vec<String> = next.iter().take(max.max(1)).map(|h| h.id.clone()).collect();
        let step = match (next.is_empty(), replaced) {
            (false, _) => PoolStep::Drain(next),
            (true, false) => PoolStep::Replace { undrain: vec![] },
            (true, true) => PoolStep::Done,
        };
        return (step, left_alone);
    }
    let ids: Vec<String> = batch.iter().map(|h| h.id.clone()).collect();
    let sessions: i32 = batch.iter().map(|h| h.sessions).sum();
    if sessions > 0 {
        (
            PoolStep::Wait {
                sessions,
                hosts: ids,
            },
            vec![],
        )
    } else {
        (PoolStep::Replace { undrain: ids }, vec![])
    }
}

/// Whether a weekly maintenance window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Open until this time.
    Open(Timestamp),
    /// Closed until this time.
    Closed(Timestamp),
}

fn weekday(w: Weekday) -> jiff::civil::Weekday {
    match w {
        Weekday::Monday => jiff::civil::Weekday::Monday,
        Weekday::Tuesday => jiff::civil::Weekday::Tuesday,
        Weekday::Wednesday => jiff::civil::Weekday::Wednesday,
        Weekday::Thursday => jiff::civil::Weekday::Thursday,
        Weekday::Friday => jiff::civil::Weekday::Friday,
        Weekday::Saturday => jiff::civil::Weekday::Saturday,
        Weekday::Sunday => jiff::civil::Weekday::Sunday,
    }
}

/// Where `now` falls in a weekly window; an error names the field that cannot be read.
pub fn window(w: &MaintenanceWindow, now: Timestamp) -> Result<Window, String> {
    let tz = jiff::tz::TimeZone::get(&w.time_zone).map_err(|_| {
        format!(
            "spec.rollout.maintenanceWindow.timeZone: {:?} is not an IANA time zone; use a name like Europe/Amsterdam or UTC",
            w.time_zone
        )
    })?;
    let length = parse_duration(&w.duration)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "spec.rollout.maintenanceWindow.duration: {:?} is not a positive duration like 4h",
                w.duration
            )
        })?;
    let (h, m) = w
        .start_time
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
        .ok_or_else(|| {
            format!(
                "spec.rollout.maintenanceWindow.startTime: {:?} is not HH:MM",
                w.start_time
            )
        })?;
    let bad = |e: jiff::Error| format!("spec.rollout.maintenanceWindow: {e}");
    let mut date = now.to_zoned(tz.clone()).date();
    // The latest opening at or before now: this week's, or last week's.
    for _ in 0..7 {
        if date.weekday() == weekday(w.day_of_week) {
            break;
        }
        date = date.yesterday().map_err(bad)?;
    }
    let mut opens = date
        .at(h, m, 0, 0)
        .to_zoned(tz.clone())
        .map_err(bad)?
        .timestamp();
    if opens > now {
        opens = (opens.to_zoned(tz.clone()) - jiff::Span::new().days(7)).timestamp();
    }
    let length = jiff::SignedDuration::try_from(length).map_err(bad)?;
    let closes = opens + length;
    if now < closes {
        Ok(Window::Open(closes))
    } else {
        Ok(Window::Closed(
            (opens.to_zoned(tz) + jiff::Span::new().days(7)).timestamp(),
        ))
    }
}

#[cfg(test)]
mod tests;
