//! Rolling version changes, ring by ring: a pure planner.
//!
//! [`plan`] takes what the controller observed (the spec's version, the rollout recorded in
//! status, the host pools with their rings, the backend package each one references, the
//! health checks of their session hosts, and the time) and returns the next step. The
//! reconciler executes that one step and records it in status, so a restarted controller
//! resumes exactly where the last one stopped. Backend writes are computed from what the
//! backend holds ([`mapping`]), so a step repeated after a crash writes nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::resources::{
    MaintenanceWindow, RolloutFailurePolicy, RolloutSpec, RolloutStatus, VersionRef, Weekday,
};

/// Rollout phases (`status.rollout.phase`).
pub mod phase {
    /// Moving ring by ring.
    pub const PROGRESSING: &str = "Progressing";
    /// `spec.rollout.paused` holds it between steps.
    pub const PAUSED: &str = "Paused";
    /// A gate failed with `onFailure: Pause`: waiting for a person (or for the hosts to
    /// stage after all).
    pub const HELD: &str = "Held";
    /// Moving every host pool back to the previous version.
    pub const ROLLING_BACK: &str = "RollingBack";
    /// Every host pool runs the target version.
    pub const COMPLETE: &str = "Complete";
    /// The target failed its gate and was rolled back.
    pub const FAILED: &str = "Failed";
    /// The spec went back to the previous version mid-rollout; rolled back.
    pub const REVERTED: &str = "Reverted";
}

/// Rollout steps (`status.rollout.step`).
pub mod step {
    /// Recorded; no host pool switched yet.
    pub const PENDING: &str = "Pending";
    /// A ring's host pools are moving to the target (backend writes in flight).
    pub const SWITCHING: &str = "Switching";
    /// Waiting for the ring's session hosts to stage the target.
    pub const STAGING: &str = "Staging";
    /// The ring staged; waiting for `spec.rollout.soak` to pass.
    pub const SOAKING: &str = "Soaking";
    /// Removing the previous versions from the backend.
    pub const FINISHING: &str = "Finishing";
    /// Moving every host pool back (backend writes in flight).
    pub const ROLLING_BACK: &str = "RollingBack";
    /// Nothing more to do.
    pub const DONE: &str = "Done";
    /// MSIX app attach: draining a batch of session hosts of the ring.
    pub const DRAINING: &str = "Draining";
}

/// Whether a rollout in this phase still has work to do.
pub fn is_active(r: &RolloutStatus) -> bool {
    matches!(
        r.phase.as_str(),
        phase::PROGRESSING | phase::PAUSED | phase::HELD | phase::ROLLING_BACK
    )
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
    /// The backend name of our package that references it now, if any.
    pub on: Option<String>,
    /// When it switched (from status).
    pub switched_at: Option<Timestamp>,
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

/// Host states that will not report until someone starts them.
const OFF: [&str; 3] = ["Shutdown", "NoHeartbeat", "Disconnected"];

/// Reads the health checks of `hosts` since `since` for the image `image`. A failed check
/// counts against the image when its message names the image; a check that fails on
/// another package says the host did stage this one.
pub fn gate<'a>(
    hosts: impl IntoIterator<Item = &'a HostObs>,
    since: Timestamp,
    image: &str,
) -> Gate {
    let mut g = Gate::default();
    let image = image.to_ascii_lowercase();
    for h in hosts {
        match h.checked_at {
            Some(t) if t >= since => {
                let mentions = h
                    .message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains(&image));
                if h.succeeded || !mentions {
                    g.staged.push(h.name.clone());
                } else {
                    g.failed
                        .push((h.name.clone(), h.message.clone().unwrap_or_default()));
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

/// What the reconciler does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// No rollout: the spec's version is what every host pool runs (or none ran yet).
    Steady,
    /// The spec names the version that failed; nothing moves until the spec changes.
    FailedVersion,
    /// Record `next` in status; no backend write.
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
}

/// What the planner reads.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `spec.rollout`.
    pub spec: &'a RolloutSpec,
    /// `metadata.generation`.
    pub generation: i64,
    /// The version the spec asks for, with the backend name it would get.
    pub wanted: VersionRef,
    /// The version every host pool ran when no rollout was running, if any.
    pub current: Option<VersionRef>,
    /// The rollout recorded in status.
    pub rollout: Option<&'a RolloutStatus>,
    /// The assigned host pools.
    pub pools: &'a [PoolObs],
    /// Now.
    pub now: Timestamp,
    /// How often to look at gates and sessions.
    pub poll: Duration,
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

fn same(a: &VersionRef, b: &VersionRef) -> bool {
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
    let now = input.now;
    let rings = rings(input.pools);
    let Some(current) = &input.current else {
        return steady();
    };
    let active = input.rollout.filter(|r| is_active(r));
    let Some(r) = active else {
        if same(&input.wanted, current) {
            return steady();
        }
        if let Some(r) = input.rollout
            && r.phase == phase::FAILED
            && r.failed_generation == Some(input.generation)
            && same(&r.target, &input.wanted)
        {
            return Plan {
                action: Action::FailedVersion,
                next: None,
                requeue: None,
            };
        }
        let next = RolloutStatus {
            revision: input.rollout.map_or(1, |r| r.revision + 1),
            target: input.wanted.clone(),
            previous: vec![current.clone()],
            phase: phase::PROGRESSING.into(),
            step: step::PENDING.into(),
            ring: rings.first().copied(),
            step_started_at: Some(format_time(now)),
            started_at: Some(format_time(now)),
            message: Some(format!(
                "rolling out {} over {} (rings {})",
                input.wanted.version,
                current.version,
                ring_list(&rings)
            )),
            failed_generation: None,
            notified_sessions: 0,
            logged_off_sessions: 0,
            drained_hosts: vec![],
            cycled_hosts: vec![],
        };
        return Plan::record(next, Some(Duration::ZERO));
    };

    // A new spec while rolling: back to the first version, or on toward the newest one.
    if !same(&input.wanted, &r.target) && r.phase != phase::ROLLING_BACK {
        let mut next = r.clone();
        if r.previous.first().is_some_and(|p| same(p, &input.wanted)) {
            next.phase = phase::ROLLING_BACK.into();
            next.step = step::ROLLING_BACK.into();
            next.message = Some(format!(
                "the spec went back to {}: moving every host pool back to it",
                input.wanted.version
            ));
            return Plan {
                action: Action::RollBack,
                next: Some(next),
                requeue: None,
            };
        }
        let mut previous = r.previous.clone();
        if !previous
            .iter()
            .any(|p| p.backend_name == r.target.backend_name)
        {
            previous.push(r.target.clone());
        }
        previous.retain(|p| p.backend_name != input.wanted.backend_name);
        next.revision = r.revision + 1;
        next.previous = previous;
        next.target = input.wanted.clone();
        next.phase = phase::PROGRESSING.into();
        next.step = step::PENDING.into();
        next.ring = rings.first().copied();
        next.step_started_at = Some(format_time(now));
        next.started_at = Some(format_time(now));
        next.message = Some(format!(
            "{} superseded {}: rolling toward {} from where the host pools are",
            input.wanted.version, r.target.version, input.wanted.version
        ));
        return Plan::record(next, Some(Duration::ZERO));
    }

    let started = parse_time(r.step_started_at.as_deref()).unwrap_or(now);
    let paused_next = |what: String| {
        let mut next = r.clone();
        next.phase = phase::PAUSED.into();
        next.message = Some(format!(
            "paused (spec.rollout.paused): {what} when it is resumed"
        ));
        Plan::record(next, None)
    };
    match r.step.as_str() {
        step::ROLLING_BACK => Plan {
            action: Action::RollBack,
            next: Some(r.clone()),
            requeue: None,
        },
        step::FINISHING => Plan {
            action: Action::Finish,
            next: Some(r.clone()),
            requeue: None,
        },
        step::SWITCHING => Plan {
            action: Action::Switch {
                through: r.ring.unwrap_or_default(),
            },
            next: Some(r.clone()),
            requeue: None,
        },
        step::PENDING => match rings.first() {
            None => finish_or_pause(r, input, paused_next),
            Some(&first) if input.spec.paused => {
                paused_next(format!("ring {first} switches to {}", r.target.version))
            }
            Some(&first) => switch(r, first, now),
        },
        step::STAGING | step::SOAKING => {
            let ring = r.ring.unwrap_or_default();
            let pools: Vec<&PoolObs> = input.pools.iter().filter(|p| p.ring == ring).collect();
            // Each pool's hosts count from that pool's own switch.
            let mut g = Gate::default();
            for p in &pools {
                let one = gate(
                    &p.hosts,
                    p.switched_at.unwrap_or(started),
                    &r.target.image_path,
                );
                g.staged.extend(one.staged);
                g.failed.extend(one.failed);
                g.pending.extend(one.pending);
                g.skipped.extend(one.skipped);
            }
            let allowed = input.spec.max_staging_failures.max(0) as usize;
            // A host that fails while the ring soaks fails the gate too.
            if g.failed.len() > allowed {
                let hosts = g
                    .failed
                    .iter()
                    .map(|(h, e)| format!("{h}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let message = format!(
                    "ring {ring}: {} session host(s) failed to stage {} (more than spec.rollout.maxStagingFailures {}): {hosts}",
                    g.failed.len(),
                    r.target.version,
                    allowed
                );
                let mut next = r.clone();
                return match input.spec.on_failure {
                    RolloutFailurePolicy::Rollback => {
                        next.phase = phase::ROLLING_BACK.into();
                        next.step = step::ROLLING_BACK.into();
                        next.message = Some(message);
                        Plan {
                            action: Action::RollBack,
                            next: Some(next),
                            requeue: None,
                        }
                    }
                    RolloutFailurePolicy::Pause => {
                        next.phase = phase::HELD.into();
                        next.message = Some(format!(
                            "{message}. Held (spec.rollout.onFailure Pause): fix the hosts or the share and it goes on, or run `rollout undo`"
                        ));
                        Plan::record(next, Some(input.poll))
                    }
                };
            }
            if r.step == step::SOAKING {
                return soak(r, input, ring, started, &rings, paused_next);
            }
            if !g.pending.is_empty() {
                let mut next = r.clone();
                next.phase = phase::PROGRESSING.into();
                next.message = Some(format!(
                    "ring {ring}: waiting for {} of {} session host(s) to report staging {} ({})",
                    g.pending.len(),
                    g.pending.len() + g.staged.len() + g.failed.len() + g.skipped.len(),
                    r.target.version,
                    g.pending.join(", ")
                ));
                return Plan::record(next, Some(input.poll));
            }
            let mut next = r.clone();
            next.phase = phase::PROGRESSING.into();
            next.step = step::SOAKING.into();
            next.step_started_at = Some(format_time(now));
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
        _ => steady(),
    }
}

/// A soaking ring: wait out the soak (looking at the gate again meanwhile), then the next
/// ring or the end.
fn soak(
    r: &RolloutStatus,
    input: &Input<'_>,
    ring: i32,
    started: Timestamp,
    rings: &[i32],
    paused_next: impl Fn(String) -> Plan,
) -> Plan {
    let now = input.now;
    let soak = parse_duration(&input.spec.soak).unwrap_or_default();
    let elapsed = Duration::try_from(now.duration_since(started)).unwrap_or_default();
    if elapsed < soak {
        let mut next = r.clone();
        next.phase = phase::PROGRESSING.into();
        return Plan {
            action: Action::Record,
            next: Some(next),
            requeue: Some((soak - elapsed).min(input.poll)),
        };
    }
    match rings.iter().find(|&&x| x > ring) {
        Some(&n) if input.spec.paused => {
            paused_next(format!("ring {n} switches to {}", r.target.version))
        }
        Some(&n) => switch(r, n, now),
        None => finish_or_pause(r, input, paused_next),
    }
}

fn steady() -> Plan {
    Plan {
        action: Action::Steady,
        next: None,
        requeue: None,
    }
}

fn switch(r: &RolloutStatus, ring: i32, now: Timestamp) -> Plan {
    let mut next = r.clone();
    next.phase = phase::PROGRESSING.into();
    next.step = step::SWITCHING.into();
    next.ring = Some(ring);
    next.cycled_hosts.clear();
    next.step_started_at = Some(format_time(now));
    next.message = Some(format!(
        "ring {ring}: switching its host pools to {}",
        r.target.version
    ));
    Plan {
        action: Action::Switch { through: ring },
        next: Some(next),
        requeue: None,
    }
}

fn finish_or_pause(
    r: &RolloutStatus,
    input: &Input<'_>,
    paused_next: impl Fn(String) -> Plan,
) -> Plan {
    if input.spec.paused {
        return paused_next(format!(
            "the previous version(s) are removed from the backend ({})",
            r.target.version
        ));
    }
    let mut next = r.clone();
    next.phase = phase::PROGRESSING.into();
    next.step = step::FINISHING.into();
    next.step_started_at = Some(format_time(input.now));
    next.message = Some(format!(
        "every host pool runs {}: removing the previous version(s) from the backend",
        r.target.version
    ));
    Plan {
        action: Action::Finish,
        next: Some(next),
        requeue: None,
    }
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

/// Which backend package each host pool (by lowercased id) should reference: the target
/// for rings up to `through`; otherwise the package it references now when that is one of
/// the previous versions, else the first previous version.
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
                match &p.on {
                    Some(on) if r.previous.iter().any(|v| v.backend_name == *on) => on.clone(),
                    _ => first.clone(),
                }
            };
            (p.id.to_ascii_lowercase(), name)
        })
        .collect()
}

/// The highest ring whose host pools all run the target, in a rollout that has switched
/// rings: the ring recorded, or the one before it while it is still pending.
pub fn switched_through(r: &RolloutStatus, rings: &[i32]) -> Option<i32> {
    match r.step.as_str() {
        step::PENDING | step::ROLLING_BACK => None,
        step::SWITCHING | step::STAGING | step::SOAKING => r.ring,
        step::FINISHING | step::DONE => rings.last().copied().or(r.ring),
        _ => r.ring,
    }
    .filter(|_| r.phase != phase::FAILED && r.phase != phase::REVERTED)
}

/// Whether a weekly maintenance window is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Open until this time.
    Open(Timestamp),
    /// Closed until this time.
    Closed(Timestamp),
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
    let weekday = match w.day_of_week {
        Weekday::Monday => jiff::civil::Weekday::Monday,
        Weekday::Tuesday => jiff::civil::Weekday::Tuesday,
        Weekday::Wednesday => jiff::civil::Weekday::Wednesday,
        Weekday::Thursday => jiff::civil::Weekday::Thursday,
        Weekday::Friday => jiff::civil::Weekday::Friday,
        Weekday::Saturday => jiff::civil::Weekday::Saturday,
        Weekday::Sunday => jiff::civil::Weekday::Sunday,
    };
    let bad = |e: jiff::Error| format!("spec.rollout.maintenanceWindow: {e}");
    let local = now.to_zoned(tz.clone());
    let mut date = local.date();
    // The latest opening at or before now: this week's, or last week's.
    for _ in 0..7 {
        if date.weekday() == weekday {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(version: &str) -> VersionRef {
        VersionRef {
            version: version.into(),
            image_path: format!(r"\\fs\apps\app_{version}.cim"),
            backend_name: format!("ns-app-v{}", version.replace('.', "-")),
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s as i64).unwrap()
    }

    fn host(name: &str, checked: Option<u64>, ok: bool, msg: Option<&str>) -> HostObs {
        HostObs {
            name: name.into(),
            status: Some("Available".into()),
            checked_at: checked.map(t),
            succeeded: ok,
            message: msg.map(String::from),
        }
    }

    fn pools() -> Vec<PoolObs> {
        (0..3)
            .map(|ring| PoolObs {
                name: format!("hp-{ring}"),
                id: format!("/hostPools/hp-{ring}"),
                ring,
                on: Some(v("1.0.0.0").backend_name),
                switched_at: None,
                hosts: vec![host(&format!("h-{ring}"), None, false, None)],
            })
            .collect()
    }

    fn spec() -> RolloutSpec {
        RolloutSpec {
            soak: "1m".into(),
            ..RolloutSpec::default()
        }
    }

    fn input<'a>(
        spec: &'a RolloutSpec,
        rollout: Option<&'a RolloutStatus>,
        pools: &'a [PoolObs],
        now: u64,
    ) -> Input<'a> {
        Input {
            spec,
            generation: 2,
            wanted: v("2.0.0.0"),
            current: Some(v("1.0.0.0")),
            rollout,
            pools,
            now: t(now),
            poll: Duration::from_secs(5),
        }
    }

    #[test]
    fn maintenance_windows_open_weekly_in_their_time_zone() {
        let w = MaintenanceWindow {
            day_of_week: Weekday::Saturday,
            start_time: "22:00".into(),
            duration: "4h".into(),
            time_zone: "Europe/Amsterdam".into(),
        };
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        // Saturday 2026-11-28 22:00 in Amsterdam is 21:00 UTC; the window runs to 01:00 UTC.
        assert_eq!(
            window(&w, at("2026-11-28T21:30:00Z")),
            Ok(Window::Open(at("2026-11-29T01:00:00Z")))
        );
        assert_eq!(
            window(&w, at("2026-11-29T00:59:00Z")),
            Ok(Window::Open(at("2026-11-29T01:00:00Z")))
        );
        assert_eq!(
            window(&w, at("2026-11-29T01:00:00Z")),
            Ok(Window::Closed(at("2026-12-05T21:00:00Z")))
        );
        assert_eq!(
            window(&w, at("2026-11-24T12:00:00Z")),
            Ok(Window::Closed(at("2026-11-28T21:00:00Z")))
        );
        let bad = MaintenanceWindow {
            time_zone: "Mars/Olympus".into(),
            ..w
        };
        assert!(
            window(&bad, at("2026-11-24T12:00:00Z"))
                .unwrap_err()
                .contains("spec.rollout.maintenanceWindow.timeZone")
        );
    }

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn the_same_version_is_steady_and_a_first_version_is_no_rollout() {
        let s = spec();
        let p = pools();
        let mut i = input(&s, None, &p, 0);
        i.wanted = v("1.0.0.0");
        assert_eq!(plan(&i).action, Action::Steady);
        i.current = None;
        i.wanted = v("2.0.0.0");
        assert_eq!(plan(&i).action, Action::Steady);
    }

    /// Runs the planner as the reconciler would, with every host staging at once, and
    /// returns the actions in order.
    fn run(spec: &RolloutSpec, mut pools: Vec<PoolObs>, fail_host: Option<&str>) -> Vec<Action> {
        let mut rollout: Option<RolloutStatus> = None;
        let mut now = 0;
        let mut actions = vec![];
        for _ in 0..100 {
            let i = input(spec, rollout.as_ref(), &pools, now);
            let plan = plan(&i);
            if plan.action == Action::Steady || plan.action == Action::FailedVersion {
                break;
            }
            actions.push(plan.action.clone());
            let mut next = plan.next.clone().unwrap();
            match plan.action {
                Action::Switch { through } => {
                    let m = mapping(&pools, &next, Some(through));
                    for p in pools.iter_mut() {
                        let to = m[&p.id.to_ascii_lowercase()].clone();
                        if p.on.as_deref() != Some(&to) {
                            p.on = Some(to);
                            for h in p.hosts.iter_mut() {
                                let fails = fail_host == Some(h.name.as_str());
                                h.checked_at = Some(t(now + 1));
                                h.succeeded = !fails;
                                h.message = fails
                                    .then(|| format!("cannot open {}", next.target.image_path));
                            }
                        }
                    }
                    next.step = step::STAGING.into();
                }
                Action::Finish => break, // the reconciler then records the target as current

                Action::RollBack => {
                    let m = mapping(&pools, &next, None);
                    for p in pools.iter_mut() {
                        p.on = Some(m[&p.id.to_ascii_lowercase()].clone());
                    }
                    next.phase = phase::FAILED.into();
                    next.step = step::DONE.into();
                    next.failed_generation = Some(2);
                }
                _ => {}
            }
            rollout = Some(next);
            now += plan.requeue.map_or(1, |d| d.as_secs().max(1));
        }
        actions
    }

    #[test]
    fn a_good_version_moves_ring_by_ring_and_finishes() {
        let actions = run(&spec(), pools(), None);
        let switches: Vec<i32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Switch { through } => Some(*through),
                _ => None,
            })
            .collect();
        assert_eq!(switches, [0, 1, 2]);
        assert_eq!(actions.last(), Some(&Action::Finish));
        assert!(!actions.contains(&Action::RollBack));
    }

    #[test]
    fn a_failed_ring_rolls_back_and_later_rings_are_never_switched() {
        let actions = run(&spec(), pools(), Some("h-0"));
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Switch { .. }))
                .count(),
            1
        );
        assert_eq!(actions.last(), Some(&Action::RollBack));
    }

    #[test]
    fn tolerated_failures_proceed() {
        let s = RolloutSpec {
            max_staging_failures: 1,
            ..spec()
        };
        let actions = run(&s, pools(), Some("h-0"));
        assert_eq!(actions.last(), Some(&Action::Finish));
    }

    #[test]
    fn a_failed_version_is_not_retried_until_the_spec_changes() {
        let s = spec();
        let p = pools();
        let failed = RolloutStatus {
            phase: phase::FAILED.into(),
            step: step::DONE.into(),
            failed_generation: Some(2),
            ..started()
        };
        let i = input(&s, Some(&failed), &p, 10);
        assert_eq!(plan(&i).action, Action::FailedVersion);
        let mut i = input(&s, Some(&failed), &p, 10);
        i.generation = 3;
        let again = plan(&i);
        assert_eq!(again.action, Action::Record);
        assert_eq!(again.next.unwrap().revision, 2);
    }

    fn started() -> RolloutStatus {
        RolloutStatus {
            revision: 1,
            target: v("2.0.0.0"),
            previous: vec![v("1.0.0.0")],
            phase: phase::PROGRESSING.into(),
            step: step::PENDING.into(),
            ring: Some(0),
            step_started_at: Some(format_time(t(0))),
            started_at: Some(format_time(t(0))),
            message: None,
            failed_generation: None,
            notified_sessions: 0,
            logged_off_sessions: 0,
            drained_hosts: vec![],
            cycled_hosts: vec![],
        }
    }

    #[test]
    fn paused_holds_before_a_switch_and_the_gate_waits_for_every_host() {
        let s = RolloutSpec {
            paused: true,
            ..spec()
        };
        let p = pools();
        let r = started();
        let plan1 = plan(&input(&s, Some(&r), &p, 1));
        assert_eq!(plan1.action, Action::Record);
        assert_eq!(plan1.next.unwrap().phase, phase::PAUSED);

        let s = spec();
        let staging = RolloutStatus {
            step: step::STAGING.into(),
            step_started_at: Some(format_time(t(10))),
            ..started()
        };
        let mut p = pools();
        // A report from before the switch does not count.
        p[0].hosts[0] = host("h-0", Some(5), true, None);
        let waiting = plan(&input(&s, Some(&staging), &p, 20));
        assert!(
            waiting
                .next
                .unwrap()
                .message
                .unwrap()
                .contains("waiting for 1 of 1")
        );
        p[0].hosts[0] = host("h-0", Some(15), true, None);
        let soaking = plan(&input(&s, Some(&staging), &p, 20));
        assert_eq!(soaking.next.unwrap().step, step::SOAKING);
        assert_eq!(
            soaking.requeue,
            Some(Duration::from_secs(5)),
            "the poll, to watch the gate"
        );
        // A host failing while the ring soaks fails the gate.
        let soaking_status = RolloutStatus {
            step: step::SOAKING.into(),
            step_started_at: Some(format_time(t(20))),
            ..staging.clone()
        };
        p[0].hosts[0] = host(
            "h-0",
            Some(25),
            false,
            Some(r"cannot open \\fs\apps\app_2.0.0.0.cim"),
        );
        let failed = plan(&input(&s, Some(&soaking_status), &p, 30));
        assert_eq!(failed.action, Action::RollBack);
    }

    #[test]
    fn a_failure_naming_another_image_does_not_count_against_this_one() {
        let hosts = [
            host(
                "a",
                Some(10),
                false,
                Some(r"cannot open \\fs\apps\other.cim"),
            ),
            host(
                "b",
                Some(10),
                false,
                Some(r"cannot open \\FS\apps\app_2.0.0.0.cim"),
            ),
            HostObs {
                status: Some("Shutdown".into()),
                ..host("c", None, false, None)
            },
        ];
        let g = gate(&hosts, t(5), r"\\fs\apps\app_2.0.0.0.cim");
        assert_eq!(g.staged, ["a"]);
        assert_eq!(g.failed.len(), 1);
        assert_eq!(g.skipped, ["c"]);
    }

    #[test]
    fn a_newer_spec_supersedes_and_going_back_rolls_back() {
        let s = spec();
        let p = pools();
        let r = RolloutStatus {
            step: step::SOAKING.into(),
            ..started()
        };
        let mut i = input(&s, Some(&r), &p, 5);
        i.wanted = v("3.0.0.0");
        let sup = plan(&i);
        let next = sup.next.unwrap();
        assert_eq!(next.target.version, "3.0.0.0");
        assert_eq!(
            next.previous
                .iter()
                .map(|p| p.version.as_str())
                .collect::<Vec<_>>(),
            ["1.0.0.0", "2.0.0.0"]
        );
        assert_eq!(next.revision, 2);
        i.wanted = v("1.0.0.0");
        assert_eq!(plan(&i).action, Action::RollBack);
    }

    #[test]
    fn pools_keep_a_superseded_version_until_their_ring_switches() {
        let mut p = pools();
        p[0].on = Some(v("2.0.0.0").backend_name);
        p[2].on = None; // assigned mid-rollout
        let r = RolloutStatus {
            target: v("3.0.0.0"),
            previous: vec![v("1.0.0.0"), v("2.0.0.0")],
            ..started()
        };
        let m = mapping(&p, &r, None);
        assert_eq!(m["/hostpools/hp-0"], v("2.0.0.0").backend_name);
        assert_eq!(m["/hostpools/hp-1"], v("1.0.0.0").backend_name);
        assert_eq!(m["/hostpools/hp-2"], v("1.0.0.0").backend_name);
        let m = mapping(&p, &r, Some(0));
        assert_eq!(m["/hostpools/hp-0"], v("3.0.0.0").backend_name);
    }

    proptest! {
        /// Whatever the rings and whichever host fails, rings switch in ascending order,
        /// never twice, and a rollout ends in exactly one Finish or RollBack.
        #[test]
        fn rollouts_switch_rings_in_order_and_end_once(
            rings in proptest::collection::vec(0i32..4, 1..6),
            fail in proptest::option::of(0usize..6),
            tolerated in 0i32..2,
        ) {
            let pools: Vec<PoolObs> = rings.iter().enumerate().map(|(i, &ring)| PoolObs {
                name: format!("hp-{i}"),
                id: format!("/hostPools/hp-{i}"),
                ring,
                on: Some(v("1.0.0.0").backend_name),
                switched_at: None,
                hosts: vec![host(&format!("h-{i}"), None, false, None)],
            }).collect();
            let s = RolloutSpec { max_staging_failures: tolerated, ..spec() };
            let failing = fail.filter(|&f| f < pools.len()).map(|f| format!("h-{f}"));
            let actions = run(&s, pools, failing.as_deref());
            let switches: Vec<i32> = actions.iter().filter_map(|a| match a {
                Action::Switch { through } => Some(*through), _ => None }).collect();
            prop_assert!(switches.windows(2).all(|w| w[0] < w[1]));
            let ends = actions.iter().filter(|a| matches!(a, Action::Finish | Action::RollBack)).count();
            prop_assert_eq!(ends, 1);
            let rolled_back = actions.last() == Some(&Action::RollBack);
            prop_assert_eq!(rolled_back, failing.is_some() && tolerated == 0);
        }
    }
}
