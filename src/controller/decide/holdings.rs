//! Which versions of the package the backend holds, and which host pool runs which: read
//! from a backend view, before a pass's writes (to decide) and after them (to report).

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::super::observe::{BackendView, PoolView};
use super::super::planner::{HostObs, PoolObs, parse_time};
use crate::arm::models::SessionHost;
use crate::resources::{AppAttachPackageStatus, RolloutStatus, VersionRef};

/// This object's versions in the backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holdings {
    /// Each version held, by backend name (app attach: the package's name; MSIX app
    /// attach: the package full name), in the order found.
    pub versions: Vec<VersionRef>,
    /// Per assigned host pool (lower-case id), the backend name of the version it runs.
    pub on: BTreeMap<String, String>,
    /// Per assigned host pool (lower-case id), when the backend says its version was put
    /// there (`lastUpdated`), where it says.
    pub since: BTreeMap<String, Timestamp>,
}

/// The order in which a host pool referenced by several of our versions counts as
/// running one: the rollout's target (a switch adds it before it removes the old one),
/// then its previous versions in order.
fn preference(record: Option<&RolloutStatus>) -> Vec<String> {
    record
        .filter(|r| r.phase.is_active())
        .into_iter()
        .flat_map(|r| std::iter::once(&r.target).chain(&r.previous))
        .map(|v| v.backend_name.to_ascii_lowercase())
        .collect()
}

fn pick(
    candidates: Vec<(String, Option<Timestamp>)>,
    prefer: &[String],
) -> Option<(String, Option<Timestamp>)> {
    prefer
        .iter()
        .find_map(|p| {
            candidates
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(p))
                .cloned()
        })
        .or_else(|| candidates.into_iter().next())
}

impl Holdings {
    /// App attach: the backend packages tagged with `key` (and the untagged one named
    /// `adopt`, when the object adopts it).
    pub fn app_attach(
        view: &BackendView,
        key: &str,
        adopt: Option<&String>,
        record: Option<&RolloutStatus>,
    ) -> Self {
        let ours: Vec<_> = view
            .packages
            .iter()
            .filter(|p| match p.owner() {
                Some(o) => o == key,
                None => adopt.is_some_and(|a| *a == p.name),
            })
            .collect();
        let mut h = Self::default();
        for p in &ours {
            let image = p.package.properties.image.clone().unwrap_or_default();
            h.versions.push(VersionRef {
                version: image.version.unwrap_or_default(),
                image_path: image.image_path.unwrap_or_default(),
                backend_name: p.name.clone(),
            });
        }
        let prefer = preference(record);
        for pool in &view.pools {
            let candidates = ours
                .iter()
                .filter(|p| {
                    p.package
                        .properties
                        .host_pool_references
                        .iter()
                        .flatten()
                        .any(|r| r.eq_ignore_ascii_case(&pool.id))
                })
                .map(|p| {
                    let at = p.package.properties.image.as_ref();
                    (
                        p.name.clone(),
                        at.and_then(|i| parse_time(i.last_updated.as_deref())),
                    )
                })
                .collect();
            h.add(pool, pick(candidates, &prefer));
        }
        h
    }

    /// MSIX app attach: the MSIX packages of the family `family` under the assigned host
    /// pools (MSIX packages carry no owner tag: the family is the package's).
    pub fn msix(view: &BackendView, family: &str, record: Option<&RolloutStatus>) -> Self {
        let mut h = Self::default();
        let prefer = preference(record);
        for pool in &view.pools {
            let mut candidates = vec![];
            for m in of_family(pool, family) {
                let name = leaf(m.name.as_deref().unwrap_or_default()).to_string();
                if !h
                    .versions
                    .iter()
                    .any(|v| v.backend_name.eq_ignore_ascii_case(&name))
                {
                    h.versions.push(VersionRef {
                        version: m.properties.version.clone().unwrap_or_default(),
                        image_path: m.properties.image_path.clone().unwrap_or_default(),
                        backend_name: name.clone(),
                    });
                }
                candidates.push((name, parse_time(m.properties.last_updated.as_deref())));
            }
            h.add(pool, pick(candidates, &prefer));
        }
        h
    }

    fn add(&mut self, pool: &PoolView, on: Option<(String, Option<Timestamp>)>) {
        if let Some((name, since)) = on {
            let id = pool.id.to_ascii_lowercase();
            if let Some(t) = since {
                self.since.insert(id.clone(), t);
            }
            self.on.insert(id, name);
        }
    }

    /// The version held under this backend name.
    pub fn version(&self, name: &str) -> Option<&VersionRef> {
        self.versions
            .iter()
            .find(|v| v.backend_name.eq_ignore_ascii_case(name))
    }

    /// The version every host pool runs, or most of them: while a rollout runs, the one it
    /// moves from; else the one most host pools run (the object's own name first, on a
    /// tie); with no host pool, the one under the object's own name, else the first.
    pub fn current(&self, record: Option<&RolloutStatus>, home: &str) -> Option<VersionRef> {
        if let Some(r) = record.filter(|r| r.phase.is_active())
            && let Some(v) = r
                .previous
                .first()
                .and_then(|p| self.version(&p.backend_name))
        {
            return Some(v.clone());
        }
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for name in self.on.values() {
            *count.entry(name.to_ascii_lowercase()).or_default() += 1;
        }
        let score = |v: &VersionRef| {
            (
                count
                    .get(&v.backend_name.to_ascii_lowercase())
                    .copied()
                    .unwrap_or(0),
                v.backend_name.eq_ignore_ascii_case(home),
            )
        };
        let mut best: Option<&VersionRef> = None;
        for v in &self.versions {
            if best.is_none_or(|b| score(v) > score(b)) {
                best = Some(v);
            }
        }
        best.cloned()
    }

    /// The versions some host pool runs other than `current`.
    pub fn others(&self, current: Option<&VersionRef>) -> Vec<VersionRef> {
        self.versions
            .iter()
            .filter(|v| {
                current.is_none_or(|c| !c.backend_name.eq_ignore_ascii_case(&v.backend_name))
            })
            .filter(|v| {
                self.on
                    .values()
                    .any(|n| n.eq_ignore_ascii_case(&v.backend_name))
            })
            .cloned()
            .collect()
    }

    /// The version a host pool (by id) runs.
    pub fn version_on(&self, pool_id: &str) -> Option<&VersionRef> {
        self.on
            .get(&pool_id.to_ascii_lowercase())
            .and_then(|n| self.version(n))
    }
}

/// The MSIX packages of a family under one host pool.
pub fn of_family<'a>(
    pool: &'a PoolView,
    family: &'a str,
) -> impl Iterator<Item = &'a crate::arm::models::MsixPackage> + 'a {
    pool.msix.iter().filter(move |m| {
        m.properties
            .package_family_name
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(family))
    })
}

/// The last segment of an id or a `parent/child` name.
pub fn leaf(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The app attach health check of a session host, as the gate reads it.
pub fn host_obs(h: &SessionHost) -> HostObs {
    let check = h.properties.app_attach_health_check();
    let details = check.and_then(|c| c.additional_failure_details.as_ref());
    HostObs {
        name: leaf(h.name.as_deref().unwrap_or_default()).to_string(),
        status: h.properties.status.clone(),
        checked_at: details.and_then(|d| parse_time(d.last_health_check_date_time.as_deref())),
        succeeded: check.and_then(|c| c.health_check_result.as_deref())
            == Some("HealthCheckSucceeded"),
        message: details.and_then(|d| d.message.clone()),
    }
}

/// The assigned host pools as the planner sees them: ring, the version each runs, when it
/// switched in the rollout recorded (a switch recorded before the rollout started belongs
/// to an earlier one), and its session hosts' health checks.
pub fn pool_obs(
    view: &BackendView,
    held: &Holdings,
    previous: &AppAttachPackageStatus,
) -> Vec<PoolObs> {
    let started = previous
        .rollout
        .as_ref()
        .and_then(|r| parse_time(r.started_at.as_deref()));
    view.pools
        .iter()
        .map(|p| {
            let id = p.id.to_ascii_lowercase();
            let switched_at = previous
                .host_pools
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(&p.name))
                .and_then(|r| parse_time(r.switched_at.as_deref()))
                .filter(|t| started.is_some_and(|s| *t >= s));
            PoolObs {
                name: p.name.clone(),
                id: p.id.clone(),
                ring: p.ring,
                on: held.on.get(&id).cloned(),
                switched_at,
                on_since: held.since.get(&id).copied(),
                hosts: p.hosts.iter().map(host_obs).collect(),
            }
        })
        .collect()
}
