//! Tests of `decide` with no server: fixtures for the objects and the backend, the
//! simulator to move them pass by pass, a regression test for each defect the redesign
//! fixed, and properties over generated rollouts with crashes.

mod fixtures;
mod properties;
mod regressions;
mod remote_app;
mod session_host_os;

use super::simulate::Sim;
use super::{Decision, Write};

/// Runs passes until quiet (or `max`), killing the controller where `kill` says: after
/// the intent and that many writes of a pass, before its status. Returns the decisions
/// and the writes that reached the backend, in order.
pub(super) fn drive(
    sim: &mut Sim,
    max: usize,
    mut kill: impl FnMut(usize, &Decision) -> Option<usize>,
) -> (Vec<Decision>, Vec<Write>) {
    let mut decisions = vec![];
    let mut applied = vec![];
    for pass in 0..max {
        let before = sim.obs.package.status.clone();
        let d = sim.decide();
        let killed = kill(pass, &d);
        let done = killed.unwrap_or(d.writes.len()).min(d.writes.len());
        let finished = killed.is_none();
        sim.apply(&d, done, finished);
        applied.extend(d.writes[..done].iter().cloned());
        sim.advance(d.requeue);
        let quiet = finished
            && d.intent.is_none()
            && d.writes.is_empty()
            && before.as_ref() == Some(&d.status)
            && !d
                .status
                .rollout
                .as_ref()
                .is_some_and(|r| r.phase.is_active());
        decisions.push(d);
        if quiet {
            break;
        }
    }
    (decisions, applied)
}
