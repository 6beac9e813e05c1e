//! What the session hosts say of the version their host pool runs: a host whose last
//! `AppAttachHealthCheck` failed naming that version's image cannot give it to anyone
//! who signs in there. A rollout's gate judges a new version; this judges the version
//! that runs, at any time: a first version (no rollout, no gate), and a host that began
//! failing after its pool switched (the share's permissions changed, its disk filled).
//! It is a Warning (`Degraded`, `StagingFailed`) naming the hosts, the image and the
//! error, and the fix; hosts that are shut down are not judged.

use jiff::Timestamp;

use super::super::observe::BackendView;
use super::super::planner;
use super::super::validate::{Finding, Severity};
use super::holdings::{Holdings, host_obs};

/// The reason of the warning.
pub const STAGING_FAILED: &str = "StagingFailed";

/// At most this many hosts are named one by one; the rest are counted.
const NAMED: usize = 5;

/// A warning when session hosts of an assigned pool fail to stage the version it runs in
/// `after` (the backend once the pass's writes are done), by `held` (what of this object
/// it holds).
pub(crate) fn warnings(after: &BackendView, held: &Holdings) -> Vec<Finding> {
    let mut failing: Vec<(String, String, String, String)> = vec![]; // (pool, host, image, error)
    let mut hosts = 0;
    for p in &after.pools {
        let Some(image) = held
            .version_on(&p.id)
            .map(|v| v.image_path.clone())
            .filter(|i| !i.is_empty())
        else {
            continue;
        };
        hosts += p.hosts.len();
        // A host that is off reports nothing now; its last report is stale.
        let on: Vec<_> = p
            .hosts
            .iter()
            .map(host_obs)
            .filter(|h| {
                !h.status
                    .as_deref()
                    .is_some_and(|s| planner::OFF.contains(&s))
            })
            .collect();
        let gate = planner::gate(&on, Timestamp::MIN, &image, &[]);
        for (host, error) in gate.failed {
            failing.push((p.name.clone(), host, image.clone(), error));
        }
    }
    if failing.is_empty() {
        return vec![];
    }
    let named: Vec<String> = failing
        .iter()
        .take(NAMED)
        .map(|(pool, host, image, error)| format!("{host} ({pool}) cannot stage {image}: {error}"))
        .collect();
    let more = match failing.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    vec![Finding {
        severity: Severity::Warning,
        reason: STAGING_FAILED,
        message: format!(
            "{} of {hosts} session host(s) report that they cannot stage the version their host pool runs, so users signing in there do not get it: {}{more}. Check that the image is on the share and that the session hosts' computer accounts can read it; the hosts stage it at their next health check",
            failing.len(),
            named.join("; ")
        ),
    }]
}
