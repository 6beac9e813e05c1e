//! Runs passes of [`decide`](super::decide) against a backend view instead of a backend:
//! each pass's writes are applied to the view, its status becomes the package's, session
//! hosts stage what their pools reference, and time moves on by what the pass asked.
//! `appattach plan` shows the writes a change leads to this way (assuming every gate
//! passes), and the tests run the controller's decisions through crashes and faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::super::observe::{BackendView, Observation};
use super::super::planner::format_time;
use super::{Decision, Requeue, Settings, Write, decide};
use crate::arm::models::SessionHostHealthCheckReport;
use crate::resources::AppAttachPackageStatus;

/// Whether a session host (by name) stages an image (by path).
pub type Stages = dyn Fn(&str, &str) -> bool + Send + Sync;

/// A package, its backend, and the time, moved pass by pass.
pub struct Sim {
    /// What the next pass observes.
    pub obs: Observation,
    /// The decisions' settings.
    pub settings: Settings,
    /// Which images session hosts stage.
    pub stages: Arc<Stages>,
    /// Whether sessions on drained hosts end by the next pass.
    pub sessions_end: bool,
    /// How long a session host (by name) takes to report after its images change.
    pub delay: Arc<dyn Fn(&str) -> Duration + Send + Sync>,
    /// What each host last reported on: the images it staged.
    reported: BTreeMap<String, Vec<String>>,
    /// Reports on their way: the images, and when the host reports them.
    due: BTreeMap<String, (Vec<String>, Timestamp)>,
}

impl Sim {
    /// A simulation from an observation, where every host stages every image.
    pub fn new(obs: Observation, settings: Settings) -> Self {
        let mut sim = Self {
            obs,
            settings,
            stages: Arc::new(|_: &str, _: &str| true),
            sessions_end: true,
            delay: Arc::new(|_: &str| Duration::ZERO),
            reported: BTreeMap::new(),
            due: BTreeMap::new(),
        };
        // What hosts staged before the simulation is what they report already.
        if let Some(v) = &sim.obs.backend {
            for (host, images) in images_by_host(v) {
                sim.reported.insert(host, images);
            }
        }
        sim
    }

    /// The backend view as it stands.
    pub fn view(&self) -> &BackendView {
        self.obs
            .backend
            .as_ref()
            .expect("a simulation has a backend")
    }

    /// Decides the next pass, without applying it.
    pub fn decide(&self) -> Decision {
        decide(&self.obs, &self.settings)
    }

    /// Applies a decision as the controller would: its intent, the first `writes` of its
    /// writes, and (when all were done and `finished`) its status. A pass killed part way
    /// applies fewer writes and leaves the intent as the status.
    pub fn apply(&mut self, d: &Decision, writes: usize, finished: bool) {
        let mut pkg = (*self.obs.package).clone();
        if let Some(intent) = &d.intent {
            pkg.status = Some(intent.clone());
        }
        let done = &d.writes[..writes.min(d.writes.len())];
        let scope = self.obs.scope.clone();
        let now = self.obs.now;
        if let Some(v) = self.obs.backend.as_mut() {
            for w in done {
                super::project::apply(v, &scope, w);
                stamp(v, w, now);
            }
        }
        if finished && writes >= d.writes.len() {
            pkg.status = Some(d.status.clone());
        }
        self.obs.package = Arc::new(pkg);
    }

    /// Lets time pass as the decision asked (at least a millisecond), hosts report what
    /// they staged, and sessions on drained hosts end.
    pub fn advance(&mut self, requeue: Requeue) {
        let step = match requeue {
            Requeue::After(d) => d.max(Duration::from_millis(1)),
            _ => Duration::from_secs(1),
        };
        self.obs.now += step;
        self.stage();
        if self.sessions_end {
            self.end_drained_sessions();
        }
    }

    /// One whole pass: decide, apply everything, let time pass.
    pub fn pass(&mut self) -> Decision {
        let d = self.decide();
        self.apply(&d, d.writes.len(), true);
        self.advance(d.requeue);
        d
    }

    /// Passes until nothing is left to do (no rollout runs, and a pass writes nothing and
    /// changes no status), or `max` passes.
    pub fn run(&mut self, max: usize) -> Vec<Decision> {
        let mut out = vec![];
        for _ in 0..max {
            let before = self.obs.package.status.clone();
            let d = self.pass();
            let quiet = d.intent.is_none()
                && d.writes.is_empty()
                && before.as_ref() == Some(&d.status)
                && !active(&d.status);
            out.push(d);
            if quiet {
                break;
            }
        }
        out
    }

    /// Each host whose pool's images changed since it last reported reports again:
    /// success, or a failure naming the images it could not stage.
    fn stage(&mut self) {
        let at = self.obs.now;
        let now = format_time(at);
        let (stages, delay) = (self.stages.clone(), self.delay.clone());
        let Some(v) = self.obs.backend.as_mut() else {
            return;
        };
        let images = images_by_host(v);
        for p in v.pools.iter_mut().chain(v.former.iter_mut()) {
            for h in &mut p.hosts {
                let name = super::holdings::leaf(h.name.as_deref().unwrap_or_default()).to_string();
                let staging = images.get(&name).cloned().unwrap_or_default();
                if self.reported.get(&name) == Some(&staging) {
                    self.due.remove(&name);
                    continue;
                }
                let due = match self.due.get(&name) {
                    Some((pending, when)) if *pending == staging => *when,
                    _ => {
                        let when = at + delay(&name);
                        self.due.insert(name.clone(), (staging.clone(), when));
                        when
                    }
                };
                if due > at {
                    continue;
                }
                let failed: Vec<&String> = staging.iter().filter(|i| !stages(&name, i)).collect();
                h.properties.session_host_health_check_results = Some(vec![report(&failed, &now)]);
                self.due.remove(&name);
                self.reported.insert(name, staging);
            }
        }
    }

    fn end_drained_sessions(&mut self) {
        if let Some(v) = self.obs.backend.as_mut() {
            for p in v.pools.iter_mut() {
                for h in &mut p.hosts {
                    if h.properties.allow_new_session == Some(false) {
                        h.properties.sessions = Some(0);
                    }
                }
            }
        }
    }
}

fn active(st: &AppAttachPackageStatus) -> bool {
    st.rollout.as_ref().is_some_and(|r| r.phase.is_active())
}

/// The health check a host reports after staging.
fn report(failed: &[&String], now: &str) -> SessionHostHealthCheckReport {
    let value = if failed.is_empty() {
        json!({
            "healthCheckName": "AppAttachHealthCheck",
            "healthCheckResult": "HealthCheckSucceeded",
            "additionalFailureDetails": {"lastHealthCheckDateTime": now},
        })
    } else {
        let message = failed
            .iter()
            .map(|i| format!("cannot stage {i}"))
            .collect::<Vec<_>>()
            .join("; ");
        json!({
            "healthCheckName": "AppAttachHealthCheck",
            "healthCheckResult": "HealthCheckFailed",
            "additionalFailureDetails": {"lastHealthCheckDateTime": now, "message": message, "errorCode": 1},
        })
    };
    serde_json::from_value(value).expect("a health check report")
}

/// The images each host (by name) stages: its pool's active app attach packages and MSIX
/// packages.
fn images_by_host(v: &BackendView) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for p in v.pools.iter().chain(&v.former) {
        let mut images: Vec<String> = v
            .packages
            .iter()
            .filter(|pkg| {
                pkg.package
                    .properties
                    .host_pool_references
                    .iter()
                    .flatten()
                    .any(|r| r.eq_ignore_ascii_case(&p.id))
            })
            .filter_map(|pkg| pkg.package.properties.image.as_ref())
            .filter(|i| i.is_active != Some(false))
            .filter_map(|i| i.image_path.clone())
            .chain(
                p.msix
                    .iter()
                    .filter(|m| m.properties.is_active != Some(false))
                    .filter_map(|m| m.properties.image_path.clone()),
            )
            .collect();
        images.sort();
        for h in &p.hosts {
            let name = super::holdings::leaf(h.name.as_deref().unwrap_or_default()).to_string();
            out.insert(name, images.clone());
        }
    }
    out
}

/// What the backend stamps on a write: when a package's image was put there.
fn stamp(v: &mut BackendView, w: &Write, now: Timestamp) {
    let at = Some(format_time(now));
    match w {
        Write::PutPackage { name, .. } => {
            if let Some(i) = v
                .packages
                .iter_mut()
                .find(|p| p.name == *name)
                .and_then(|p| p.package.properties.image.as_mut())
                && i.last_updated.is_none()
            {
                i.last_updated = at;
            }
        }
        Write::PutMsix {
            pool_id, full_name, ..
        } => {
            for p in v
                .pools
                .iter_mut()
                .filter(|p| p.id.eq_ignore_ascii_case(pool_id))
            {
                for m in p.msix.iter_mut().filter(|m| {
                    super::holdings::leaf(m.name.as_deref().unwrap_or_default())
                        .eq_ignore_ascii_case(full_name)
                }) {
                    if m.properties.last_updated.is_none() {
                        m.properties.last_updated.clone_from(&at);
                    }
                }
            }
        }
        _ => {}
    }
}
